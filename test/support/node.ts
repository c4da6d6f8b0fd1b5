// Starts a natter node (edge + workers) inside the test process against harness servers.
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll } from "vitest";
import { loadConfig, type Config } from "../../config/index.ts";
import { silentLogger } from "../../core/logger.ts";
import { mintToken } from "../../edge/index.ts";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { connectRole } from "../../nats/index.ts";
import { ensureNatterTopology, startNatter, type NatterNode } from "../../runtime/index.ts";
import { TEST_NATS_USERS, testNatsCredentials } from "../harness/nats.ts";

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
      // natter's roles' identities on harness servers (which check their allow-lists).
      nats: { servers: [natsUrl], credentials: testNatsCredentials() },
      auth: { jwtSecret: TEST_SECRET },
      ...overrides,
      edge: { port: 0, ...(overrides.edge as object | undefined) },
      // In-process nodes run their workers on the test's thread (vitest loads TypeScript itself; a
      // worker thread would not); the child-process tests run `natter start` with the thread.
      workers: { httpPort: 0, thread: false, ...(overrides.workers as object | undefined) },
    },
  });
}

/** Creates natter's topology with the workers' identity, as a workers process does at start (for a test that starts an edge alone). */
export async function ensureTopologyAsWorkers(cfg: Config): Promise<void> {
  const servers = cfg.nats.servers;
  if (!servers) throw new Error("ensureTopologyAsWorkers: the config names no nats.servers");
  const nc = await connectRole({ nats: cfg.nats, servers, role: "workers", name: "test-topology", log: silentLogger() });
  try {
    await ensureNatterTopology(await jetstreamManager(nc), cfg);
  } finally {
    await nc.close();
  }
}

export interface NodeHandle {
  /** The node; its `nc`/`js`/`jsm` have the edge's identity (the workers' without an edge). */
  readonly node: NatterNode;
  readonly url: string;
  token(user: string): Promise<string>;
  /** A JetStream manager with the operator's identity on the node's NATS, for a test's look inside (consumer info, raw reads). */
  ops(): Promise<JetStreamManager>;
  /** The operator's connection itself (what `natter revoke` and `natter dead` use). */
  opsConnection(): Promise<{ nc: NatsConnection; jsm: JetStreamManager }>;
}

/** A node for the whole file: started in beforeAll, closed in afterAll (also when tests fail). */
export function useNode(config: () => Config): NodeHandle {
  let node: NatterNode | undefined;
  let dataDir: string | undefined;
  beforeAll(async () => {
    const cfg = config();
    dataDir = cfg.dataDir;
    // An edge waits for the workers to create the topology: without workers of its own, the test
    // does what a workers process would.
    if (!cfg.workers.enabled) await ensureTopologyAsWorkers(cfg);
    node = await startNatter(cfg, silentLogger());
  });
  let ops: Promise<{ nc: NatsConnection; jsm: JetStreamManager }> | undefined;
  afterAll(async () => {
    await (await ops?.catch(() => undefined))?.nc.close();
    await node?.close();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });
  const get = () => {
    if (!node) throw new Error("useNode(): not started (use inside tests or hooks)");
    return node;
  };
  const handle: NodeHandle = {
    get node() {
      return get();
    },
    get url() {
      return get().url;
    },
    token: (user) => mintToken(get().tokens, user),
    ops: async () => (await handle.opsConnection()).jsm,
    opsConnection: async () => {
      ops ??= (async () => {
        const nc = await connect({ servers: get().natsUrl, user: TEST_NATS_USERS.ops.user, pass: TEST_NATS_USERS.ops.password });
        return { nc, jsm: await jetstreamManager(nc) };
      })();
      return ops;
    },
  };
  return handle;
}
