// Batched direct gets on a real nats-server: the messages asked for, in order; no match is an empty
// batch; and nothing stays subscribed afterwards, however the batch ended (nats.js's own iterator
// form leaves one subscription per call on the connection and on the server, forever).
import { jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { useNats } from "../test/harness/nats.ts";
import { directBatch } from "./direct.ts";

const nats = useNats();
let nc: NatsConnection;
let jsm: JetStreamManager;
const NAME = "direct-batch-test";

beforeAll(async () => {
  nc = await connect({ servers: nats.url, name: NAME });
  jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: "DB", subjects: ["db.>"], allow_direct: true });
  const js = jetstream(nc);
  for (let i = 0; i < 12; i++) await js.publish(`db.${i % 3}`, String(i));
});
afterAll(async () => {
  await nc?.drain();
});

/** The subscriptions the server holds for this test's connection (its monitoring endpoint). */
async function serverSubscriptions(): Promise<number> {
  await nc.flush();
  const r = (await (await fetch(`${nats.monitorUrl}/connz?subs=1`)).json()) as { connections: { name?: string; subscriptions: number }[] };
  const mine = r.connections.find((c) => c.name === NAME);
  if (!mine) throw new Error("the test's connection is not in /connz");
  return mine.subscriptions;
}

async function read(opts: Parameters<typeof directBatch>[2]): Promise<string[]> {
  const out: string[] = [];
  for await (const sm of await directBatch(jsm, "DB", opts)) out.push(`${sm.subject}=${sm.string()}`);
  return out;
}

describe("directBatch", () => {
  it("reads a subject's messages from a sequence, at most `batch` of them, in order", async () => {
    expect(await read({ seq: 1, next_by_subj: "db.1", batch: 100 })).toEqual(["db.1=1", "db.1=4", "db.1=7", "db.1=10"]);
    // Message i is at sequence i + 1: db.1 holds 1, 4, 7, 10 at 2, 5, 8, 11.
    expect(await read({ seq: 6, next_by_subj: "db.1", batch: 2 })).toEqual(["db.1=7", "db.1=10"]);
    expect(await read({ seq: 5, next_by_subj: "db.1", batch: 2 })).toEqual(["db.1=4", "db.1=7"]);
  });

  it("reads the last message of each subject (multi_last), up to a sequence", async () => {
    expect((await read({ multi_last: ["db.0", "db.2"] })).sort()).toEqual(["db.0=9", "db.2=11"]);
    expect((await read({ multi_last: ["db.0", "db.2"], up_to_seq: 6 })).sort()).toEqual(["db.0=3", "db.2=5"]);
  });

  it("ends without error when nothing matches", async () => {
    expect(await read({ seq: 1, next_by_subj: "db.none", batch: 10 })).toEqual([]);
    expect(await read({ seq: 13, next_by_subj: "db.1", batch: 10 })).toEqual([]);
  });

  it("leaves no subscription behind: full batches, empty ones, multi_last, and a reader that stops early", async () => {
    const before = await serverSubscriptions();
    for (let i = 0; i < 50; i++) {
      await read({ seq: 1, next_by_subj: "db.1", batch: 100 });
      await read({ seq: 1, next_by_subj: "db.none", batch: 10 });
      await read({ multi_last: ["db.0", "db.1"] });
      for await (const _ of await directBatch(jsm, "DB", { seq: 1, next_by_subj: "db.>", batch: 12 })) break;
    }
    // A read that ran to its end has unsubscribed by then; one that stopped early is unsubscribed
    // when the rest of its batch has arrived, which the server sends in its own time.
    await expect.poll(() => serverSubscriptions(), { timeout: 10_000 }).toBe(before);
  });
});
