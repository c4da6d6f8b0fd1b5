// One MinIO (S3) server for the whole test run, from the binary obtained by scripts/obtain.ts.
// Test files each get a fresh bucket with useBucket().
//
// Reuse instead of starting one: NATTER_TEST_MINIO=http://USER:PASSWORD@127.0.0.1:9000, or a
// server left running by `tsx scripts/test-servers.ts up` (state in <cache>/test-servers/minio.json).
import { spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Client, type BucketItem } from "minio";
import { afterAll, beforeAll, inject } from "vitest";
import { binPath } from "../../config/tools.ts";
import { isCached } from "../../scripts/obtain.ts";
import { testServersDir } from "./cassandra.ts";
import { fileTail, freePorts, indent, isAlive, processStartTime, randomId, terminate } from "./processes.ts";

const MINIO_ENV = "NATTER_TEST_MINIO";

/** What a test needs to connect; serialisable, handed from the global setup via provide/inject. */
export interface MinioEndpoint {
  /** `http://127.0.0.1:PORT` */
  url: string;
  endPoint: string;
  port: number;
  useSSL: boolean;
  accessKey: string;
  secretKey: string;
}

export interface MinioServer {
  readonly endpoint: MinioEndpoint;
  readonly pid: number;
  readonly startTime: number | undefined;
  readonly dir: string;
  readonly logFile: string;
  readonly startupMs: number;
  /** Stops the server and removes its folder. */
  stop(): Promise<void>;
}

export interface MinioState {
  pid: number;
  startTime: number | undefined;
  dir: string;
  endpoint: MinioEndpoint;
  startedAt: string;
}

export function minioStatePath(): string {
  return path.join(testServersDir(), "minio.json");
}

/** Parses `http://user:password@host:port` into an endpoint. */
function parseMinioUrl(value: string): MinioEndpoint {
  const url = new URL(value);
  const useSSL = url.protocol === "https:";
  return {
    url: `${url.protocol}//${url.host}`,
    endPoint: url.hostname,
    port: url.port === "" ? (useSSL ? 443 : 80) : Number(url.port),
    useSSL,
    accessKey: decodeURIComponent(url.username),
    secretKey: decodeURIComponent(url.password),
  };
}

export function minioClient(endpoint: MinioEndpoint): Client {
  return new Client({
    endPoint: endpoint.endPoint,
    port: endpoint.port,
    useSSL: endpoint.useSSL,
    accessKey: endpoint.accessKey,
    secretKey: endpoint.secretKey,
  });
}

async function isLive(endpoint: MinioEndpoint): Promise<string | undefined> {
  try {
    const res = await fetch(`${endpoint.url}/minio/health/live`, { signal: AbortSignal.timeout(2_000) });
    return res.status === 200 ? undefined : `HTTP ${res.status}`;
  } catch (err) {
    return (err as Error).message;
  }
}

/** Starts MinIO with its data in `dir` on random loopback ports and waits until it is live. */
export async function launchMinio(opts: {
  dir: string;
  detached?: boolean;
  readyTimeoutMs?: number;
  onSpawn?: (pid: number) => void;
}): Promise<MinioServer> {
  if (!(await isCached("minio"))) {
    throw new Error(`MinIO is not obtained (${binPath("minio")} missing): run \`npx tsx scripts/obtain.ts minio\``);
  }
  const attempts = 3;
  for (let attempt = 1; ; attempt++) {
    try {
      return await launchOnce(opts);
    } catch (err) {
      const portTaken = /address already in use/i.test((err as Error).message);
      if (!portTaken || attempt >= attempts) throw err;
    }
  }
}

async function launchOnce(opts: {
  dir: string;
  detached?: boolean;
  readyTimeoutMs?: number;
  onSpawn?: (pid: number) => void;
}): Promise<MinioServer> {
  const dir = opts.dir;
  await fs.rm(dir, { recursive: true, force: true });
  await fs.mkdir(path.join(dir, "data"), { recursive: true });
  const [port, consolePort] = (await freePorts(2)) as [number, number];
  const endpoint: MinioEndpoint = {
    url: `http://127.0.0.1:${port}`,
    endPoint: "127.0.0.1",
    port,
    useSSL: false,
    accessKey: "natter-test",
    secretKey: `secret-${randomId(20)}`,
  };
  const logFile = path.join(dir, "minio.log");
  const out = openSync(logFile, "a");
  const started = performance.now();
  const child = (() => {
    try {
      return spawn(
        binPath("minio"),
        [
          "server",
          path.join(dir, "data"),
          "--address",
          `127.0.0.1:${port}`,
          "--console-address",
          `127.0.0.1:${consolePort}`,
          "--certs-dir",
          path.join(dir, "certs"),
        ],
        {
          cwd: dir,
          detached: opts.detached ?? false,
          stdio: ["ignore", out, out],
          env: {
            ...process.env,
            MINIO_ROOT_USER: endpoint.accessKey,
            MINIO_ROOT_PASSWORD: endpoint.secretKey,
            MINIO_UPDATE: "off",
            MINIO_BROWSER: "off",
          },
        },
      );
    } finally {
      closeSync(out);
    }
  })();
  const exited = new Promise<string>((resolve) => {
    child.once("exit", (code, signal) => resolve(`exited (${signal ?? `code ${code}`})`));
    child.once("error", (err) => resolve(`could not start: ${err.message}`));
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`MinIO (${binPath("minio")}) ${await exited}`);
  const startTime = processStartTime(pid);
  if (opts.detached === true) child.unref();

  const stop = async (): Promise<void> => {
    await terminate(pid, { startTime, signal: "SIGTERM", graceMs: 5_000 });
    await fs.rm(dir, { recursive: true, force: true });
  };
  const timeoutMs = opts.readyTimeoutMs ?? 30_000;
  const deadline = performance.now() + timeoutMs;
  let exitReason: string | undefined;
  void exited.then((r) => {
    exitReason = r;
  });
  let last: string | undefined = "not asked yet";
  try {
    opts.onSpawn?.(pid);
    while (last !== undefined && exitReason === undefined && performance.now() < deadline) {
      last = await isLive(endpoint);
      if (last !== undefined) await Promise.race([sleep(100), exited]);
    }
    if (exitReason !== undefined) {
      throw new Error(`MinIO ${exitReason} before it was live on ${endpoint.url}. Its log (${logFile}):\n${indent(await fileTail(logFile))}`);
    }
    if (last !== undefined) {
      throw new Error(
        `MinIO not live on ${endpoint.url} within ${timeoutMs / 1000} s (last: ${last}). Its log (${logFile}):\n` +
          indent(await fileTail(logFile)),
      );
    }
  } catch (err) {
    await terminate(pid, { startTime, signal: "SIGKILL", graceMs: 5_000 });
    throw err;
  }
  return { endpoint, pid, startTime, dir, logFile, startupMs: performance.now() - started, stop };
}

/** A MinIO already running that tests may use (NATTER_TEST_MINIO or test-servers.ts), if any. */
export async function findReusableMinio(): Promise<{ endpoint: MinioEndpoint; source: string } | undefined> {
  const fromEnv = process.env[MINIO_ENV];
  if (fromEnv !== undefined && fromEnv !== "") {
    const endpoint = parseMinioUrl(fromEnv);
    const problem = await isLive(endpoint);
    if (problem !== undefined) throw new Error(`${MINIO_ENV} is set but ${endpoint.url}/minio/health/live fails: ${problem}`);
    return { endpoint, source: MINIO_ENV };
  }
  const state = await readMinioState();
  if (state === undefined || !isAlive(state.pid, state.startTime)) return undefined;
  if ((await isLive(state.endpoint)) !== undefined) return undefined;
  return { endpoint: state.endpoint, source: `scripts/test-servers.ts (pid ${state.pid})` };
}

export async function readMinioState(): Promise<MinioState | undefined> {
  try {
    return JSON.parse(await fs.readFile(minioStatePath(), "utf8")) as MinioState;
  } catch {
    return undefined;
  }
}

/** The MinIO handed to this test run by the global setup. */
function minioEndpoint(): MinioEndpoint {
  return inject("minio");
}

export interface BucketHandle {
  readonly client: Client;
  readonly bucket: string;
  readonly endpoint: MinioEndpoint;
}

/**
 * Deletes every object of a bucket, then the bucket. MinIO's bulk delete can report success yet
 * keep a nested key deleted in the same batch as its parent, so it lists again until empty.
 */
export async function removeBucket(client: Client, bucket: string): Promise<void> {
  for (let round = 0; round < 5; round++) {
    const names: string[] = [];
    for await (const item of client.listObjectsV2(bucket, "", true) as AsyncIterable<BucketItem>) {
      if (item.name !== undefined) names.push(item.name);
    }
    if (names.length === 0) break;
    // Deepest keys first.
    names.sort((a, b) => b.split("/").length - a.split("/").length);
    for (let i = 0; i < names.length; i += 1000) await client.removeObjects(bucket, names.slice(i, i + 1000));
  }
  await client.removeBucket(bucket);
}

/**
 * A fresh bucket for this test file, made in beforeAll and removed (objects first) in afterAll,
 * which runs even when tests fail. Call at the top level of the file or a describe.
 */
export function useBucket(): BucketHandle {
  let state: BucketHandle | undefined;
  beforeAll(async () => {
    const endpoint = minioEndpoint();
    const client = minioClient(endpoint);
    const bucket = `t-${randomId(16)}`;
    await client.makeBucket(bucket);
    state = { client, bucket, endpoint };
  });
  afterAll(async () => {
    if (state === undefined) return;
    const { client, bucket } = state;
    state = undefined;
    await removeBucket(client, bucket);
  });
  const get = (): BucketHandle => {
    if (state === undefined) throw new Error("useBucket(): the bucket is not ready (use it inside tests or hooks)");
    return state;
  };
  return {
    get client() {
      return get().client;
    },
    get bucket() {
      return get().bucket;
    },
    get endpoint() {
      return get().endpoint;
    },
  };
}
