// What the integration global setup (test/harness/global-setup.ts) hands to test files through
// vitest's provide/inject.
import "vitest";
import type { CassandraEndpoint } from "./cassandra.ts";
import type { MinioEndpoint } from "./minio.ts";

declare module "vitest" {
  export interface ProvidedContext {
    cassandra: CassandraEndpoint;
    minio: MinioEndpoint;
    /** Per-run folder holding the pid records checked at teardown. */
    natterRunDir: string;
  }
}
