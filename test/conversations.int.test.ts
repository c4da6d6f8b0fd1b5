// Conversations across several edges on one NATS: groups of at most 100 under concurrent adds,
// membership as events, authorization of every frame, exactly-once in-order delivery to every
// device through reconnects, idempotent retries through another edge, and cursor resets.
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { loadConfig } from "../config/index.ts";
import { conversationSubject, encodeJson, topologyOf } from "../nats/index.ts";
import { connect } from "@nats-io/transport-node";
import { describe, expect, it, onTestFinished } from "vitest";
import { useNats } from "./harness/nats.ts";
import { testConfig, useNode } from "./support/node.ts";
import { TestClient, type Frame } from "./support/ws-client.ts";

const nats = useNats();
// Three edges; only the first runs the workers (fan-out, persister). One owner adds 130 members
// at once from three devices: a budget and in-flight bound for that (limits have tests of their own).
const edge = { sendsPerSecond: 10_000, maxInFlightPerSocket: 64 };
const edges = [
  useNode(() => testConfig(nats.url, { edge })),
  useNode(() => testConfig(nats.url, { edge, workers: { enabled: false } })),
  useNode(() => testConfig(nats.url, { edge, workers: { enabled: false } })),
];

async function client(edge: number, user: string, device: string, cursor?: number): Promise<TestClient> {
  const e = edges[edge]!;
  const c = await TestClient.connect(e.url, { token: await e.token(user), device, ...(cursor !== undefined ? { cursor } : {}) });
  onTestFinished(() => c.close());
  return c;
}

/** Sends `frame`, and sends it again (a bounded number of times) while the reply is a temporary error. */
async function requestRetryingTemporary(c: TestClient, frame: Frame, timeoutMs: number, attempts = 5): Promise<Frame> {
  for (let attempt = 1; ; attempt++) {
    const reply = await c.request(frame, timeoutMs);
    if (reply.type !== "error" || reply.temporary !== true || attempt >= attempts) return reply;
    await new Promise((r) => setTimeout(r, Math.random() * 100 * attempt));
  }
}

type Conv = { id: string; members: string[]; owner?: string };
const convOf = (f: Frame) => f.conv as Conv;

describe("groups", () => {
  it("never exceed 100 members under concurrent adds from three edges; the 101st gets GROUP_FULL", async () => {
    const owners = await Promise.all([0, 1, 2].map((e) => client(e, "owner", `d${e}`)));
    const group = convOf(await owners[0]!.request({ type: "group.create", name: "big", members: [] }));
    // An add that keeps losing the compare-and-set gets a temporary CONFLICT: retry it as a client would.
    const results = await Promise.all(
      Array.from({ length: 130 }, (_, i) => requestRetryingTemporary(owners[i % 3]!, { type: "group.add", conv: group.id, user: `u${i}` }, 30_000)),
    );
    const added = results.filter((r) => r.type === "conv");
    const full = results.filter((r) => r.type === "error");
    expect(added).toHaveLength(99);
    expect(full).toHaveLength(31);
    for (const r of full) expect(r).toMatchObject({ code: "GROUP_FULL", temporary: false });
    const now = convOf(await owners[1]!.request({ type: "members", conv: group.id }));
    expect(now.members).toHaveLength(100);
    expect(new Set(now.members).size).toBe(100);
  });

  it("a removed member receives the removal and nothing sent after it", async () => {
    const owner = await client(0, "gowner", "d");
    const dave = await client(1, "dave", "d");
    const eve = await client(2, "eve", "d");
    const g = convOf(await owner.request({ type: "group.create", name: "team", members: ["dave", "eve"] }));
    const before = await owner.request({ type: "send", conv: g.id, cid: "b1", text: "before" });
    await dave.waitFor((f) => f.type === "msg" && f.id === before.id);
    const removed = convOf(await owner.request({ type: "group.remove", conv: g.id, user: "dave" }));
    expect(removed.members).not.toContain("dave");
    await dave.waitFor((f) => f.type === "members" && f.action === "remove" && f.user === "dave");
    const after = await owner.request({ type: "send", conv: g.id, cid: "a1", text: "after" });
    await eve.waitFor((f) => f.type === "msg" && f.id === after.id);
    // The next thing dave hears of is a later conversation, never the group's message.
    const dm = convOf(await owner.request({ type: "dm.open", peer: "dave" }));
    const marker = await owner.request({ type: "send", conv: dm.id, cid: "m1", text: "marker" });
    await dave.waitFor((f) => f.type === "msg" && f.id === marker.id);
    expect(dave.messages().filter((m) => m.conv === g.id).map((m) => m.text)).toEqual(["before"]);
    expect(await dave.request({ type: "send", conv: g.id, cid: "x", text: "let me in" })).toMatchObject({ code: "NOT_MEMBER" });
    // Only the owner removes others; anyone may leave.
    expect(await eve.request({ type: "group.remove", conv: g.id, user: "gowner" })).toMatchObject({ code: "FORBIDDEN" });
    expect(convOf(await eve.request({ type: "group.leave", conv: g.id })).members).toEqual(["gowner"]);
  });

  it("refuses a non-member's send, history and member list with the same typed error as a missing conversation", async () => {
    const owner = await client(0, "private", "d");
    const mallory = await client(1, "mallory", "d");
    const g = convOf(await owner.request({ type: "group.create", name: "secret", members: [] }));
    for (const frame of [
      { type: "send", conv: g.id, cid: "m", text: "hi" },
      { type: "history", conv: g.id },
      { type: "members", conv: g.id },
      { type: "group.add", conv: g.id, user: "mallory" },
    ]) {
      expect(await mallory.request(frame)).toMatchObject({ type: "error", code: "NOT_MEMBER" });
      expect(await mallory.request({ ...frame, conv: "g_doesnotexist" })).toMatchObject({ type: "error", code: "NOT_MEMBER" });
    }
    expect(await owner.request({ type: "group.add", conv: g.id, user: "a.b" })).toMatchObject({ code: "BAD_FRAME" });
  });
});

describe("delivery", () => {
  it("20 senders, 2 devices each, one device reconnecting mid-burst: every device sees the same gap-free, duplicate-free sequence", async () => {
    const users = Array.from({ length: 20 }, (_, i) => `s${i}`);
    const devices: TestClient[] = [];
    for (const [i, u] of users.entries()) {
      devices.push(await client(i % 3, u, "a"));
      devices.push(await client((i + 1) % 3, u, "b"));
    }
    const g = convOf(await devices[0]!.request({ type: "group.create", name: "burst", members: users.slice(1) }));
    const perSender = 15;
    const dropped = devices[3]!; // s1's second device
    let resumeCursor = 0;
    const sends = users.map(async (u, i) => {
      const dev = devices[i * 2]!;
      const ids: number[] = [];
      for (let k = 0; k < perSender; k++) {
        const ack = await dev.request({ type: "send", conv: g.id, cid: `${u}-${k}`, text: `${u} #${k}` });
        expect(ack.type).toBe("ack");
        ids.push(Number(ack.id));
        if (i === 5 && k === 4) {
          const seen = dropped.frames.filter((f) => typeof f.cursor === "number" && f.type !== "welcome");
          resumeCursor = Number(seen[seen.length - 1]?.cursor ?? (dropped.frames[0]!.cursor as number));
          await dropped.close();
        }
      }
      return ids;
    });
    const acked = (await Promise.all(sends)).flat().sort((a, b) => a - b);
    expect(acked).toHaveLength(users.length * perSender);
    const back = await client(2, "s1", "b", resumeCursor);
    const live = devices.filter((d) => d !== dropped);
    const last = acked[acked.length - 1]!;
    await Promise.all([...live, back].map((d) => d.waitFor((f) => f.type === "msg" && f.id === last, 30_000)));
    const expected = acked;
    for (const d of live) {
      const ids = d.messages().filter((m) => m.conv === g.id).map((m) => Number(m.id));
      expect(ids).toEqual(expected);
      const cursors = d.frames.filter((f) => f.type === "msg" || f.type === "members").map((f) => Number(f.cursor));
      expect(cursors).toEqual([...cursors].sort((a, b) => a - b));
      expect(new Set(cursors).size).toBe(cursors.length);
    }
    // The reconnected device: what it saw before plus what it caught up on is the same sequence.
    const before = dropped.messages().filter((m) => m.conv === g.id && Number(m.cursor) <= resumeCursor).map((m) => Number(m.id));
    const after = back.messages().filter((m) => m.conv === g.id).map((m) => Number(m.id));
    expect([...before, ...after]).toEqual(expected);
  });

  it("a send retried 5 times, also through another edge after a reconnect, is one message with one id", async () => {
    const a1 = await client(0, "retrier", "phone");
    const peer = await client(2, "receiver", "d");
    const dm = convOf(await a1.request({ type: "dm.open", peer: "receiver" }));
    const frame = { type: "send", conv: dm.id, cid: "same-cid", text: "only once" };
    const acks = [await a1.request(frame), await a1.request(frame)];
    await a1.close();
    const a2 = await client(1, "retrier", "phone");
    for (let i = 0; i < 3; i++) acks.push(await a2.request(frame));
    expect(new Set(acks.map((a) => a.id)).size).toBe(1);
    expect(acks.map((a) => a.dup)).toEqual([false, true, true, true, true]);
    const marker = await a2.request({ type: "send", conv: dm.id, cid: "marker", text: "m" });
    await peer.waitFor((f) => f.type === "msg" && f.id === marker.id);
    expect(peer.messages().filter((m) => m.cid === "same-cid")).toHaveLength(1);
    // The store holds it once too (read through the edge beside the persister: each test node
    // has its own embedded store).
    const reader = await client(0, "receiver", "history");
    await expect
      .poll(async () => ((await reader.request({ type: "history", conv: dm.id })).messages as Frame[]).filter((m) => m.kind === "msg").map((m) => m.cid), { timeout: 10_000 })
      .toEqual(["marker", "same-cid"]);
  });
});

describe("history", () => {
  it("merges events the store does not have yet from JetStream, with no gap and no duplicate at the seam", async () => {
    // Edge 1 runs no persister: its own embedded store never receives these events, so every
    // page it serves comes from the stream; edge 0's store has them. Both must agree.
    const a = await client(0, "seam_a", "d");
    const b = await client(1, "seam_b", "d");
    const dm = convOf(await a.request({ type: "dm.open", peer: "seam_b" }));
    const ids: number[] = [];
    for (let i = 0; i < 12; i++) ids.push(Number((await a.request({ type: "send", conv: dm.id, cid: `s${i}`, text: `s${i}` })).id));
    const pages = async (c: TestClient) => {
      const seen: number[] = [];
      let before: number | undefined;
      for (let p = 0; p < 10; p++) {
        const h = await c.request({ type: "history", conv: dm.id, limit: 5, ...(before ? { before } : {}) });
        const msgs = h.messages as { id: number; kind: string }[];
        if (msgs.length === 0) break;
        seen.push(...msgs.filter((m) => m.kind === "msg").map((m) => m.id));
        before = msgs.at(-1)!.id;
      }
      return seen;
    };
    expect(await pages(b)).toEqual([...ids].reverse());
    await expect.poll(() => pages(a), { timeout: 10_000 }).toEqual([...ids].reverse());
  });
});

describe("history far ahead of the store", () => {
  it("returns the newest page when the store trails the stream by more than a read chunk", async () => {
    const a = await client(1, "lag_a", "d");
    const dm = convOf(await a.request({ type: "dm.open", peer: "lag_b" }));
    // 1,200 messages straight into the stream: edge 1 has no persister, its store stays empty.
    const nc = await connect({ servers: nats.url });
    onTestFinished(() => nc.close());
    const js = jetstream(nc);
    const t = topologyOf(loadConfig({ env: {} }).streams);
    const seqs: number[] = [];
    for (let i = 0; i < 1200; i += 200) {
      const acks = await Promise.all(
        Array.from({ length: 200 }, (_, k) =>
          js.publish(conversationSubject(t, dm.id), encodeJson({ v: 1, type: "msg", conv: dm.id, from: "lag_a", device: "d", cid: `l${i + k}`, text: `l${i + k}`, ts: Date.now() })),
        ),
      );
      seqs.push(...acks.map((x) => x.seq));
    }
    const h = await a.request({ type: "history", conv: dm.id, limit: 5 });
    expect((h.messages as { id: number }[]).map((m) => m.id)).toEqual(seqs.slice(-5).reverse());
  });
});

describe("cursors", () => {
  it("a cursor older than the inbox gets a reset; a future cursor BAD_CURSOR; a malformed one BAD_FRAME", async () => {
    const sender = await client(0, "old-sender", "d");
    const reader = await client(1, "old-reader", "d");
    const dm = convOf(await sender.request({ type: "dm.open", peer: "old-reader" }));
    const acks: Frame[] = [];
    for (let i = 0; i < 3; i++) acks.push(await sender.request({ type: "send", conv: dm.id, cid: `o${i}`, text: `o${i}` }));
    const first = await reader.waitFor((f) => f.type === "msg" && f.id === acks[0]!.id);
    await reader.waitFor((f) => f.type === "msg" && f.id === acks[2]!.id);
    await reader.close();
    // Expire the oldest inbox items as retention would.
    const nc = await connect({ servers: nats.url });
    onTestFinished(() => nc.close());
    const jsm = await jetstreamManager(nc);
    await jsm.streams.purge("INBOX_0", { keep: 1 });
    const stale = await client(2, "old-reader", "d", Number(first.cursor) - 1);
    const reset = await stale.waitFor((f) => f.type === "reset");
    expect(reset.cursor).toBeGreaterThan(Number(first.cursor));
    expect(stale.messages()).toHaveLength(0);

    const e = edges[0]!;
    const future = await TestClient.connect(e.url, { token: await e.token("old-reader"), device: "d", cursor: 10_000_000, expectClose: true });
    expect(await future.waitFor((f) => f.type === "error")).toMatchObject({ code: "BAD_CURSOR" });
    expect((await future.closed).code).toBe(4400);
    const bad = await TestClient.open(e.url);
    bad.sendRaw(JSON.stringify({ type: "hello", v: 1, token: await e.token("old-reader"), device: "d", cursor: "yesterday" }));
    expect(await bad.waitFor((f) => f.type === "error")).toMatchObject({ code: "BAD_FRAME" });
    expect((await bad.closed).code).toBe(4400);
  });
});
