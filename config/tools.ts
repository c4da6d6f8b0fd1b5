// Pinned versions of the external servers natter runs and tests against, and where
// `scripts/obtain.ts` caches them. The one place that knows these paths.
import path from "node:path";
import { fileURLToPath } from "node:url";

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** Cache folder for obtained servers (ignored by git). `NATTER_CACHE_DIR` overrides it. */
export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(env.NATTER_CACHE_DIR ?? path.join(REPO_ROOT, ".cache"));
}

export const TOOLS = {
  "nats-server": { module: "github.com/nats-io/nats-server/v2", version: "v2.15.2", binary: "nats-server" },
  nats: { module: "github.com/nats-io/natscli/nats", version: "v0.5.0", binary: "nats" },
  minio: { module: "github.com/minio/minio", version: "v0.0.0-20260212201848-7aac2a2c5b7c", binary: "minio" },
  cassandra: { artifact: "org.apache.cassandra:cassandra-all", version: "5.0.9" },
} as const;

export type ToolName = keyof typeof TOOLS;

/** Debian's Chromium, which the browser tests drive with playwright-core (a system package, not cached). */
export const CHROMIUM = { aptPackage: "chromium", binary: "/usr/bin/chromium" } as const;

export function binPath(tool: "nats-server" | "nats" | "minio", env: NodeJS.ProcessEnv = process.env): string {
  return path.join(cacheDir(env), "bin", TOOLS[tool].binary);
}

export function cassandraLibDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(cacheDir(env), "cassandra", TOOLS.cassandra.version, "lib");
}
