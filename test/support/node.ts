// Starts a natter node (edge + workers) inside the test process against harness servers.
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll } from "vitest";
import { loadConfig, type Config } from "../../config/index.ts";
import { silentLogger } from "../../core/logger.ts";
import { mintToken } from "../../edge/index.ts";
import { startNatter, type NatterNode } from "../../runtime/index.ts";

/** A fixed HS256 secret for tests; it passes the weak-secret rule (config/secrets.ts). */
export const TEST_SECRET = "q3V8xTnL0wZr5KcY2mPa7GdH9sJb4EuF6iNoR1tX";

type Overrides = Record<string, unknown>;

export function testConfig(natsUrl: string, overrides: Overrides = {}): Config {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "natter-node-"));
  return loadConfig({
    env: {},
    overrides: {
      dataDir,
      log: { level: "warn" },
      nats: { servers: [natsUrl] },
      auth: { jwtSecret: TEST_SECRET },
      ...overrides,
      edge: { port: 0, ...(overrides.edge as object | undefined) },
      // In-process nodes run their workers on the test's thread (vitest loads TypeScript itself; a
      // worker thread would not); the child-process tests run `natter start` with the thread.
      workers: { httpPort: 0, thread: false, ...(overrides.workers as object | undefined) },
    },
  });
}

export interface NodeHandle {
  readonly node: NatterNode;
  readonly url: string;
  token(user: string): Promise<string>;
}

/** A node for the whole file: started in beforeAll, closed in afterAll (also when tests fail). */
export function useNode(config: () => Config): NodeHandle {
  let node: NatterNode | undefined;
  let dataDir: string | undefined;
  beforeAll(async () => {
    const cfg = config();
    dataDir = cfg.dataDir;
    node = await startNatter(cfg, silentLogger());
  });
  afterAll(async () => {
    await node?.close();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });
  const get = () => {
    if (!node) throw new Error("useNode(): not started (use inside tests or hooks)");
    return node;
  };
  return {
    get node() {
      return get();
    },
    get url() {
      return get().url;
    },
    token: (user) => mintToken(get().tokens, user),
  };
}
