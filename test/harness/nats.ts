// NATS servers for integration tests: one nats-server (or one cluster) per test file, on
// loopback, each in its own temp folder that stop() removes. Starting one takes milliseconds.
// Long (≈480 lines): single servers, clusters (routes, kill -9 and restart of a node), natter's
// identities and the per-file check of refused permissions belong to the one server lifecycle.
import { constants } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll } from "vitest";
import { binPath } from "../../config/tools.ts";
import { renderAuthorization } from "../../nats/permissions.ts";
import { launchNatsServer, NatsServerLaunchError, type NatsServerProcess } from "../../runtime/nats-server.ts";
import { freePorts, recordProcess } from "./processes.ts";

/**
 * The identities of harness servers: natter's roles with their allow-lists (nats/permissions.ts)
 * and the operator. Fixed passwords: test servers listen on loopback and live for one file.
 */
export const TEST_NATS_USERS = {
  edge: { user: "edge", password: "edge-test-password" },
  workers: { user: "workers", password: "workers-test-password" },
  ops: { user: "ops", password: "ops-test-password" },
} as const;

/** natter's `nats.credentials` for harness servers (ignored by a server without users). */
export function testNatsCredentials(): { edge: { user: string; password: string }; workers: { user: string; password: string } } {
  return { edge: { ...TEST_NATS_USERS.edge }, workers: { ...TEST_NATS_USERS.workers } };
}

/** The same as NATTER_* variables, for `natter start` processes pointed at a harness server. */
export function testNatsCredentialsEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [role, c] of Object.entries(testNatsCredentials())) {
    env[`NATTER_NATS__CREDENTIALS__${role.toUpperCase()}__USER`] = c.user;
    env[`NATTER_NATS__CREDENTIALS__${role.toUpperCase()}__PASSWORD`] = c.password;
  }
  return env;
}

/** The route user of harness clusters. */
const TEST_ROUTE_USER = { user: "route", password: "route-test-password" } as const;

/** Shard counts the harness's allow-lists name (the schema's defaults). */
const TEST_SHARDS = { conversationShards: 1, inboxShards: 1 };

/**
 * Who may connect to a harness server:
 * - "roles" (default): natter's identities (TEST_NATS_USERS) with their allow-lists; a client
 *   without credentials is the ops user (`no_auth_user`), so a test's own connections see
 *   everything while natter's nodes run with their roles' permissions;
 * - "strict": the same users, and a client without credentials is refused;
 * - "none": no users, anyone connects (servers without JetStream, for connection tests).
 */
type TestNatsAuth = "roles" | "strict" | "none";

function authConfig(auth: TestNatsAuth): string {
  if (auth === "none") return "";
  const users = renderAuthorization({ shards: TEST_SHARDS, users: TEST_NATS_USERS });
  return auth === "roles" ? `${users}no_auth_user: ${TEST_NATS_USERS.ops.user}\n` : users;
}

/** A line of the server's log saying it refused a client's publish or subscription. */
const isViolation = (line: string) => /Publish Violation|Subscription Violation/.test(line);

export interface StartNatsOptions {
  /** Enable JetStream (store in the temp folder). Default true. */
  jetstream?: boolean;
  /** Who may connect; default "roles" (see TestNatsAuth). */
  auth?: TestNatsAuth;
  /**
   * The test provokes permission violations on purpose. Otherwise useNats() fails the file when
   * the server refused any client a publish or subscription: an allow-list lacks what natter does.
   */
  expectViolations?: boolean;
  /** Appended to the generated config (e.g. `max_payload: 2MB`). */
  extraConfig?: string;
  /** Receives the server's output lines (default: dropped; the tail is in launch errors). */
  log?: (line: string) => void;
}

export interface NatsHandle {
  /** `nats://127.0.0.1:PORT` — the same across restart(). */
  readonly url: string;
  readonly monitorUrl: string;
  /** JetStream store folder (kept across kill9/restart, removed by stop). */
  readonly storeDir: string;
  readonly dir: string;
  readonly pid: number;
  /** Stops the server and removes its folder. Idempotent. */
  stop(): Promise<void>;
  /** The server's log lines refusing a publish or subscription so far (permission violations). */
  violations(): string[];
  /** SIGKILL, keeping the folder: a crash. restart() brings it back on the same ports and store. */
  kill9(): Promise<void>;
  /** Stops (if running) and starts again on the same ports and store. */
  restart(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** NATTER_TEST_NATS_LOG=1 prints every test nats-server's output (to debug a test). */
function defaultLog(): ((line: string) => void) | undefined {
  return process.env.NATTER_TEST_NATS_LOG ? (line) => console.error(line) : undefined;
}

// Room for natter's default reservations (streams.storageBytes, 16 GiB, reserved not written).
const JETSTREAM_LIMITS = "max_memory_store: 268435456\n  max_file_store: 34359738368";

/** The nats-server binary obtained by scripts/obtain.ts; a clear error if it is missing. */
export async function natsServerBinary(): Promise<string> {
  const binary = binPath("nats-server");
  try {
    await fs.access(binary, constants.X_OK);
  } catch {
    throw new Error(`nats-server is not obtained (${binary} missing): run \`npx tsx scripts/obtain.ts nats-server\``);
  }
  return binary;
}

function jetstreamBlock(storeDir: string): string {
  return `jetstream {\n  store_dir: ${JSON.stringify(storeDir)}\n  ${JETSTREAM_LIMITS}\n}`;
}

/** Starts one nats-server on random loopback ports in a fresh temp folder. */
export async function startNats(opts: StartNatsOptions = {}): Promise<NatsHandle> {
  const binary = await natsServerBinary();
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "natter-nats-"));
  const storeDir = path.join(dir, "jetstream");
  const config = (port: string, http: string): string =>
    [
      "host: 127.0.0.1",
      `port: ${port}`,
      `http: ${JSON.stringify(http)}`,
      opts.jetstream === false ? "" : jetstreamBlock(storeDir),
      authConfig(opts.auth ?? "roles"),
      opts.extraConfig ?? "",
    ].join("\n");
  const violations: string[] = [];
  const forward = opts.log ?? defaultLog();
  const log = (line: string) => {
    if (isViolation(line)) violations.push(line);
    forward?.(line);
  };

  let configText = config("-1", "127.0.0.1:-1");
  let server: NatsServerProcess | undefined;
  let stopped = false;
  const launch = async (): Promise<NatsServerProcess> =>
    launchNatsServer({
      binary,
      configText,
      dir,
      name: "nats-server (test)",
      log,
      onSpawn: (pid) => recordProcess(pid, "nats-server", dir),
    });

  try {
    server = await launch();
  } catch (err) {
    await fs.rm(dir, { recursive: true, force: true });
    throw err;
  }
  const first = server;
  // Pin the ports the server picked, so restart() comes back where clients expect it.
  configText = config(new URL(first.clientUrl).port, new URL(first.monitorUrl).host);

  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await server?.stop();
    await fs.rm(dir, { recursive: true, force: true });
  };
  return {
    url: first.clientUrl,
    monitorUrl: first.monitorUrl,
    storeDir,
    dir,
    get pid() {
      return (server ?? first).pid;
    },
    stop,
    violations: () => [...violations],
    kill9: async () => {
      await server?.kill9();
    },
    restart: async () => {
      if (stopped) throw new Error("restart() after stop(): the server's folder is gone");
      await server?.stop();
      server = undefined;
      server = await launch();
    },
    [Symbol.asyncDispose]: stop,
  };
}

/**
 * One nats-server for the whole test file: started in beforeAll, stopped in afterAll (which runs
 * even when tests fail). Read the handle's fields inside tests and hooks, not at collection time.
 */
export function useNats(opts: StartNatsOptions = {}): NatsHandle {
  let handle: NatsHandle | undefined;
  beforeAll(async () => {
    handle = await startNats(opts);
  });
  afterAll(async () => {
    const refused = handle?.violations() ?? [];
    await handle?.stop();
    if (refused.length > 0 && !opts.expectViolations) {
      // One line per (identity, operation, subject), with its count.
      const kinds = new Map<string, number>();
      for (const line of refused) {
        const key = /"[^"]*\/[^"]*" - .*$/.exec(line)?.[0].replace(/, SID \S+$/, "") ?? line;
        kinds.set(key, (kinds.get(key) ?? 0) + 1);
      }
      throw new Error(
        `nats-server refused ${refused.length} publish(es)/subscription(s) of natter's identities: an allow-list in nats/permissions.ts lacks what the code does (or a test used a node's connection for an operator's look: use NodeHandle.ops()):\n${[...kinds].map(([k, n]) => `${n} × ${k}`).join("\n")}`,
      );
    }
  });
  const get = (): NatsHandle => {
    if (handle === undefined) throw new Error("useNats(): the server is not started yet (use it inside tests or hooks)");
    return handle;
  };
  return {
    get url() {
      return get().url;
    },
    get monitorUrl() {
      return get().monitorUrl;
    },
    get storeDir() {
      return get().storeDir;
    },
    get dir() {
      return get().dir;
    },
    get pid() {
      return get().pid;
    },
    violations: () => get().violations(),
    stop: () => get().stop(),
    kill9: () => get().kill9(),
    restart: () => get().restart(),
    [Symbol.asyncDispose]: () => get().stop(),
  };
}

// ---------------------------------------------------------------------------------------------
// Clusters

interface NatsClusterNode {
  readonly name: string;
  /** `nats://127.0.0.1:PORT` — the same across restart(). */
  readonly url: string;
  /** `nats://127.0.0.1:PORT` of its route listener (without the route user's credentials). */
  readonly clusterUrl: string;
  readonly monitorUrl: string;
  readonly storeDir: string;
  /** Whether the node's process is up (false after kill9/stop until restart). */
  readonly running: boolean;
  readonly pid: number | undefined;
  /** SIGKILL, keeping the data folder and ports. */
  kill9(): Promise<void>;
  /** Stops (if running) and starts again with the same data and ports. */
  restart(): Promise<void>;
  /** Graceful stop, keeping the data folder. */
  stop(): Promise<void>;
}

export interface NatsCluster {
  readonly urls: string[];
  readonly nodes: NatsClusterNode[];
  /**
   * Waits until every running node knows the same JetStream meta leader and reports healthy
   * (/healthz, which also checks that its streams and consumers are current).
   */
  waitForMeta(timeoutMs?: number): Promise<void>;
  /** Stops every node and removes the cluster's folder. Idempotent. */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

interface NodePorts {
  client: number;
  cluster: number;
  http: number;
}

class ClusterNode implements NatsClusterNode {
  readonly name: string;
  readonly url: string;
  readonly clusterUrl: string;
  readonly monitorUrl: string;
  readonly storeDir: string;
  readonly dir: string;
  readonly #binary: string;
  readonly #configText: string;
  readonly #log: ((line: string) => void) | undefined;
  #server: NatsServerProcess | undefined;

  constructor(args: {
    name: string;
    dir: string;
    binary: string;
    ports: NodePorts;
    routes: number[];
    clusterName: string;
    extraConfig: string;
    clusterConfig: string;
    log: ((line: string) => void) | undefined;
  }) {
    this.name = args.name;
    this.dir = args.dir;
    this.#binary = args.binary;
    this.#log = args.log;
    this.storeDir = path.join(args.dir, "jetstream");
    this.url = `nats://127.0.0.1:${args.ports.client}`;
    this.clusterUrl = `nats://127.0.0.1:${args.ports.cluster}`;
    this.monitorUrl = `http://127.0.0.1:${args.ports.http}`;
    this.#configText = [
      `server_name: ${args.name}`,
      "host: 127.0.0.1",
      `port: ${args.ports.client}`,
      `http: "127.0.0.1:${args.ports.http}"`,
      jetstreamBlock(this.storeDir),
      authConfig("roles"),
      "cluster {",
      `  name: ${args.clusterName}`,
      `  listen: "127.0.0.1:${args.ports.cluster}"`,
      // Routes authenticate, as in deploy/nats/: a server that is not given the route user's password cannot join.
      `  authorization { user: ${TEST_ROUTE_USER.user}, password: ${JSON.stringify(TEST_ROUTE_USER.password)} }`,
      `  routes: [${args.routes.map((p) => `"nats://${TEST_ROUTE_USER.user}:${TEST_ROUTE_USER.password}@127.0.0.1:${p}"`).join(", ")}]`,
      args.clusterConfig,
      "}",
      args.extraConfig,
    ].join("\n");
  }

  get running(): boolean {
    return this.#server !== undefined;
  }

  get pid(): number | undefined {
    return this.#server?.pid;
  }

  async start(): Promise<void> {
    this.#server = await launchNatsServer({
      binary: this.#binary,
      configText: this.#configText,
      dir: this.dir,
      name: this.name,
      log: this.#log === undefined ? undefined : (line) => this.#log?.(`[${this.name}] ${line}`),
      onSpawn: (pid) => recordProcess(pid, "nats-server", this.dir),
    });
  }

  async kill9(): Promise<void> {
    await this.#server?.kill9();
    this.#server = undefined;
  }

  async stop(): Promise<void> {
    await this.#server?.stop();
    this.#server = undefined;
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }
}

/**
 * Starts a JetStream cluster of `size` nodes on loopback, each with its own store folder and
 * fixed ports (picked up front so routes can name them). Retries with new ports if one was taken
 * in the meantime.
 */
export async function startNatsCluster(
  size = 3,
  /** `clusterConfig`: added inside each node's cluster { } block (e.g. a tls { } block for routes). */
  opts: { extraConfig?: string; clusterConfig?: string; log?: (line: string) => void } = {},
): Promise<NatsCluster> {
  const binary = await natsServerBinary();
  const root = await fs.mkdtemp(path.join(os.tmpdir(), "natter-nats-cluster-"));
  const attempts = 3;
  for (let attempt = 1; ; attempt++) {
    const ports = await freePorts(size * 3);
    const nodePorts: NodePorts[] = Array.from({ length: size }, (_, i) => ({
      client: ports[i * 3] as number,
      cluster: ports[i * 3 + 1] as number,
      http: ports[i * 3 + 2] as number,
    }));
    const nodes = nodePorts.map(
      (p, i) =>
        new ClusterNode({
          name: `n${i + 1}`,
          dir: path.join(root, `n${i + 1}`),
          binary,
          ports: p,
          routes: nodePorts.filter((_, j) => j !== i).map((q) => q.cluster),
          clusterName: "natter-test",
          extraConfig: opts.extraConfig ?? "",
          clusterConfig: opts.clusterConfig ?? "",
          log: opts.log ?? defaultLog(),
        }),
    );
    const started = await Promise.allSettled(nodes.map((n) => n.start()));
    const failed = started.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed === undefined) return makeCluster(root, nodes);
    await Promise.all(nodes.map((n) => n.kill9()));
    await Promise.all(nodes.map((n) => fs.rm(n.dir, { recursive: true, force: true })));
    const reason = failed.reason as unknown;
    const portTaken = reason instanceof NatsServerLaunchError && /address already in use/i.test(reason.message);
    if (!portTaken || attempt >= attempts) {
      await fs.rm(root, { recursive: true, force: true });
      throw reason;
    }
  }
}

function makeCluster(root: string, nodes: ClusterNode[]): NatsCluster {
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await Promise.all(nodes.map((n) => n.stop()));
    await fs.rm(root, { recursive: true, force: true });
  };
  return {
    urls: nodes.map((n) => n.url),
    nodes,
    waitForMeta: (timeoutMs = 30_000) => waitForMeta(nodes, timeoutMs),
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

interface JszMeta {
  meta_cluster?: { leader?: string; cluster_size?: number; replicas?: Array<{ name: string; current?: boolean }> };
}

async function getJson(url: string): Promise<{ ok: boolean; body: unknown }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
  return { ok: res.ok, body: await res.json() };
}

async function waitForMeta(nodes: ClusterNode[], timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let last = "no answer yet";
  while (performance.now() < deadline) {
    try {
      const running = nodes.filter((n) => n.running);
      const states = await Promise.all(
        running.map(async (n) => {
          const jsz = (await getJson(`${n.monitorUrl}/jsz`)).body as JszMeta;
          const health = await getJson(`${n.monitorUrl}/healthz`);
          const meta = jsz.meta_cluster;
          return { name: n.name, leader: meta?.leader ?? "", replicas: meta?.replicas ?? [], healthy: health.ok, health: health.body };
        }),
      );
      const leaders = new Set(states.map((s) => s.leader));
      const [leader] = leaders;
      // The leader's view of its followers: every other running node is known and current.
      const leaderState = states.find((s) => s.name === leader);
      const followersCurrent =
        leaderState !== undefined &&
        running
          .filter((n) => n.name !== leader)
          .every((n) => leaderState.replicas.some((r) => r.name === n.name && r.current === true));
      if (leaders.size === 1 && followersCurrent && states.every((s) => s.healthy)) return;
      last = JSON.stringify(states);
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`NATS cluster: no agreed JetStream meta leader / healthy nodes after ${timeoutMs} ms; last: ${last}`);
}
