// The files compose mounts into its setup jobs, read as those jobs read them: the CQL that
// deploy/cassandra/setup.sh runs and the MinIO policy of deploy/minio/setup.sh. Shared by the
// static checks (test/production-shape.test.ts) and the tests that run them against real servers
// (test/cassandra-roles.int.test.ts, test/minio-policy.int.test.ts).
import { readFileSync } from "node:fs";
import path from "node:path";
import { REPO_ROOT } from "../../config/index.ts";

export const ROLES_CQL = "deploy/cassandra/roles.cql";
export const GRANTS_CQL = "deploy/cassandra/grants.cql";
export const NATTER_POLICY = "deploy/minio/natter-policy.json";

/**
 * A .cql file's statements as setup.sh runs them: each `${NAME}` filled in from `values` (one
 * missing throws), `--` comments dropped, split at `;`, whitespace collapsed.
 */
export function cqlStatements(file: string, values: Record<string, string>): string[] {
  const text = readFileSync(path.join(REPO_ROOT, file), "utf8").replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_whole, name: string) => {
    const value = values[name];
    if (value === undefined) throw new Error(`${file} needs ${name}`);
    return value;
  });
  return text
    .split("\n")
    .map((line) => line.replace(/--.*$/, ""))
    .join("\n")
    .split(";")
    .map((s) => s.replace(/\s+/g, " ").trim())
    .filter((s) => s !== "");
}

/** deploy/minio/natter-policy.json as JSON text, every bucket ARN naming `bucket` instead of the one it names. */
export function natterPolicyFor(bucket: string): string {
  const policy = JSON.parse(readFileSync(path.join(REPO_ROOT, NATTER_POLICY), "utf8")) as unknown;
  return JSON.stringify(policy).replace(/arn:aws:s3:::[^/"]+/g, `arn:aws:s3:::${bucket}`);
}
