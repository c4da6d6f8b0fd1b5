// npm run bench:persist [-- --messages 20000 --conversations 200]
// Writes the same N messages (a) through natter's persister (JetStream consumer → store → ack)
// and (b) straight through the driver's executeConcurrent, on the same Cassandra node, and
// compares. Uses a running test Cassandra (`npx tsx scripts/test-servers.ts up`) or starts one.
// Last line: persist: messages=… persister_rows_per_s=… driver_rows_per_s=… ratio=…
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import cassandra from "cassandra-driver";
import { loadConfig, type CassandraStoreConfig } from "../config/index.ts";
import { silentLogger } from "../core/logger.ts";
import { bucketOf, CassandraMessageStore, migrateCassandra, Persister } from "../persistence/index.ts";
import { conversationSubject, encodeJson, ensureTopology, topologyOf, type ConversationMessage } from "../streams/index.ts";
import { findReusableCassandra, launchCassandra } from "../test/harness/cassandra.ts";
import { startNats } from "../test/harness/nats.ts";

const { values } = parseArgs({
  options: {
    messages: { type: "string", default: "20000" },
    conversations: { type: "string", default: "200" },
    concurrency: { type: "string", default: "256" },
    "timeout-s": { type: "string", default: "600" },
    batch: { type: "string" },
    "ack-pending": { type: "string" },
    ahead: { type: "string" },
  },
});
const N = Number(values.messages);
const CONVS = Number(values.conversations);
const CONCURRENCY = Number(values.concurrency);
const TIMEOUT_MS = Number(values["timeout-s"]) * 1000;
const say = (line: string) => process.stderr.write(`${line}\n`);

function storeConfig(contactPoint: string, keyspace: string): CassandraStoreConfig {
  const cfg = loadConfig({
    env: {},
    overrides: { store: { kind: "cassandra", contactPoints: [contactPoint], keyspace, consistency: "ONE" }, workers: { persistConcurrency: CONCURRENCY } },
  });
  if (cfg.store.kind !== "cassandra") throw new Error("unreachable");
  return cfg.store;
}

async function dropKeyspace(contactPoint: string, keyspace: string): Promise<void> {
  const c = new cassandra.Client({ contactPoints: [contactPoint], localDataCenter: "datacenter1" });
  try {
    await c.execute(`DROP KEYSPACE IF EXISTS ${keyspace}`);
  } finally {
    await c.shutdown();
  }
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
    const streams = loadConfig({ env: {}, overrides: values["ack-pending"] ? { streams: { maxAckPending: Number(values["ack-pending"]) } } : {} }).streams;
    await ensureTopology(jsm, streams);
    const topology = topologyOf(streams);
    const run = `bench_${Date.now().toString(36)}`;
    const now = Date.now();
    const messages: ConversationMessage[] = Array.from({ length: N }, (_, i) => ({
      v: 1,
      type: "msg",
      conv: `${run}_c${i % CONVS}`,
      from: `u${i % 50}`,
      device: "d",
      cid: `c${i}`,
      text: `benchmark message number ${i} with a little text in it`,
      ts: now + i,
    }));

    // Warm-up, so neither run pays for a cold JVM or unprepared statements.
    {
      const cfgW = storeConfig(contactPoint, `${run}_w`);
      await migrateCassandra(cfgW, silentLogger());
      const warm = await CassandraMessageStore.open(cfgW, { concurrency: CONCURRENCY });
      say("warming up Cassandra…");
      for (let i = 0; i < Math.min(N, 10_000); i += 1000) {
        await warm.putMessages(messages.slice(i, i + 1000).map((m, k) => ({ conv: m.conv, id: i + k + 1, kind: "msg", from: m.from, device: m.device, cid: m.cid, text: m.text, ts: m.ts })));
      }
      await warm.close();
      cleanups.push(() => dropKeyspace(contactPoint, cfgW.keyspace));
    }

    // (a) The persister: the messages wait in JetStream, then the persister drains them.
    say(`publishing ${N} messages over ${CONVS} conversations to JetStream…`);
    for (let i = 0; i < N; i += 500) {
      await Promise.all(messages.slice(i, i + 500).map((m, k) => js.publish(conversationSubject(topology, m.conv), encodeJson(m), { msgID: `${run}-${i + k}` })));
    }
    const cfgA = storeConfig(contactPoint, `${run}_a`);
    await migrateCassandra(cfgA, silentLogger());
    const storeA = await CassandraMessageStore.open(cfgA, { concurrency: CONCURRENCY });
    cleanups.push(async () => {
      await storeA.close();
    });
    const persister = new Persister({
      js,
      store: storeA,
      topology,
      log: silentLogger(),
      batchSize: Number(values.batch ?? 64),
      maxBatches: Math.max(1, Math.floor(CONCURRENCY / Number(values.batch ?? 64))),
      ...(values.ahead ? { pullAhead: Number(values.ahead) } : {}),
    });
    const tA = performance.now();
    await persister.start();
    const deadline = Date.now() + TIMEOUT_MS;
    let lastSay = 0;
    while (persister.stats.persisted < N && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 5));
      if (performance.now() - lastSay > 2000) {
        lastSay = performance.now();
        say(`  persister: ${persister.stats.persisted}/${N}`);
      }
    }
    const secondsA = (performance.now() - tA) / 1000;
    await persister.stop();
    if (persister.stats.persisted < N) throw new Error(`persister wrote ${persister.stats.persisted} of ${N} within the timeout`);

    // (b) The driver alone: the same rows, the same table, executeConcurrent.
    const cfgB = storeConfig(contactPoint, `${run}_b`);
    await migrateCassandra(cfgB, silentLogger());
    const client = new cassandra.Client({ contactPoints: [contactPoint], localDataCenter: "datacenter1", keyspace: cfgB.keyspace });
    cleanups.push(() => client.shutdown());
    await client.connect();
    const insert =
      "INSERT INTO messages (conv_id, bucket, msg_id, kind, sender, device, client_id, body, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";
    const params = messages.map((m, i) => [m.conv, bucketOf(m.ts), cassandra.types.Long.fromNumber(i + 1), "msg", m.from, m.device, m.cid, m.text, new Date(m.ts)]);
    say("driver: executeConcurrent of the same rows…");
    const tB = performance.now();
    await cassandra.concurrent.executeConcurrent(client, insert, params, { concurrencyLevel: CONCURRENCY, raiseOnFirstError: true });
    const secondsB = (performance.now() - tB) / 1000;

    for (const ks of [cfgA.keyspace, cfgB.keyspace]) await client.execute(`DROP KEYSPACE IF EXISTS ${ks}`);
    const a = N / secondsA;
    const b = N / secondsB;
    say(`persister: ${secondsA.toFixed(2)} s (${persister.stats.failedBatches} failed batches); driver: ${secondsB.toFixed(2)} s`);
    process.stdout.write(`persist: messages=${N} persister_rows_per_s=${Math.round(a)} driver_rows_per_s=${Math.round(b)} ratio=${(a / b).toFixed(2)}\n`);
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  }
}

main().catch((err: unknown) => {
  say(`bench:persist failed: ${(err as Error).message}`);
  process.exit(1);
});
