// The consumer-worker base on a real nats-server: per-key order with batches, in-place retries
// that hold a key (nothing behind a failed batch overtakes it) while other keys flow, nak-based
// retries for unkeyed workers, dead letters for what can never be read, acks only after success,
// and a stop that hands what it held back to the next worker.
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { connect, nanos, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pino } from "pino";
import { type Logger, silentLogger } from "../core/logger.ts";
import { useNats } from "../test/harness/nats.ts";
import { deadLetterStreamConfig, upsertStream } from "./topology.ts";
import { ConsumerWorker, type Decoded, type Delivery, type WorkerSpec } from "./worker.ts";

const nats = useNats();
let nc: NatsConnection;
let js: JetStreamClient;
let jsm: JetStreamManager;

beforeAll(async () => {
  nc = await connect({ servers: nats.url });
  js = jetstream(nc);
  jsm = await jetstreamManager(nc);
  await upsertStream(jsm, deadLetterStreamConfig({ replicas: 1, duplicateWindowSec: 60 } as never));
});
afterAll(async () => {
  await nc?.drain();
});

let streamNo = 0;
/** A fresh stream `W<n>` with subjects `w<n>.<key>` and a durable consumer `c`. */
async function source(): Promise<{ stream: string; subject: (key: string) => string }> {
  const n = ++streamNo;
  const stream = `W${n}`;
  await jsm.streams.add({ name: stream, subjects: [`w${n}.*`] });
  await jsm.consumers.add(stream, { durable_name: "c", ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All, ack_wait: nanos(30_000), max_deliver: -1 });
  return { stream, subject: (key) => `w${n}.${key}` };
}

type Item = { key: string; n: number };
const decode = (m: { data: Uint8Array }): Decoded<Item> => {
  try {
    return { value: JSON.parse(new TextDecoder().decode(m.data)) as Item };
  } catch {
    return { unreadable: "not JSON" };
  }
};

function worker(spec: Partial<WorkerSpec<Item>> & Pick<WorkerSpec<Item>, "sources" | "handle">, log: Logger = silentLogger()): ConsumerWorker<Item> {
  return new ConsumerWorker<Item>({ name: "fanout", decode, backoff: { baseMs: 20, maxMs: 100 }, ...spec }, { nc, log });
}

async function ackFloor(stream: string): Promise<number> {
  return (await jsm.consumers.info(stream, "c")).ack_floor.stream_seq;
}

describe("ConsumerWorker", () => {
  it("handles a key's messages in order, in batches; a failing batch holds only its key and is retried in place", async () => {
    const src = await source();
    const seen: string[] = [];
    let failuresLeft = 2;
    const w = worker({
      sources: [{ stream: src.stream, consumer: "c" }],
      key: (i) => i.key,
      handle: async (batch: readonly Delivery<Item>[]) => {
        if (batch[0]!.value.key === "a" && failuresLeft > 0) {
          failuresLeft--;
          throw new Error("store down");
        }
        for (const d of batch) seen.push(`${d.value.key}${d.value.n}`);
      },
    });
    for (let n = 0; n < 20; n++) for (const key of ["a", "b"]) await js.publish(src.subject(key), JSON.stringify({ key, n }));
    await w.start();
    try {
      await expect.poll(() => seen.length, { timeout: 10_000 }).toBe(40);
      for (const key of ["a", "b"]) expect(seen.filter((s) => s.startsWith(key))).toEqual(Array.from({ length: 20 }, (_, n) => `${key}${n}`));
      expect(failuresLeft).toBe(0);
      expect(w.stats.retries).toBeGreaterThan(0);
      await expect.poll(() => ackFloor(src.stream)).toBe(40);
      // Batches: far fewer handler calls than messages for what waited.
      expect(w.stats.batches).toBeLessThan(40 + 2);
    } finally {
      await w.stop();
    }
  });

  it("logs batches that keep failing for a while (NATS slow for many keys) in one warn line per interval, with the count and a cause", async () => {
    const src = await source();
    const lines: { level: number; msg: string; counts?: Record<string, number>; err?: { message: string } }[] = [];
    const log = pino({ level: "info" }, { write: (line: string) => lines.push(JSON.parse(line)) });
    let failuresLeft = 30;
    const done = new Set<string>();
    const w = worker(
      {
        sources: [{ stream: src.stream, consumer: "c" }],
        key: (i) => i.key,
        handle: async (batch: readonly Delivery<Item>[]) => {
          if (failuresLeft > 0) {
            failuresLeft--;
            throw new Error("no answer from JetStream in time");
          }
          for (const d of batch) done.add(d.value.key);
        },
      },
      log,
    );
    for (let k = 0; k < 10; k++) await js.publish(src.subject(`k${k}`), JSON.stringify({ key: `k${k}`, n: 0 }));
    await w.start();
    await expect.poll(() => done.size, { timeout: 10_000 }).toBe(10);
    expect(lines).toEqual([]); // 30 failures, counted
    await w.stop();
    expect(lines).toMatchObject([{ level: 40, counts: { Error: 30 }, err: { message: "no answer from JetStream in time" } }]);
  });

  it("acks nothing before its handler succeeded; an unkeyed failure goes back to JetStream (nak) and comes again", async () => {
    const src = await source();
    let calls = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const w = worker({
      sources: [{ stream: src.stream, consumer: "c" }],
      handle: async () => {
        calls++;
        if (calls === 1) throw new Error("first try fails");
        await gate;
      },
    });
    await js.publish(src.subject("x"), JSON.stringify({ key: "x", n: 1 }));
    await w.start();
    try {
      await expect.poll(() => calls, { timeout: 10_000 }).toBe(2); // redelivered after the nak
      const info = await jsm.consumers.info(src.stream, "c");
      expect(info.num_redelivered).toBeGreaterThan(0);
      expect(info.ack_floor.stream_seq).toBe(0); // held by the handler: not acked
      release();
      await expect.poll(() => ackFloor(src.stream)).toBe(1);
    } finally {
      await w.stop();
    }
  });

  it("dead-letters what can never be read, with the reason, and goes on", async () => {
    const src = await source();
    const seen: number[] = [];
    const w = worker({ sources: [{ stream: src.stream, consumer: "c" }], handle: async ([d]) => void seen.push(d!.value.n) });
    await js.publish(src.subject("x"), "not json {");
    await js.publish(src.subject("x"), JSON.stringify({ key: "x", n: 7 }));
    await w.start();
    try {
      await expect.poll(() => seen).toEqual([7]);
      await expect.poll(() => w.stats.deadLettered).toBe(1);
      const dead = await jsm.direct.getMessage("DEAD", { last_by_subj: `dead.fanout.${src.stream}` });
      expect(dead?.header.get("Natter-Dead-Reason")).toContain("not JSON");
      expect(dead?.string()).toBe("not json {");
    } finally {
      await w.stop();
    }
  });

  it("on stop hands back what it held (not handled) to the next worker, which handles it once", async () => {
    const src = await source();
    const first: number[] = [];
    const second: number[] = [];
    let block = true;
    const w1 = worker({
      sources: [{ stream: src.stream, consumer: "c" }],
      key: (i) => i.key,
      maxBatch: 1,
      handle: async ([d]) => {
        first.push(d!.value.n);
        if (block) throw new Error("held"); // keeps the key, and everything behind it, waiting
      },
    });
    for (let n = 0; n < 5; n++) await js.publish(src.subject("k"), JSON.stringify({ key: "k", n }));
    await w1.start();
    await expect.poll(() => first.length).toBeGreaterThan(0);
    await w1.stop();
    block = false;
    expect(await ackFloor(src.stream)).toBe(0);
    const w2 = worker({ sources: [{ stream: src.stream, consumer: "c" }], key: (i) => i.key, resetOnStart: true, handle: async (batch) => void second.push(...batch.map((d) => d.value.n)) });
    await w2.start();
    try {
      await expect.poll(() => second, { timeout: 10_000 }).toEqual([0, 1, 2, 3, 4]);
      await expect.poll(() => ackFloor(src.stream)).toBe(5);
    } finally {
      await w2.stop();
    }
  });
});
