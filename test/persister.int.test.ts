// The persister against real NATS and real Cassandra: never loses or doubles a message.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { loadConfig, REPO_ROOT, type CassandraStoreConfig } from "../config/index.ts";
import { silentLogger } from "../core/logger.ts";
import { CassandraMessageStore, migrateCassandra, Persister, type StoredMessage } from "../persistence/index.ts";
import { conversationSubject, DEAD_HEADERS, encodeJson, ensureTopology, names, topologyOf } from "../nats/index.ts";
import type { ConversationMessage } from "../streams/index.ts";
import { launchCassandra, useKeyspace } from "./harness/cassandra.ts";
import { testNatsCredentialsEnv, useNats } from "./harness/nats.ts";
import { freePorts, recordProcess } from "./harness/processes.ts";
import { TEST_SECRET, testConfig, useNode } from "./support/node.ts";
import { TestClient } from "./support/ws-client.ts";

const nats = useNats();
const ks = useKeyspace();

function storeConfig(contactPoint = ks.contactPoint, keyspace = ks.keyspace): CassandraStoreConfig {
  const cfg = loadConfig({ env: {}, overrides: { store: { kind: "cassandra", contactPoints: [contactPoint], localDataCenter: "datacenter1", keyspace, consistency: "ONE" } } });
  if (cfg.store.kind !== "cassandra") throw new Error("expected cassandra");
  return cfg.store;
}

const streams = loadConfig({ env: {}, overrides: { streams: { ackWaitSec: 3 } } }).streams;
const topology = topologyOf(streams);
let nc: NatsConnection;
let js: JetStreamClient;
let jsm: JetStreamManager;

beforeAll(async () => {
  nc = await connect({ servers: nats.url });
  js = jetstream(nc);
  jsm = await jetstreamManager(nc);
  await ensureTopology(jsm, streams);
  await migrateCassandra(storeConfig(), silentLogger());
});
afterAll(async () => {
  await nc?.drain();
});

/** Publishes `n` messages spread over `convs` conversations; returns their stream sequences. */
async function publish(tag: string, n: number, convs = 10): Promise<{ seqs: number[]; convIds: string[] }> {
  const convIds = Array.from({ length: convs }, (_, i) => `${tag}_${i}`);
  const acks = [];
  for (let i = 0; i < n; i++) {
    const conv = convIds[i % convs]!;
    const m: ConversationMessage = { v: 1, type: "msg", conv, from: "u", device: "d", cid: `${tag}-${i}`, text: `m${i}`, ts: Date.now() };
    acks.push(js.publish(conversationSubject(topology, conv), encodeJson(m), { msgID: `${tag}-${i}` }));
    if (acks.length % 256 === 0) await Promise.all(acks.slice(-256));
  }
  return { seqs: (await Promise.all(acks)).map((a) => a.seq), convIds };
}

async function storedIds(store: CassandraMessageStore, convIds: string[]): Promise<number[]> {
  const ids: number[] = [];
  for (const conv of convIds) {
    let before: number | undefined;
    for (;;) {
      const page = await store.history(conv, { before, limit: 100 });
      if (page.length === 0) break;
      ids.push(...page.map((m) => m.id));
      before = page[page.length - 1]!.id;
    }
  }
  return ids.sort((a, b) => a - b);
}

async function waitDrained(timeoutMs: number): Promise<void> {
  await expect
    .poll(
      async () => {
        const info = await jsm.consumers.info(names.conversationStream(0), names.persisterConsumer);
        return info.num_pending + info.num_ack_pending;
      },
      { timeout: timeoutMs, interval: 250 },
    )
    .toBe(0);
}

describe("persister", () => {
  it("two persisters on one durable consumer split the work and write every message once", async () => {
    const stores = await Promise.all([0, 1].map(() => CassandraMessageStore.open(storeConfig())));
    const conns = await Promise.all([0, 1].map(() => connect({ servers: nats.url })));
    const workers = stores.map((store, i) => new Persister({ nc: conns[i]!, store, topology, log: silentLogger(), pullAhead: 32, maxRowsPerWrite: 32 }));
    onTestFinished(async () => {
      for (const w of workers) await w.stop();
      for (const c of conns) await c.drain();
      for (const s of stores) await s.close();
    });
    await Promise.all(workers.map((w) => w.start()));
    const { seqs, convIds } = await publish("two", 3000);
    await waitDrained(60_000);
    const [a, b] = workers.map((w) => w.stats.persisted);
    expect(a! + b!).toBe(seqs.length);
    expect(a).toBeGreaterThan(0);
    expect(b).toBeGreaterThan(0);
    expect(await storedIds(stores[0]!, convIds)).toEqual([...seqs].sort((x, y) => x - y));
  });

  it("writes a backlog a conversation at a time: in order, never two writes of one conversation at once, many rows per write", async () => {
    const { seqs, convIds } = await publish("backlog", 3000, 3);
    const store = await CassandraMessageStore.open(storeConfig());
    onTestFinished(() => store.close());
    const busy = new Set<string>();
    const lastId = new Map<string, number>();
    const problems: string[] = [];
    const sizes: number[] = [];
    const tracked = new Proxy(store, {
      get(target, key) {
        if (key === "putMessages") {
          return async (rows: StoredMessage[]) => {
            const conv = rows[0]!.conv;
            if (rows.some((r) => r.conv !== conv)) problems.push("a write spans conversations");
            if (busy.has(conv)) problems.push(`two writes of ${conv} at once`);
            if (rows.some((r, i) => i > 0 && r.id <= rows[i - 1]!.id) || rows[0]!.id <= (lastId.get(conv) ?? 0)) problems.push(`${conv} out of order`);
            busy.add(conv);
            sizes.push(rows.length);
            try {
              await target.putMessages(rows);
            } finally {
              busy.delete(conv);
              lastId.set(conv, rows.at(-1)!.id);
            }
          };
        }
        const v = Reflect.get(target, key) as unknown;
        return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    const worker = new Persister({ nc, store: tracked, topology, log: silentLogger() });
    onTestFinished(() => worker.stop());
    await worker.start();
    await waitDrained(60_000);
    expect(problems).toEqual([]);
    expect(await storedIds(store, convIds)).toEqual(seqs);
    // 3,000 messages of 3 conversations waited in JetStream: they went in far fewer writes.
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(3000);
    expect(sizes.length).toBeLessThan(300);
  });

  it("moves a poison message to the dead-letter stream with its reason; the next ones are persisted", async () => {
    const store = await CassandraMessageStore.open(storeConfig());
    const worker = new Persister({ nc, store, topology, log: silentLogger() });
    onTestFinished(async () => {
      await worker.stop();
      await store.close();
    });
    await worker.start();
    const poison = await js.publish(conversationSubject(topology, "poison_conv"), new TextEncoder().encode("{this is not an event"));
    const { seqs, convIds } = await publish("after_poison", 50, 1);
    await waitDrained(30_000);
    expect(await storedIds(store, convIds)).toEqual(seqs);
    const dead = await jsm.direct.getMessage(names.deadLetterStream, { last_by_subj: `dead.persister.${names.conversationStream(0)}` });
    expect(dead).not.toBeNull();
    expect(dead!.header.get(DEAD_HEADERS.seq)).toBe(String(poison.seq));
    expect(dead!.header.get(DEAD_HEADERS.reason)).toContain("unreadable");
    expect(new TextDecoder().decode(dead!.data)).toBe("{this is not an event");
    expect(worker.stats.deadLettered).toBe(1);
  });

  it("killed with SIGKILL while writing, then restarted: each message is exactly one row", async () => {
    const { seqs, convIds } = await publish("crash", 8000);
    const dataDir = mkdtempSync(path.join(os.tmpdir(), "natter-persist-crash-"));
    onTestFinished(() => rmSync(dataDir, { recursive: true, force: true }));
    const [port] = await freePorts(1);
    const start = (): ChildProcess => {
      const p = spawn(process.execPath, ["--import", "tsx", "bin/natter.ts", "start"], {
        cwd: REPO_ROOT,
        env: {
          PATH: process.env.PATH,
          HOME: process.env.HOME,
          NATTER_DATA_DIR: dataDir,
          NATTER_NATS__SERVERS: nats.url,
          ...testNatsCredentialsEnv(),
          NATTER_EDGE__ENABLED: "false",
          NATTER_WORKERS__HTTP_PORT: String(port),
          NATTER_AUTH__JWT_SECRET: TEST_SECRET,
          NATTER_STREAMS__ACK_WAIT_SEC: "3",
          // A narrow pipeline, so the backlog lasts long enough to be killed in its middle.
          NATTER_STREAMS__PERSISTER_MAX_ACK_PENDING: "128",
          NATTER_WORKERS__PERSIST_CONCURRENCY: "2",
          NATTER_STORE__KIND: "cassandra",
          NATTER_STORE__CONTACT_POINTS: ks.contactPoint,
          NATTER_STORE__KEYSPACE: ks.keyspace,
          NATTER_STORE__CONSISTENCY: "ONE",
          NATTER_LOG__LEVEL: "warn",
          NATTER_LOG__PRETTY: "false",
        },
        stdio: "ignore",
      });
      recordProcess(p.pid!, "natter", "natter persister (test child)");
      onTestFinished(() => {
        if (p.exitCode === null) p.kill("SIGKILL");
      });
      return p;
    };
    const store = await CassandraMessageStore.open(storeConfig());
    onTestFinished(() => store.close());
    const first = start();
    // Kill it in the middle of the backlog: some writes done and acked, some in flight or done and
    // not yet acked. The consumer's ack floor is the cheap reading (no Cassandra paging).
    const sorted = [...seqs].sort((a, b) => a - b);
    const ackFloor = async () => (await jsm.consumers.info(names.conversationStream(0), names.persisterConsumer)).ack_floor.stream_seq;
    await expect.poll(ackFloor, { timeout: 60_000, interval: 20 }).toBeGreaterThan(sorted[1500]!);
    first.kill("SIGKILL");
    await new Promise((r) => first.once("exit", r));
    const rowsAtKill = (await storedIds(store, convIds)).length;
    expect(rowsAtKill).toBeLessThan(seqs.length);
    // The kill left messages unacked (some of them written): the restart takes them up again.
    expect(await ackFloor()).toBeLessThan(sorted.at(-1)!);
    const second = start();
    await waitDrained(90_000);
    second.kill("SIGTERM");
    await new Promise((r) => second.once("exit", r));
    const ids = await storedIds(store, convIds);
    expect(ids.length).toBe(seqs.length);
    expect(ids).toEqual([...seqs].sort((a, b) => a - b));
  });
});

describe("history beyond JetStream's retention", () => {
  const node = useNode(() =>
    testConfig(nats.url, { store: { kind: "cassandra", contactPoints: [ks.contactPoint], localDataCenter: "datacenter1", keyspace: ks.keyspace, consistency: "ONE", migrateOnStart: false } }),
  );

  it("pages a conversation from Cassandra after its messages left the stream", async () => {
    const alice = await TestClient.connect(node.url, { token: await node.token("hist_a"), device: "d" });
    onTestFinished(() => alice.close());
    const { conv } = (await alice.request({ type: "dm.open", peer: "hist_b" })) as unknown as { conv: { id: string } };
    const ids: number[] = [];
    for (let i = 0; i < 25; i++) ids.push(Number((await alice.request({ type: "send", conv: conv.id, cid: `h${i}`, text: `old ${i}` })).id));
    await expect
      .poll(async () => ((await alice.request({ type: "history", conv: conv.id, limit: 100 })).messages as unknown[]).length, { timeout: 20_000 })
      .toBe(26);
    // Retention: the conversation's messages are gone from JetStream.
    await jsm.streams.purge(names.conversationStream(0), { filter: conversationSubject(topology, conv.id) });
    const seen: number[] = [];
    let before: number | undefined;
    for (let page = 0; page < 10; page++) {
      const h = await alice.request({ type: "history", conv: conv.id, limit: 10, ...(before ? { before } : {}) });
      const msgs = (h.messages as { id: number; kind: string }[]).filter((m) => m.kind === "msg");
      if (h.messages && (h.messages as unknown[]).length === 0) break;
      seen.push(...msgs.map((m) => m.id));
      before = (h.messages as { id: number }[]).at(-1)!.id;
    }
    expect(seen).toEqual([...ids].reverse());
  });
});

describe("Cassandra down for 60 s under 500 msgs/s", () => {
  it("loses nothing, writes nothing twice, and drains the lag after Cassandra is back", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "natter-cass-outage-"));
    let cass = await launchCassandra({ dir, onSpawn: (pid) => recordProcess(pid, "cassandra", dir) });
    onTestFinished(() => cass.stop());
    const cfg = storeConfig(cass.endpoint.contactPoint, "outage");
    await migrateCassandra({ ...cfg, replication: { class: "SimpleStrategy", replicationFactor: 1 } }, silentLogger());
    const store = await CassandraMessageStore.open(cfg);
    onTestFinished(() => store.close());
    const conn = await connect({ servers: nats.url });
    onTestFinished(() => conn.drain());
    const worker = new Persister({ nc: conn, store, topology, log: silentLogger() });
    onTestFinished(() => worker.stop());
    await worker.start();

    const convIds = Array.from({ length: 20 }, (_, i) => `outage_${i}`);
    const seqs: number[] = [];
    const pending: Promise<unknown>[] = [];
    let n = 0;
    const rate = 500;
    const totalSeconds = 80;
    const t0 = performance.now();
    const tick = setInterval(() => {
      const due = Math.min(rate * totalSeconds, Math.floor(((performance.now() - t0) / 1000) * rate));
      for (; n < due; n++) {
        const conv = convIds[n % convIds.length]!;
        const m: ConversationMessage = { v: 1, type: "msg", conv, from: "u", device: "d", cid: `o${n}`, text: `o${n}`, ts: Date.now() };
        pending.push(js.publish(conversationSubject(topology, conv), encodeJson(m), { msgID: `outage-${n}` }).then((a) => seqs.push(a.seq)));
      }
    }, 20);
    onTestFinished(() => clearInterval(tick));
    const sleep = (s: number) => new Promise((r) => setTimeout(r, s * 1000));
    await sleep(10);
    await cass.halt();
    const persistedAtStop = worker.stats.persisted;
    await sleep(60);
    // While it was down nothing was acked: every message waits in JetStream.
    expect(worker.stats.persisted).toBe(persistedAtStop);
    cass = await cass.restart();
    await expect.poll(() => n, { timeout: 30_000, interval: 500 }).toBe(rate * totalSeconds);
    clearInterval(tick);
    await Promise.all(pending);
    await waitDrained(120_000);
    const ids = await storedIds(store, convIds);
    expect(ids.length).toBe(rate * totalSeconds);
    expect(ids).toEqual([...seqs].sort((a, b) => a - b));
  }, 300_000);
});
