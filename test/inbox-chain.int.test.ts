// Inbox chains on a real nats-server: every entry lists the user's previous ones, so a catch-up
// reads exactly the entries it needs by sequence; the chain stays exact with two writers at once
// and with repeated appends; entries from before chains are still found (by scanning); the live
// copy a device receives carries the list too (its gap fills walk it).
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../config/index.ts";
import { encodeJson, ensureTopology, inboxStreamOf, inboxSubject, JetStreamRequests, deliverySubject, topologyOf } from "../nats/index.ts";
import { decodePrev, PREV_HEADER, readInbox, type InboxEntry } from "../streams/index.ts";
import { CHAIN_LENGTH, InboxChains } from "../streams/inbox-chain.ts";
import { useNats } from "./harness/nats.ts";

const nats = useNats();
const streams = loadConfig({ env: {} }).streams;
const t = topologyOf(streams);
let nc: NatsConnection;
let js: JetStreamClient;
let jsm: JetStreamManager;
let requests: JetStreamRequests;

beforeAll(async () => {
  nc = await connect({ servers: nats.url });
  js = jetstream(nc);
  jsm = await jetstreamManager(nc);
  await ensureTopology(jsm, streams);
  requests = new JetStreamRequests(nc);
});
afterAll(async () => {
  requests?.close();
  await nc?.drain();
});

let n = 0;
const entry = (user: string): Uint8Array =>
  encodeJson({ v: 1, type: "msg", conv: "c1", from: "x", device: "d", cid: `e${++n}`, text: `for ${user}`, ts: n, id: n } satisfies InboxEntry);

/** Appends one entry to `user`'s inbox through `chains`; resolves to its sequence. */
async function append(chains: InboxChains, user: string, msgID = `m${++n}`): Promise<number> {
  return (await chains.append(inboxStreamOf(t, user), inboxSubject(t, user), entry(user), msgID)).seq;
}

/** Reads a catch-up the way the edge does, counting the scans the server had to do. */
async function catchUp(user: string, after: number, until: number): Promise<{ seqs: number[]; scans: number }> {
  let scans = 0;
  const counting = {
    direct: {
      getBatch: (...a: Parameters<JetStreamManager["direct"]["getBatch"]>) => {
        scans++;
        return jsm.direct.getBatch(...a);
      },
    },
  } as unknown as JetStreamManager;
  const seqs: number[] = [];
  for await (const item of readInbox({ requests, jsm: counting }, t, user, after, until)) seqs.push(item.seq);
  return { seqs, scans };
}

describe("inbox chains", () => {
  it("a catch-up reads exactly the user's entries after its cursor, across many chain links, without scanning", async () => {
    const chains = new InboxChains(requests);
    const mine: number[] = [];
    // Three users' entries interleaved, more than three chain lengths of the target's.
    for (let i = 0; i < CHAIN_LENGTH * 3 + 5; i++) {
      mine.push(await append(chains, "ch_alice"));
      await append(chains, "ch_bob");
      if (i % 3 === 0) await append(chains, "ch_carol");
    }
    const last = mine[mine.length - 1]!;
    for (const from of [0, 1, CHAIN_LENGTH - 1, CHAIN_LENGTH, mine.length - 21, mine.length - 1]) {
      const after = from === 0 ? 0 : mine[from - 1]!;
      const got = await catchUp("ch_alice", after, last);
      expect(got.seqs, `after entry ${from}`).toEqual(mine.slice(from));
      expect(got.scans, `after entry ${from}`).toBe(0);
    }
  });

  it("pipelined appends to one user (many in flight) and a writer taking over keep the chain whole; a repeated append stores nothing", async () => {
    const a = new InboxChains(requests);
    // 60 appends to one user at once, among another user's: most are sent before the first answer.
    await Promise.all(Array.from({ length: 60 }, (_, i) => (i % 3 === 2 ? append(a, "ch_other") : append(a, "ch_dave"))));
    // Another writer (a process taking over) learns the chain from the stream and goes on.
    const b = new InboxChains(requests);
    await Promise.all(Array.from({ length: 20 }, () => append(b, "ch_dave")));
    const repeat = `r${n}`;
    const first = await append(b, "ch_dave", repeat);
    expect(await append(b, "ch_dave", repeat)).toBe(first);
    const last = await append(b, "ch_dave");
    // What the chain leads to equals what a scan of the stream finds.
    const scanned: number[] = [];
    for await (const sm of await jsm.direct.getBatch(inboxStreamOf(t, "ch_dave"), { seq: 1, next_by_subj: inboxSubject(t, "ch_dave"), batch: 500 })) scanned.push(sm.seq);
    expect(scanned).toHaveLength(40 + 20 + 2);
    expect((await catchUp("ch_dave", 0, last)).seqs).toEqual(scanned);
    // From a cursor in the middle of the pipelined ones, too.
    expect((await catchUp("ch_dave", scanned[10]!, last)).seqs).toEqual(scanned.slice(11));
  });

  it("a catch-up after a burst of pipelined appends scans only the newest entry's gap, whose entries no list names", async () => {
    const chains = new InboxChains(requests);
    const cursor = await append(chains, "ch_gina");
    // A group's burst as the fan-out writes it: 20 appends to one user sent before any answer,
    // so each lists the entry before the burst and counts the ones in flight (pending 0…19).
    const burst = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 4 === 3 ? append(chains, "ch_hank") : append(chains, "ch_gina"))));
    const mine = burst.filter((_, i) => i % 4 !== 3);
    const last = mine[mine.length - 1]!;
    const pendings = await Promise.all(mine.map(async (seq) => decodePrev((await requests.directGet(inboxStreamOf(t, "ch_gina"), { seq }))!.header.get(PREV_HEADER))!.pending));
    expect(pendings.filter((p) => p > 0).length).toBeGreaterThan(1);
    const got = await catchUp("ch_gina", cursor, last);
    expect(got.seqs).toEqual(mine);
    expect(got.scans).toBeLessThanOrEqual(1);
    // From the middle of the burst too.
    expect(await catchUp("ch_gina", mine[7]!, last)).toEqual({ seqs: mine.slice(8), scans: expect.any(Number) });
  });

  it("finds entries written before chains by scanning, and only for them", async () => {
    const legacy: number[] = [];
    for (let i = 0; i < 5; i++) legacy.push((await js.publish(inboxSubject(t, "ch_erin"), entry("ch_erin"))).seq);
    const chains = new InboxChains(requests);
    const chained: number[] = [];
    for (let i = 0; i < CHAIN_LENGTH + 3; i++) chained.push(await append(chains, "ch_erin"));
    const last = chained[chained.length - 1]!;
    expect(await catchUp("ch_erin", 0, last)).toMatchObject({ seqs: [...legacy, ...chained] });
    expect((await catchUp("ch_erin", legacy[2]!, last)).seqs).toEqual([...legacy.slice(3), ...chained]);
    // Past the old entries, no scan.
    expect(await catchUp("ch_erin", chained[0]!, last)).toEqual({ seqs: chained.slice(1), scans: 0 });
  });

  it("the live copy of an entry carries its list of the user's previous entries", async () => {
    const chains = new InboxChains(requests);
    const before = [await append(chains, "ch_frank"), await append(chains, "ch_frank")];
    const live = new Promise<string | undefined>((resolve) => {
      const sub = nc.subscribe(deliverySubject(t, "ch_frank"), {
        callback: (_err, msg) => {
          sub.unsubscribe();
          resolve(msg.headers?.get(PREV_HEADER));
        },
      });
    });
    await nc.flush();
    await append(chains, "ch_frank");
    expect(decodePrev(await live)).toEqual({ seqs: [...before].reverse(), pending: 0, open: false });
  });
});
