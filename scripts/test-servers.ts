// Keeps the slow test servers (Cassandra, MinIO) running between test runs for a fast local
// loop. The integration global setup finds them through the state files and reuses them (and
// leaves them running).
//
//   tsx scripts/test-servers.ts up       start both, detached (no-op for one already running)
//   tsx scripts/test-servers.ts status   show what runs where
//   tsx scripts/test-servers.ts down     stop both and remove their data
import fs from "node:fs/promises";
import path from "node:path";
import { pathToFileURL } from "node:url";
import {
  cassandraStatePath,
  launchCassandra,
  queryReleaseVersion,
  readCassandraState,
  testServersDir,
  type CassandraState,
} from "../test/harness/cassandra.ts";
import { launchMinio, minioStatePath, readMinioState, type MinioState } from "../test/harness/minio.ts";
import { isAlive, terminate } from "../test/harness/processes.ts";

function seconds(since: number): string {
  return `${((performance.now() - since) / 1000).toFixed(1)} s`;
}

async function writeState(file: string, state: CassandraState | MinioState): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  await fs.writeFile(file, `${JSON.stringify(state, null, 2)}\n`);
}

async function upCassandra(): Promise<void> {
  const state = await readCassandraState();
  if (state !== undefined && isAlive(state.pid, state.startTime)) {
    console.log(`cassandra: already running on ${state.endpoint.contactPoint} (pid ${state.pid})`);
    return;
  }
  const started = performance.now();
  console.log("cassandra: starting (about 20 s)…");
  const server = await launchCassandra({ dir: path.join(testServersDir(), "cassandra"), detached: true });
  await writeState(cassandraStatePath(), {
    pid: server.pid,
    startTime: server.startTime,
    dir: server.dir,
    endpoint: server.endpoint,
    startedAt: new Date().toISOString(),
  });
  console.log(`cassandra: up in ${seconds(started)} on ${server.endpoint.contactPoint} (pid ${server.pid}, logs ${server.logFile})`);
}

async function upMinio(): Promise<void> {
  const state = await readMinioState();
  if (state !== undefined && isAlive(state.pid, state.startTime)) {
    console.log(`minio: already running on ${state.endpoint.url} (pid ${state.pid})`);
    return;
  }
  const started = performance.now();
  const server = await launchMinio({ dir: path.join(testServersDir(), "minio"), detached: true });
  await writeState(minioStatePath(), {
    pid: server.pid,
    startTime: server.startTime,
    dir: server.dir,
    endpoint: server.endpoint,
    startedAt: new Date().toISOString(),
  });
  console.log(`minio: up in ${seconds(started)} on ${server.endpoint.url} (pid ${server.pid})`);
}

async function down(name: string, state: CassandraState | MinioState | undefined, stateFile: string): Promise<void> {
  if (state === undefined) {
    console.log(`${name}: not started by this script`);
    return;
  }
  if (isAlive(state.pid, state.startTime)) {
    const started = performance.now();
    await terminate(state.pid, { startTime: state.startTime, signal: "SIGTERM", graceMs: 20_000 });
    console.log(`${name}: stopped pid ${state.pid} in ${seconds(started)}`);
  } else {
    console.log(`${name}: pid ${state.pid} was no longer running`);
  }
  await fs.rm(state.dir, { recursive: true, force: true });
  await fs.rm(stateFile, { force: true });
}

async function status(): Promise<void> {
  const cassandra = await readCassandraState();
  if (cassandra === undefined) console.log("cassandra: not started (tsx scripts/test-servers.ts up)");
  else if (!isAlive(cassandra.pid, cassandra.startTime)) console.log(`cassandra: stale state, pid ${cassandra.pid} is gone`);
  else {
    const version = await queryReleaseVersion(cassandra.endpoint).catch((err: Error) => `not answering: ${err.message}`);
    console.log(`cassandra: pid ${cassandra.pid} on ${cassandra.endpoint.contactPoint}, release ${version}, since ${cassandra.startedAt}`);
  }
  const minio = await readMinioState();
  if (minio === undefined) console.log("minio: not started (tsx scripts/test-servers.ts up)");
  else if (!isAlive(minio.pid, minio.startTime)) console.log(`minio: stale state, pid ${minio.pid} is gone`);
  else console.log(`minio: pid ${minio.pid} on ${minio.endpoint.url}, since ${minio.startedAt}`);
}

export async function main(args: readonly string[]): Promise<number> {
  const command = args[0] ?? "status";
  try {
    switch (command) {
      case "up": {
        const results = await Promise.allSettled([upCassandra(), upMinio()]);
        const failed = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
        for (const f of failed) console.error(`test-servers: ${(f.reason as Error).message}`);
        return failed.length === 0 ? 0 : 1;
      }
      case "down":
        await down("cassandra", await readCassandraState(), cassandraStatePath());
        await down("minio", await readMinioState(), minioStatePath());
        return 0;
      case "status":
        await status();
        return 0;
      default:
        console.error(`test-servers: unknown command ${JSON.stringify(command)}: expected up, down or status`);
        return 1;
    }
  } catch (err) {
    console.error(`test-servers: ${(err as Error).message}`);
    return 1;
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  process.exitCode = await main(process.argv.slice(2));
}
