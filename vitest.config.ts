// Two projects: fast unit tests (`*.test.ts`) and integration tests (`*.int.test.ts`) against
// real servers. The integration project's global setup starts one Cassandra and one MinIO per
// run (test/harness/global-setup.ts); each test file starts its own nats-server.
//   npx vitest run --project unit
//   npx vitest run --project integration
import { defineConfig } from "vitest/config";

const exclude = ["**/node_modules/**", "**/.cache/**", "**/.data/**", "**/test-output/**"];

export default defineConfig({
  test: {
    // The global teardown stops Cassandra and checks for leftover processes (up to ~15 s).
    teardownTimeout: 60_000,
    projects: [
      {
        test: {
          name: "unit",
          environment: "node",
          // Unit tests run first, then integration (whose maxWorkers differs).
          sequence: { groupOrder: 0 },
          include: ["**/*.test.ts"],
          exclude: [...exclude, "**/*.int.test.ts"],
        },
      },
      {
        test: {
          name: "integration",
          environment: "node",
          sequence: { groupOrder: 1 },
          include: ["**/*.int.test.ts"],
          exclude,
          globalSetup: ["test/harness/global-setup.ts"],
          testTimeout: 60_000,
          // Real servers on 2 shared cores: eventual outcomes get 10 s by default, not 1 s.
          expect: { poll: { timeout: 10_000, interval: 100 } },
          hookTimeout: 120_000,
          // 2 cores, and Cassandra is running beside the tests.
          maxWorkers: 2,
        },
      },
    ],
  },
});
