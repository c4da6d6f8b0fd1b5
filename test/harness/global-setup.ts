// vitest globalSetup of the integration project: starts (or reuses) one Cassandra and one MinIO
// for the whole run, in parallel, hands them to test files with provide/inject, and on teardown
// stops what it started and proves that no server process of the run is left behind.
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { TestProject } from "vitest/node";
import type { ToolName } from "../../config/tools.ts";
import { isCached, label } from "../../scripts/obtain.ts";
import { findReusableCassandra, launchCassandra, type CassandraEndpoint } from "./cassandra.ts";
import { findReusableMinio, launchMinio, type MinioEndpoint } from "./minio.ts";
import { reapLeftovers, recordProcess, RUN_DIR_ENV } from "./processes.ts";

interface Acquired<E> {
  endpoint: E;
  /** Stops the server if this run started it; a no-op for a reused one. */
  release(): Promise<void>;
}

function secondsSince(start: number): string {
  return `${((performance.now() - start) / 1000).toFixed(1)} s`;
}

async function acquireCassandra(runDir: string): Promise<Acquired<CassandraEndpoint>> {
  const started = performance.now();
  const reusable = await findReusableCassandra();
  if (reusable !== undefined) {
    console.log(`[harness] cassandra: reusing ${reusable.endpoint.contactPoint} from ${reusable.source}`);
    return { endpoint: reusable.endpoint, release: async () => {} };
  }
  const dir = path.join(runDir, "cassandra");
  const server = await launchCassandra({ dir, onSpawn: (pid) => recordProcess(pid, "cassandra", dir) });
  console.log(`[harness] cassandra: started in ${secondsSince(started)} on ${server.endpoint.contactPoint} (pid ${server.pid})`);
  return { endpoint: server.endpoint, release: () => server.stop() };
}

async function acquireMinio(runDir: string): Promise<Acquired<MinioEndpoint>> {
  const started = performance.now();
  const reusable = await findReusableMinio();
  if (reusable !== undefined) {
    console.log(`[harness] minio: reusing ${reusable.endpoint.url} from ${reusable.source}`);
    return { endpoint: reusable.endpoint, release: async () => {} };
  }
  const dir = path.join(runDir, "minio");
  const server = await launchMinio({ dir, onSpawn: (pid) => recordProcess(pid, "minio", dir) });
  console.log(`[harness] minio: started in ${secondsSince(started)} on ${server.endpoint.url} (pid ${server.pid})`);
  return { endpoint: server.endpoint, release: () => server.stop() };
}

async function requireObtained(): Promise<void> {
  const missing: ToolName[] = [];
  for (const tool of ["nats-server", "cassandra", "minio"] as const) {
    if (!(await isCached(tool))) missing.push(tool);
  }
  if (missing.length > 0) {
    throw new Error(
      `integration tests need ${missing.map((t) => label(t)).join(", ")}: run \`npx tsx scripts/obtain.ts ${missing.join(" ")}\` first`,
    );
  }
}

/** Stops what was started, then checks every recorded process is gone; throws naming leftovers. */
async function teardownRun(runDir: string, releases: Array<() => Promise<void>>): Promise<void> {
  const released = await Promise.allSettled(releases.map((r) => r()));
  const leftovers = await reapLeftovers(runDir, 15_000);
  await fs.rm(runDir, { recursive: true, force: true });
  const errors: string[] = released
    .filter((r): r is PromiseRejectedResult => r.status === "rejected")
    .map((r) => `stopping a server failed: ${(r.reason as Error).message}`);
  if (leftovers.length > 0) {
    errors.push(
      `server processes left running after the tests (now SIGKILLed): ${leftovers
        .map((p) => `${p.kind} pid ${p.pid} (${p.dir})`)
        .join(", ")}. A test file did not stop what it started: use await using, useNats() or afterAll.`,
    );
  }
  if (errors.length > 0) {
    // vitest only logs errors thrown by a global teardown; make the run fail too.
    process.exitCode = 1;
    throw new Error(`[harness] ${errors.join("\n")}`);
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const runDir = await fs.mkdtemp(path.join(os.tmpdir(), "natter-run-"));
  // Test workers start after this and inherit the variable: their spawns are recorded here too.
  process.env[RUN_DIR_ENV] = runDir;
  project.provide("natterRunDir", runDir);
  const releases: Array<() => Promise<void>> = [];
  try {
    await requireObtained();
    const started = performance.now();
    const [cassandra, minio] = await Promise.allSettled([acquireCassandra(runDir), acquireMinio(runDir)]);
    for (const r of [cassandra, minio]) if (r.status === "fulfilled") releases.push(r.value.release);
    if (cassandra.status === "rejected") throw cassandra.reason;
    if (minio.status === "rejected") throw minio.reason;
    console.log(`[harness] servers ready in ${secondsSince(started)}`);
    project.provide("cassandra", cassandra.value.endpoint);
    project.provide("minio", minio.value.endpoint);
  } catch (err) {
    await teardownRun(runDir, releases).catch(() => {});
    throw err;
  }
  return () => teardownRun(runDir, releases);
}
