// npm run bench:persist [-- --messages 20000 --conversations 200 --rounds 5 --writes 64 --ack-pending 4096]
// Writes the same N messages (a) through natter's persister (JetStream consumer → store → ack)
// and (b) straight through the driver's executeConcurrent (one INSERT per row), on the same
// Cassandra node, and compares. Uses a running test Cassandra (`npx tsx scripts/test-servers.ts up`)
// or starts one.
//
// Cassandra on a small machine keeps getting faster for minutes (JIT, memtables, compaction) and
// a single timing of either path varies by ±30 %. So after an untimed warm-up of both paths, each
// round times both, in alternating order, and the medians are compared.
// Last line: persist: messages=… persister_rows_per_s=… driver_rows_per_s=… ratio=…
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { jetstream, jetstreamManager, type JetStreamClient } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import cassandra from "cassandra-driver";
import { loadConfig, type CassandraStoreConfig } from "../config/index.ts";
import { silentLogger } from "../core/logger.ts";
import { bucketOf, CassandraMessageStore, migrateCassandra, Persister } from "../persistence/index.ts";
import { conversationSubject, encodeJson, ensureTopology, topologyOf, type Topology } from "../nats/index.ts";
import type { ConversationMessage } from "../streams/index.ts";
import { findReusableCassandra, launchCassandra } from "../test/harness/cassandra.ts";
import { startNats } from "../test/harness/nats.ts";

const { values } = parseArgs({
  options: {
    messages: { type: "string", default: "20000" },
    conversations: { type: "string", default: "200" },
    rounds: { type: "string", default: "5" },
    "driver-concurrency": { type: "string", default: "256" },
    "timeout-s": { type: "string", default: "600" },
    "rows-per-write": { type: "string" },
    writes: { type: "string" },
    "ack-pending": { type: "string" },
  },
});
const N = Number(values.messages);
const CONVS = Number(values.conversations);
const ROUNDS = Math.max(1, Number(values.rounds));
const DRIVER_CONCURRENCY = Number(values["driver-concurrency"]);
/** natter's defaults, as `natter start` runs the persister, unless a knob overrides them. */
const config = loadConfig({
  env: {},
  overrides: {
    ...(values.writes ? { workers: { persistConcurrency: Number(values.writes) } } : {}),
    ...(values["ack-pending"] ? { streams: { persisterMaxAckPending: Number(values["ack-pending"]) } } : {}),
  },
});
const TIMEOUT_MS = Number(values["timeout-s"]) * 1000;
const say = (line: string) => process.stderr.write(`${line}\n`);
const INSERT =
  "INSERT INTO messages (conv_id, bucket, msg_id, kind, sender, device, client_id, body, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";

function storeConfig(contactPoint: string, keyspace: string): CassandraStoreConfig {
  const cfg = loadConfig({
    env: {},
    overrides: { store: { kind: "cassandra", contactPoints: [contactPoint], keyspace, consistency: "ONE" } },
  });
  if (cfg.store.kind !== "cassandra") throw new Error("unreachable");
  return cfg.store;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** The N messages of one round: CONVS conversations, round-robin, ids fresh per round. */
function messagesOf(tag: string): ConversationMessage[] {
  const now = Date.now();
  return Array.from({ length: N }, (_, i) => ({
    v: 1,
    type: "msg",
    conv: `${tag}_c${i % CONVS}`,
    from: `u${i % 50}`,
    device: "d",
    cid: `c${i}`,
    text: `benchmark message number ${i} with a little text in it`,
    ts: now + i,
  }));
}

interface Paths {
  nc: NatsConnection;
  js: JetStreamClient;
  topology: Topology;
  store: CassandraMessageStore;
  driver: cassandra.Client;
}

/** (a) The messages wait in JetStream, then a persister drains them: rows per second. */
async function viaPersister(p: Paths, messages: ConversationMessage[], tag: string): Promise<{ rate: number; rowsPerWrite: number }> {
  for (let i = 0; i < messages.length; i += 500) {
    await Promise.all(messages.slice(i, i + 500).map((m, k) => p.js.publish(conversationSubject(p.topology, m.conv), encodeJson(m), { msgID: `${tag}-${i + k}` })));
  }
  const persister = new Persister({
    nc: p.nc,
    store: p.store,
    topology: p.topology,
    log: silentLogger(),
    maxWrites: config.workers.persistConcurrency,
    pullAhead: config.streams.persisterMaxAckPending,
    ...(values["rows-per-write"] ? { maxRowsPerWrite: Number(values["rows-per-write"]) } : {}),
  });
  const t0 = performance.now();
  await persister.start();
  const deadline = Date.now() + TIMEOUT_MS;
  let lastSay = performance.now();
  while (persister.stats.persisted < messages.length && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 5));
    if (performance.now() - lastSay > 2000) {
      lastSay = performance.now();
      say(`  persister: ${persister.stats.persisted}/${messages.length}`);
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  await persister.stop();
  if (persister.stats.persisted < messages.length) throw new Error(`persister wrote ${persister.stats.persisted} of ${messages.length} within the timeout`);
  if (persister.stats.failedBatches > 0) say(`  (${persister.stats.failedBatches} failed writes, retried)`);
  return { rate: messages.length / seconds, rowsPerWrite: persister.stats.persisted / persister.stats.writes };
}

/** (b) The driver alone: the same rows into the same table, executeConcurrent: rows per second. */
async function viaDriver(p: Paths, messages: ConversationMessage[], firstId: number): Promise<number> {
  const params = messages.map((m, i) => [m.conv, bucketOf(m.ts), cassandra.types.Long.fromNumber(firstId + i), "msg", m.from, m.device, m.cid, m.text, new Date(m.ts)]);
  const t0 = performance.now();
  await cassandra.concurrent.executeConcurrent(p.driver, INSERT, params, { concurrencyLevel: DRIVER_CONCURRENCY, raiseOnFirstError: true });
  return messages.length / ((performance.now() - t0) / 1000);
}

async function main(): Promise<void> {
  const cleanups: (() => Promise<unknown>)[] = [];
  try {
    let contactPoint: string;
    const reuse = await findReusableCassandra();
    if (reuse) {
      contactPoint = reuse.endpoint.contactPoint;
      say(`cassandra: reusing ${contactPoint} (${reuse.source})`);
    } else {
      say("cassandra: starting one (about 20 s)…");
      const dir = mkdtempSync(path.join(os.tmpdir(), "natter-bench-cass-"));
      const c = await launchCassandra({ dir });
      cleanups.push(() => c.stop());
      contactPoint = c.endpoint.contactPoint;
    }
    const nats = await startNats();
    cleanups.push(() => nats.stop());
    const nc = await connect({ servers: nats.url, noAsyncTraces: true });
    cleanups.push(() => nc.drain());
    const js = jetstream(nc);
    const jsm = await jetstreamManager(nc);
    await ensureTopology(jsm, config.streams);
    const topology = topologyOf(config.streams);

    // One keyspace per path, so neither reads or compacts the other's rows.
    const run = `bench_${Date.now().toString(36)}`;
    const cfgA = storeConfig(contactPoint, `${run}_a`);
    const cfgB = storeConfig(contactPoint, `${run}_b`);
    for (const cfg of [cfgA, cfgB]) await migrateCassandra(cfg, silentLogger());
    const store = await CassandraMessageStore.open(cfgA, { concurrency: config.workers.persistConcurrency });
    const driver = new cassandra.Client({ contactPoints: [contactPoint], localDataCenter: "datacenter1", keyspace: cfgB.keyspace });
    cleanups.push(async () => {
      for (const ks of [cfgA.keyspace, cfgB.keyspace]) await driver.execute(`DROP KEYSPACE IF EXISTS ${ks}`);
      await store.close();
      await driver.shutdown();
    });
    await driver.connect();
    const paths: Paths = { nc, js, topology, store, driver };

    say(`warming up both paths (${N} messages each, untimed)…`);
    await viaDriver(paths, messagesOf(`${run}_w`), 1);
    await viaPersister(paths, messagesOf(`${run}_w`), `${run}_w`);

    const a: number[] = [];
    const b: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const tag = `${run}_r${r}`;
      const messages = messagesOf(tag);
      const persisterFirst = r % 2 === 0;
      say(`round ${r + 1}/${ROUNDS}: ${N} messages over ${CONVS} conversations, ${persisterFirst ? "persister first" : "driver first"}…`);
      let p: { rate: number; rowsPerWrite: number } | undefined;
      if (persisterFirst) p = await viaPersister(paths, messages, tag);
      b.push(await viaDriver(paths, messages, 1));
      p ??= await viaPersister(paths, messages, tag);
      a.push(p.rate);
      say(`  persister ${Math.round(p.rate)} rows/s (${p.rowsPerWrite.toFixed(1)} rows per store write), driver ${Math.round(b[r]!)} rows/s (one row per INSERT)`);
    }
    const pa = median(a);
    const pb = median(b);
    process.stdout.write(`persist: messages=${N} persister_rows_per_s=${Math.round(pa)} driver_rows_per_s=${Math.round(pb)} ratio=${(pa / pb).toFixed(2)}\n`);
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  }
}

main().catch((err: unknown) => {
  say(`bench:persist failed: ${(err as Error).message}`);
  process.exit(1);
});
