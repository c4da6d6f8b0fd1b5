// Receipts, unread counts and typing across two edges on one NATS: a read on one device clears the
// user's other devices and reaches the other members; receipts are events replayed on catch-up,
// never move backwards and never pass the conversation's last event; unread counts come from the
// server; typing reaches other members' connected devices live, rate-limited, never stored; non-
// members are refused with typed errors; receipts are not written to the store.
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { describe, expect, it, onTestFinished } from "vitest";
import { useNats } from "./harness/nats.ts";
import { testConfig, useNode } from "./support/node.ts";
import { TestClient, type Frame } from "./support/ws-client.ts";

const nats = useNats();
// Edge 0 runs the workers (fan-out, persister); edge 1 only serves clients. The unread-count test
// sends 123 messages from one device as fast as acks come back, past the default send rate (50/s,
// burst 100): these edges allow more, since no test here is about the send rate.
const edge = { sendsPerSecond: 1000 };
const edges = [useNode(() => testConfig(nats.url, { edge })), useNode(() => testConfig(nats.url, { edge, workers: { enabled: false } }))];

async function client(edge: number, user: string, device: string, cursor?: number): Promise<TestClient> {
  const e = edges[edge]!;
  const c = await TestClient.connect(e.url, { token: await e.token(user), device, ...(cursor !== undefined ? { cursor } : {}) });
  onTestFinished(() => c.close());
  return c;
}

type Conv = { id: string; members: string[] };
type Summary = { id: string; kind: string; name?: string; members: string[]; last?: { id: number; from: string; text: string }; delivered: number; read: number; unread: number };
const convOf = (f: Frame) => f.conv as Conv;

async function summaries(c: TestClient): Promise<Summary[]> {
  const reply = await c.request({ type: "convs" });
  expect(reply.type).toBe("convs");
  return reply.convs as Summary[];
}
const summaryOf = async (c: TestClient, conv: string) => (await summaries(c)).find((s) => s.id === conv);

async function send(c: TestClient, conv: string, cid: string, text = cid): Promise<number> {
  const ack = await c.request({ type: "send", conv, cid, text });
  if (ack.type !== "ack") throw new Error(`send ${cid}: ${JSON.stringify(ack)}`);
  return Number(ack.id);
}

describe("receipts", () => {
  it("a read on the phone clears the laptop's unread count and reaches the other member", async () => {
    const alice = await client(0, "r_alice", "d");
    const phone = await client(0, "r_bob", "phone");
    const laptop = await client(1, "r_bob", "laptop");
    const dm = convOf(await alice.request({ type: "dm.open", peer: "r_bob" }));
    const ids = [await send(alice, dm.id, "one"), await send(alice, dm.id, "two"), await send(alice, dm.id, "three")];
    const lastId = ids[2]!;
    await laptop.waitFor((f) => f.type === "msg" && f.id === lastId);

    await expect.poll(() => summaryOf(laptop, dm.id), { timeout: 10_000 }).toMatchObject({
      kind: "dm",
      members: ["r_alice", "r_bob"],
      last: { id: lastId, from: "r_alice", text: "three" },
      unread: 3,
      read: 0,
    });
    // The sender's own messages are never unread for her.
    expect(await summaryOf(alice, dm.id)).toMatchObject({ unread: 0 });

    const reply = await phone.request({ type: "receipt", conv: dm.id, read: lastId });
    expect(reply).toMatchObject({ type: "receipt", conv: dm.id, user: "r_bob", read: lastId, delivered: lastId });
    expect(reply.cursor).toBeUndefined();
    expect(Number(reply.id)).toBeGreaterThan(lastId);

    // The laptop (another edge) and alice receive the receipt as an inbox item.
    const onLaptop = await laptop.waitFor((f) => f.type === "receipt" && f.ref === undefined);
    expect(onLaptop).toMatchObject({ conv: dm.id, id: reply.id, user: "r_bob", device: "phone", read: lastId, delivered: lastId });
    expect(typeof onLaptop.cursor).toBe("number");
    await alice.waitFor((f) => f.type === "receipt" && f.user === "r_bob" && f.read === lastId);
    // The laptop's unread count is computed by the server: zero now.
    expect(await summaryOf(laptop, dm.id)).toMatchObject({ unread: 0, read: lastId, delivered: lastId });

    // Every member's receipts, for a device that was not connected when they happened.
    const receipts = (await alice.request({ type: "receipts", conv: dm.id })).receipts as unknown[];
    expect(receipts).toEqual(
      expect.arrayContaining([
        { user: "r_bob", delivered: lastId, read: lastId },
        { user: "r_alice", delivered: 0, read: 0 },
      ]),
    );
  });

  it("never move backwards, read implies delivered, cannot pass the last event, and are replayed on catch-up in order", async () => {
    const owner = await client(0, "m_owner", "d");
    const bob = await client(1, "m_bob", "d1");
    const g = convOf(await owner.request({ type: "group.create", name: "mono", members: ["m_bob"] }));
    const m1 = await send(owner, g.id, "m1");
    const first = await bob.waitFor((f) => f.type === "msg" && f.id === m1);
    const m2 = await send(owner, g.id, "m2");
    await bob.waitFor((f) => f.type === "msg" && f.id === m2);

    const delivered = await bob.request({ type: "receipt", conv: g.id, delivered: m2 });
    expect(delivered).toMatchObject({ delivered: m2, read: 0 });
    const read = await bob.request({ type: "receipt", conv: g.id, read: m1 });
    expect(read).toMatchObject({ delivered: m2, read: m1 });
    // Lower or equal values change nothing and store nothing.
    expect(await bob.request({ type: "receipt", conv: g.id, read: m1, delivered: m1 })).toMatchObject({ id: read.id, delivered: m2, read: m1 });
    expect(await bob.request({ type: "receipt", conv: g.id, read: m2 + 1000 })).toMatchObject({ type: "error", code: "RECEIPT_AHEAD", temporary: false });
    expect(await bob.request({ type: "receipt", conv: g.id })).toMatchObject({ type: "error", code: "BAD_FRAME" });
    expect(await bob.request({ type: "receipt", conv: g.id, read: 0 })).toMatchObject({ type: "error", code: "BAD_FRAME" });

    // The owner sees both changes, in order.
    await owner.waitFor((f) => f.type === "receipt" && f.id === read.id);
    expect(owner.frames.filter((f) => f.type === "receipt" && f.ref === undefined).map((f) => [f.delivered, f.read])).toEqual([
      [m2, 0],
      [m2, m1],
    ]);

    // Another device of bob, resuming from before the receipts, replays them after the messages.
    const d2 = await client(0, "m_bob", "d2", Number(first.cursor));
    await d2.waitFor((f) => f.type === "receipt" && f.id === read.id);
    const replay = d2.frames.filter((f) => f.conv === g.id && (f.type === "msg" || f.type === "receipt"));
    expect(replay.map((f) => [f.type, f.id])).toEqual([
      ["msg", m2],
      ["receipt", delivered.id],
      ["receipt", read.id],
    ]);
    const cursors = replay.map((f) => Number(f.cursor));
    expect(cursors).toEqual([...cursors].sort((a, b) => a - b));
  });

  it("unread counts: own messages left out, counted from joining, from the stream's state beyond the first 100", async () => {
    const owner = await client(0, "u_owner", "d");
    const carol = await client(1, "u_carol", "d");
    const g = convOf(await owner.request({ type: "group.create", name: "counting", members: ["u_carol"] }));
    // 120 from the owner, 2 of carol's among the first ones: more than the server reads to leave
    // out the user's own messages (UNREAD_EXACT, 100); the rest it counts from the stream's state.
    const o = [await send(owner, g.id, "o0")];
    await send(carol, g.id, "c0");
    await send(carol, g.id, "c1");
    for (let i = 1; i < 120; i++) o.push(await send(owner, g.id, `o${i}`));
    await expect.poll(() => summaryOf(carol, g.id), { timeout: 10_000 }).toMatchObject({ kind: "group", name: "counting", unread: 120 });
    // The owner never marked anything read: carol's two among the first 100 unread, and the 22
    // messages after those, counted by the server without reading them (the owner's own: the
    // documented limit of the count; a client marks read what it shows, so this stays rare).
    expect(await summaryOf(owner, g.id)).toMatchObject({ unread: 2 + 22 });
    await owner.request({ type: "receipt", conv: g.id, read: o[119]! });
    expect(await summaryOf(owner, g.id)).toMatchObject({ unread: 0 });

    // A member added later counts only what came after joining.
    const added = convOf(await owner.request({ type: "group.add", conv: g.id, user: "u_dan" }));
    expect(added.members).toContain("u_dan");
    const dan = await client(1, "u_dan", "d");
    await expect.poll(() => summaryOf(dan, g.id), { timeout: 10_000 }).toMatchObject({ unread: 0, members: ["u_owner", "u_carol", "u_dan"] });
    const after = await send(owner, g.id, "after");
    await expect.poll(() => summaryOf(dan, g.id), { timeout: 10_000 }).toMatchObject({ unread: 1, last: { id: after, text: "after" } });
    expect(await summaryOf(carol, g.id)).toMatchObject({ unread: 121 });

    // Reading part of it leaves the rest unread.
    await carol.request({ type: "receipt", conv: g.id, read: o[110]! });
    expect(await summaryOf(carol, g.id)).toMatchObject({ unread: 10, read: o[110] }); // o111…o119 and "after"

    // A member who left no longer lists the conversation.
    await dan.request({ type: "group.leave", conv: g.id });
    await expect.poll(async () => (await summaries(dan)).map((s) => s.id), { timeout: 10_000 }).not.toContain(g.id);
  });

  it("refuses non-members with NOT_MEMBER, the same for a conversation that does not exist", async () => {
    const owner = await client(0, "n_owner", "d");
    const mallory = await client(1, "n_mallory", "d");
    const g = convOf(await owner.request({ type: "group.create", name: "closed", members: [] }));
    const m = await send(owner, g.id, "secret");
    for (const frame of [
      { type: "receipt", conv: g.id, read: m },
      { type: "receipts", conv: g.id },
      { type: "typing", conv: g.id },
    ]) {
      expect(await mallory.request(frame)).toMatchObject({ type: "error", code: "NOT_MEMBER", temporary: false });
      expect(await mallory.request({ ...frame, conv: "g_doesnotexist" })).toMatchObject({ type: "error", code: "NOT_MEMBER" });
    }
    expect((await summaries(mallory)).map((s) => s.id)).not.toContain(g.id);
    expect(await mallory.request({ type: "receipt", conv: "bad.id", read: 1 })).toMatchObject({ code: "BAD_FRAME" });
  });

  it("are not written to the store, and history never returns them", async () => {
    const a = await client(0, "p_a", "d");
    const b = await client(0, "p_b", "d");
    const dm = convOf(await a.request({ type: "dm.open", peer: "p_b" }));
    const id = await send(a, dm.id, "keep", "keep me");
    await b.request({ type: "receipt", conv: dm.id, read: id });
    const nc = await connect({ servers: nats.url });
    onTestFinished(() => nc.close());
    const jsm = await jetstreamManager(nc);
    await expect
      .poll(async () => {
        const info = await jsm.consumers.info("CONV_0", "persister");
        return info.num_pending + info.num_ack_pending;
      }, { timeout: 10_000 })
      .toBe(0);
    const stored = await edges[0]!.node.store.history(dm.id, { limit: 100 });
    expect(stored.map((m) => m.kind).sort()).toEqual(["members", "msg"]);
    const page = (await a.request({ type: "history", conv: dm.id })).messages as { kind: string }[];
    expect(page.map((m) => m.kind)).toEqual(["msg", "members"]);
  });
});

describe("typing", () => {
  it("reaches the other members' connected devices live (not the sender's), is rate-limited and never stored", async () => {
    const alice = await client(0, "t_alice", "d1");
    const aliceLaptop = await client(1, "t_alice", "d2");
    const bob = await client(1, "t_bob", "d");
    const carol = await client(0, "t_carol", "d");
    const g = convOf(await alice.request({ type: "group.create", name: "typists", members: ["t_bob", "t_carol"] }));
    const before = await bob.waitFor((f) => f.type === "members" && f.conv === g.id);

    // The edge takes the signal's time between these two instants.
    const sentAt = Date.now();
    const reply = await alice.request({ type: "typing", conv: g.id });
    const acceptedBy = Date.now();
    expect(reply).toMatchObject({ type: "typing", conv: g.id, user: "t_alice", ttlMs: 5000 });
    // Within 2 s: refused, temporary. Sent at once, before anything else is awaited.
    const again = await alice.request({ type: "typing", conv: g.id });
    expect(again, `answered ${Date.now() - sentAt} ms after the first was sent`).toMatchObject({ type: "error", code: "RATE_LIMITED", temporary: true });
    for (const c of [bob, carol]) {
      const t = await c.waitFor((f) => f.type === "typing" && f.conv === g.id);
      expect(t).toEqual({ type: "typing", conv: g.id, user: "t_alice", ttlMs: 5000 });
    }
    // A marker message proves the sender's other device had its chance to see a signal: it did not.
    const marker = await send(alice, g.id, "marker");
    await aliceLaptop.waitFor((f) => f.type === "msg" && f.id === marker);
    await bob.waitFor((f) => f.type === "msg" && f.id === marker);
    expect(aliceLaptop.frames.filter((f) => f.type === "typing")).toEqual([]);
    expect(bob.frames.filter((f) => f.type === "typing")).toHaveLength(1);

    // After the interval (counted from the latest moment the edge can have taken the first) it goes through again.
    await new Promise((r) => setTimeout(r, Math.max(0, 2050 - (Date.now() - acceptedBy))));
    expect(await alice.request({ type: "typing", conv: g.id })).toMatchObject({ type: "typing" });
    await expect.poll(() => carol.frames.filter((f) => f.type === "typing").length, { timeout: 5000 }).toBe(2);

    // Never stored: a device resuming from before the signals replays the messages only.
    const replayed = await client(0, "t_bob", "d3", Number(before.cursor));
    await replayed.waitFor((f) => f.type === "msg" && f.id === marker);
    expect(replayed.frames.filter((f) => f.type === "typing")).toEqual([]);
  });
});
