// One Cassandra 5.0 for the whole test run (it takes ~20 s to start), from the jars obtained by
// scripts/obtain.ts. Test files each get a fresh keyspace with useKeyspace().
//
// Reuse instead of starting one: NATTER_TEST_CASSANDRA=127.0.0.1:9042, or a server left running
// by `tsx scripts/test-servers.ts up` (state in <cache>/test-servers/cassandra.json).
import { spawn } from "node:child_process";
import { openSync, closeSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import cassandra from "cassandra-driver";
import type { Client } from "cassandra-driver";
import { afterAll, beforeAll, inject } from "vitest";
import { cacheDir, cassandraLibDir, TOOLS } from "../../config/tools.ts";
import { cassandraJvmArgsPath, findJammJar, isCached } from "../../scripts/obtain.ts";
import {
  fileTail,
  freePorts,
  indent,
  isAlive,
  processStartTime,
  randomId,
  tcpAccepts,
  terminate,
} from "./processes.ts";

const CASSANDRA_ENV = "NATTER_TEST_CASSANDRA";
const LOCAL_DATA_CENTER = "datacenter1";

/** What a test needs to connect; serialisable, handed from the global setup via provide/inject. */
export interface CassandraEndpoint {
  /** `127.0.0.1:PORT` */
  contactPoint: string;
  localDataCenter: string;
}

export interface CassandraServer {
  readonly endpoint: CassandraEndpoint;
  readonly pid: number;
  readonly startTime: number | undefined;
  readonly dir: string;
  readonly logFile: string;
  /** Its JMX port on 127.0.0.1 (what nodetool asks). */
  readonly jmxPort: number;
  /** Milliseconds from spawn to CQL answering. */
  readonly startupMs: number;
  /** Kills the server (SIGKILL unless graceful) and removes its folder. */
  stop(opts?: { graceful?: boolean }): Promise<void>;
  /** Stops the server (SIGTERM unless `kill9`) and keeps its folder, for `restart`. */
  halt(opts?: { kill9?: boolean }): Promise<void>;
  /** Starts a halted server again on the same folder, data and ports. */
  restart(): Promise<CassandraServer>;
}

/** State file written by scripts/test-servers.ts for a long-running Cassandra. */
export interface CassandraState {
  pid: number;
  startTime: number | undefined;
  dir: string;
  endpoint: CassandraEndpoint;
  startedAt: string;
}

export function testServersDir(): string {
  return path.join(cacheDir(), "test-servers");
}

export function cassandraStatePath(): string {
  return path.join(testServersDir(), "cassandra.json");
}

function cassandraYaml(dir: string, ports: { native: number; storage: number }): string {
  const d = (name: string): string => JSON.stringify(path.join(dir, name));
  return `cluster_name: natter-test
num_tokens: 1
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
commitlog_sync: periodic
commitlog_sync_period: 10000ms
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1:${ports.storage}"
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: ${ports.storage}
native_transport_port: ${ports.native}
start_native_transport: true
auto_snapshot: false
data_file_directories:
  - ${d("data")}
commitlog_directory: ${d("commitlog")}
hints_directory: ${d("hints")}
saved_caches_directory: ${d("saved_caches")}
cdc_raw_directory: ${d("cdc_raw")}
`;
}

function logbackXml(logFile: string): string {
  return `<configuration scan="false">
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>${logFile}</file>
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="FILE" /></root>
</configuration>
`;
}

/** A CQL login (for a Cassandra with PasswordAuthenticator). */
export interface CassandraLogin {
  username: string;
  password: string;
}

/** Opens a CQL session (with `login`, if given) and reads the release version; rejects if it cannot. */
export async function queryReleaseVersion(endpoint: CassandraEndpoint, login?: CassandraLogin): Promise<string> {
  const client = new cassandra.Client({
    contactPoints: [endpoint.contactPoint],
    localDataCenter: endpoint.localDataCenter,
    socketOptions: { connectTimeout: 3_000, readTimeout: 10_000 },
    ...(login ? { credentials: login } : {}),
  });
  try {
    await client.connect();
    const rs = await client.execute("SELECT release_version FROM system.local");
    return String(rs.first()?.get("release_version"));
  } finally {
    await client.shutdown();
  }
}

interface LaunchOptions {
  dir: string;
  detached?: boolean;
  readyTimeoutMs?: number;
  onSpawn?: (pid: number) => void;
  /** More lines for its cassandra.yaml. */
  yaml?: string;
  /** More JVM arguments, e.g. `-Dcassandra.settings.<key>=<value>` as compose gives them. */
  jvmArgs?: readonly string[];
  /** The login that shows it is ready, for a Cassandra with authentication on. */
  login?: CassandraLogin;
}

/**
 * Starts Cassandra in `dir` (created; its cassandra.yaml, logback.xml, data and logs go there) on
 * random loopback ports and waits until CQL answers. `detached` lets it outlive this process.
 */
export async function launchCassandra(opts: LaunchOptions): Promise<CassandraServer> {
  if (!(await isCached("cassandra"))) {
    throw new Error(
      `Cassandra ${TOOLS.cassandra.version} is not obtained (${cassandraLibDir()}): run \`npx tsx scripts/obtain.ts cassandra\``,
    );
  }
  const lib = cassandraLibDir();
  const jamm = await findJammJar(lib);
  if (jamm === undefined) throw new Error(`no jamm-*.jar in ${lib}: re-run \`npx tsx scripts/obtain.ts cassandra\``);
  const attempts = 3;
  for (let attempt = 1; ; attempt++) {
    try {
      return await launchOnce(opts, lib, jamm);
    } catch (err) {
      const portTaken = /address already in use|BindException/i.test((err as Error).message);
      if (!portTaken || attempt >= attempts) throw err;
    }
  }
}

async function launchOnce(
  opts: LaunchOptions,
  lib: string,
  jamm: string,
  reuse?: [number, number, number],
): Promise<CassandraServer> {
  const dir = opts.dir;
  if (reuse === undefined) await fs.rm(dir, { recursive: true, force: true });
  await fs.mkdir(path.join(dir, "logs"), { recursive: true });
  const [native, storage, jmx] = reuse ?? ((await freePorts(3)) as [number, number, number]);
  const logFile = path.join(dir, "logs", "system.log");
  const outFile = path.join(dir, "logs", "stdout.log");
  await fs.writeFile(path.join(dir, "cassandra.yaml"), cassandraYaml(dir, { native, storage }) + (opts.yaml ?? ""));
  await fs.writeFile(path.join(dir, "logback.xml"), logbackXml(logFile));
  const args = [
    "-Xms1G",
    "-Xmx1G",
    "-Xss256k",
    `@${cassandraJvmArgsPath()}`,
    `-javaagent:${jamm}`,
    "-Djava.net.preferIPv4Stack=true",
    `-Dcassandra.config=file://${path.join(dir, "cassandra.yaml")}`,
    `-Dcassandra.storagedir=${dir}`,
    `-Dcassandra.logdir=${path.join(dir, "logs")}`,
    `-Dlogback.configurationFile=${path.join(dir, "logback.xml")}`,
    "-Dcassandra-foreground=yes",
    `-Dcassandra.jmx.local.port=${jmx}`,
    "-Dcassandra.skip_wait_for_gossip_to_settle=0",
    "-Dcassandra.ring_delay_ms=1000",
    "-Dcassandra.initial_token=0",
    ...(opts.jvmArgs ?? []),
    "-cp",
    `${lib}/*`,
    "org.apache.cassandra.service.CassandraDaemon",
  ];
  const out = openSync(outFile, "a");
  const started = performance.now();
  const child = (() => {
    try {
      return spawn("java", args, { cwd: dir, detached: opts.detached ?? false, stdio: ["ignore", out, out] });
    } finally {
      closeSync(out); // the child has its own copy
    }
  })();
  const exited = new Promise<string>((resolve) => {
    child.once("exit", (code, signal) => resolve(`exited (${signal ?? `code ${code}`})`));
    child.once("error", (err) => resolve(`could not start java: ${err.message}`));
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`Cassandra: ${await exited}; is java 17 on PATH?`);
  const startTime = processStartTime(pid);
  if (opts.detached === true) child.unref();

  const endpoint: CassandraEndpoint = { contactPoint: `127.0.0.1:${native}`, localDataCenter: LOCAL_DATA_CENTER };
  const stop = async (stopOpts: { graceful?: boolean } = {}): Promise<void> => {
    await terminate(pid, {
      startTime,
      signal: stopOpts.graceful === true ? "SIGTERM" : "SIGKILL",
      graceMs: stopOpts.graceful === true ? 20_000 : 5_000,
    });
    await fs.rm(dir, { recursive: true, force: true });
  };
  const halt = async (haltOpts: { kill9?: boolean } = {}): Promise<void> => {
    await terminate(pid, { startTime, signal: haltOpts.kill9 === true ? "SIGKILL" : "SIGTERM", graceMs: 20_000 });
  };
  const restart = (): Promise<CassandraServer> => launchOnce(opts, lib, jamm, [native, storage, jmx]);
  const logs = async (): Promise<string> =>
    `system.log:\n${indent(await fileTail(logFile, 25))}\nstdout/stderr:\n${indent(await fileTail(outFile, 15))}`;

  const timeoutMs = opts.readyTimeoutMs ?? 180_000;
  const deadline = performance.now() + timeoutMs;
  let exitReason: string | undefined;
  void exited.then((r) => {
    exitReason = r;
  });
  let last = "CQL port not open yet";
  let ready = false;
  try {
    opts.onSpawn?.(pid);
    while (!ready && exitReason === undefined && performance.now() < deadline) {
      if (await tcpAccepts("127.0.0.1", native)) {
        try {
          await queryReleaseVersion(endpoint, opts.login);
          ready = true;
        } catch (err) {
          last = (err as Error).message;
        }
      }
      if (!ready) await Promise.race([sleep(500), exited]);
    }
    if (exitReason !== undefined) {
      throw new Error(`Cassandra ${exitReason} before CQL answered on ${endpoint.contactPoint}. Logs in ${dir}/logs:\n${await logs()}`);
    }
    if (!ready) {
      throw new Error(
        `Cassandra did not answer CQL on ${endpoint.contactPoint} within ${timeoutMs / 1000} s (last: ${last}). ` +
          `Logs in ${dir}/logs:\n${await logs()}`,
      );
    }
  } catch (err) {
    await terminate(pid, { startTime, signal: "SIGKILL", graceMs: 5_000 });
    throw err;
  }
  return { endpoint, pid, startTime, dir, logFile, jmxPort: jmx, startupMs: performance.now() - started, stop, halt, restart };
}

/**
 * A Cassandra already running that tests may use: NATTER_TEST_CASSANDRA, or the live server of
 * `scripts/test-servers.ts up`. Undefined when there is none (a stale state file is ignored).
 */
export async function findReusableCassandra(): Promise<{ endpoint: CassandraEndpoint; source: string } | undefined> {
  const fromEnv = process.env[CASSANDRA_ENV];
  if (fromEnv !== undefined && fromEnv !== "") {
    const endpoint = { contactPoint: fromEnv, localDataCenter: LOCAL_DATA_CENTER };
    try {
      await queryReleaseVersion(endpoint);
    } catch (err) {
      throw new Error(`${CASSANDRA_ENV}=${fromEnv} but no Cassandra answers CQL there: ${(err as Error).message}`, { cause: err });
    }
    return { endpoint, source: `${CASSANDRA_ENV}` };
  }
  const state = await readCassandraState();
  if (state === undefined || !isAlive(state.pid, state.startTime)) return undefined;
  try {
    await queryReleaseVersion(state.endpoint);
  } catch {
    return undefined;
  }
  return { endpoint: state.endpoint, source: `scripts/test-servers.ts (pid ${state.pid})` };
}

export async function readCassandraState(): Promise<CassandraState | undefined> {
  try {
    return JSON.parse(await fs.readFile(cassandraStatePath(), "utf8")) as CassandraState;
  } catch {
    return undefined;
  }
}

/** The Cassandra handed to this test run by the global setup. */
function cassandraEndpoint(): CassandraEndpoint {
  return inject("cassandra");
}

export interface KeyspaceHandle {
  /** A client bound to the keyspace. */
  readonly client: Client;
  readonly keyspace: string;
  readonly contactPoint: string;
  readonly localDataCenter: string;
}

/**
 * A fresh keyspace (SimpleStrategy, RF 1) for this test file, created in beforeAll and dropped in
 * afterAll, which runs even when tests fail. Call at the top level of the file or a describe;
 * read the handle's fields inside tests and hooks.
 */
export function useKeyspace(): KeyspaceHandle {
  let state: { client: Client; keyspace: string; endpoint: CassandraEndpoint } | undefined;
  beforeAll(async () => {
    const endpoint = cassandraEndpoint();
    const keyspace = `t_${randomId(12)}`;
    const admin = new cassandra.Client({ contactPoints: [endpoint.contactPoint], localDataCenter: endpoint.localDataCenter });
    try {
      await admin.execute(
        `CREATE KEYSPACE ${keyspace} WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`,
      );
    } finally {
      await admin.shutdown();
    }
    const client = new cassandra.Client({
      contactPoints: [endpoint.contactPoint],
      localDataCenter: endpoint.localDataCenter,
      keyspace,
    });
    state = { client, keyspace, endpoint };
    await client.connect();
  });
  afterAll(async () => {
    if (state === undefined) return;
    const { client, keyspace } = state;
    state = undefined;
    try {
      await client.execute(`DROP KEYSPACE IF EXISTS ${keyspace}`);
    } finally {
      await client.shutdown();
    }
  });
  const get = (): NonNullable<typeof state> => {
    if (state === undefined) throw new Error("useKeyspace(): the keyspace is not ready (use it inside tests or hooks)");
    return state;
  };
  return {
    get client() {
      return get().client;
    },
    get keyspace() {
      return get().keyspace;
    },
    get contactPoint() {
      return get().endpoint.contactPoint;
    },
    get localDataCenter() {
      return get().endpoint.localDataCenter;
    },
  };
}

