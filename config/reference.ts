// Renders the table of every setting (path, environment variable, type, default) from the one
// schema, for docs/configuration.md. `npm run docs:config` rewrites the doc; a test keeps it current.
import { z } from "zod";
import { ConfigSchema } from "./schema.ts";

type JsonSchema = {
  type?: string;
  /** A secret setting: its variable may also name a file (`…_FILE`). */
  secret?: boolean;
  const?: unknown;
  enum?: unknown[];
  default?: unknown;
  properties?: Record<string, JsonSchema>;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  items?: JsonSchema;
};

function envVarName(path: string[]): string {
  return `NATTER_${path.map((k) => k.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toUpperCase()).join("__")}`;
}

/** Default of every leaf, read by parsing minimal inputs (one per backend choice). */
function defaults(): Map<string, unknown> {
  const out = new Map<string, unknown>();
  const s3Required = { kind: "s3", endPoint: "-", accessKey: "-", secretKey: "-", bucket: "bkt" } as const;
  const inputs: [unknown, string[]][] = [
    [{}, []],
    [{ store: { kind: "cassandra" } }, ["store"]],
    [{ store: { kind: "cassandra", replication: { class: "NetworkTopologyStrategy", dataCenters: {} } } }, ["store"]],
    [{ blobs: s3Required }, ["blobs"]],
  ];
  const given = new Set(["blobs.endPoint", "blobs.accessKey", "blobs.secretKey", "blobs.bucket", "store.replication.dataCenters"]);
  const visit = (v: unknown, path: string[], only: string[]): void => {
    if (only.length > 0 && path.length > 0 && path[0] !== only[0]) return;
    if (v !== null && typeof v === "object" && !Array.isArray(v)) {
      for (const [k, c] of Object.entries(v)) visit(c, [...path, k], only);
      return;
    }
    const key = path.join(".");
    if (!given.has(key) && !out.has(key)) out.set(key, v);
  };
  for (const [input, only] of inputs) visit(ConfigSchema.parse(input), [], only);
  return out;
}

export function renderConfigTable(): string {
  const defs = defaults();
  const root = z.toJSONSchema(ConfigSchema, { io: "input", unrepresentable: "any" }) as JsonSchema;
  const rows = new Map<string, string>();
  const walk = (s: JsonSchema, path: string[]): void => {
    const alts = s.anyOf ?? s.oneOf;
    if (alts) {
      for (const a of alts) walk(a, path);
      return;
    }
    if (s.type === "object" && s.properties) {
      for (const [k, v] of Object.entries(s.properties)) walk(v, [...path, k]);
      return;
    }
    const key = path.join(".");
    const type =
      s.const !== undefined ? `\`${JSON.stringify(s.const)}\`` : s.enum ? s.enum.map((e) => `\`${String(e)}\``).join(", ") : s.type === "array" ? "list (comma-separated)" : (s.type ?? "JSON object");
    const prev = rows.get(key);
    const d = defs.get(key);
    const def = d !== undefined && s.const === undefined ? `\`${JSON.stringify(d)}\`` : "";
    const variable = s.secret ? `\`${envVarName(path)}\` or \`${envVarName(path)}_FILE\` (secret)` : `\`${envVarName(path)}\``;
    const line = `| \`${key}\` | ${variable} | ${type} | ${def} |`;
    // A discriminator appears once per alternative: list its values together.
    rows.set(key, prev && s.const !== undefined ? prev.replace(/ \| ([^|]*) \| ([^|]*) \|$/, (_m, t: string, d: string) => ` | ${t}, ${type} | ${d} |`) : line);
  };
  walk(root, []);
  return ["| setting | environment variable | type | default |", "|---|---|---|---|", ...rows.values()].join("\n");
}
