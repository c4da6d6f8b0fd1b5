// The SDK against a real natter (edge + workers in this process, a real nats-server): resume
// without gaps or duplicates through dropped connections, resend of a send whose ack was lost,
// resets, token refresh, reconnect to another edge, and typed errors. Network faults come from a
// TCP proxy between the SDK and the edge; natter is never mocked.
import { WebSocket } from "ws";
import { describe, expect, it, onTestFinished } from "vitest";
import { inboxStreamOf, topologyOf } from "../../nats/index.ts";
import { useNats } from "../../test/harness/nats.ts";
import { testConfig, useNode } from "../../test/support/node.ts";
import { startTcpProxy } from "../../test/support/tcp-proxy.ts";
import { MemoryCursorStore, NatterClient, NatterError, type ChatMessage, type NatterClientOptions, type ResetNotice, type StateChange } from "../src/index.js";

const nats = useNats();
const node = useNode(() => testConfig(nats.url));
// A second edge without workers, for the reconnect-elsewhere test (it is closed mid-file).
const other = useNode(() => testConfig(nats.url, { workers: { enabled: false } }));

interface Probe {
  client: NatterClient;
  messages: ChatMessage[];
  states: StateChange[];
  resets: ResetNotice[];
}

function sdk(user: string, device: string, opts: Partial<NatterClientOptions> = {}): Probe {
  const client = new NatterClient({
    url: node.url,
    user,
    device,
    token: () => node.token(user),
    WebSocket,
    backoff: { initialMs: 20, maxMs: 200 },
    ...opts,
  });
  onTestFinished(() => client.close());
  const probe: Probe = { client, messages: [], states: [], resets: [] };
  client.on("message", (m) => probe.messages.push(m));
  client.on("state", (s) => probe.states.push(s));
  client.on("reset", (r) => probe.resets.push(r));
  return probe;
}

async function proxy() {
  const p = await startTcpProxy(node.url);
  onTestFinished(() => p.close());
  return p;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("resume", () => {
  it("a receiver dropped twice mid-burst sees every message once, in order, with no gap", async () => {
    const net = await proxy();
    const receiver = sdk("burst-r", "phone", { url: net.url });
    await receiver.client.connect();
    const sender = sdk("burst-s", "laptop", { sendWindow: 16 });
    await sender.client.connect();
    const dm = await sender.client.openDm("burst-r");

    const total = 300;
    let acked = 0;
    const sends = Array.from({ length: total }, (_, i) =>
      sender.client.send(dm.id, `m${i}`).then((r) => {
        acked++;
        return r;
      }),
    );
    // Cut the receiver off twice while the burst is going on (the sender goes through the edge's
    // rate limit of 50/s, burst 100: its RATE_LIMITED replies are retried with the same cid).
    await expect.poll(() => acked, { timeout: 20_000 }).toBeGreaterThan(60);
    net.cut();
    await sleep(300);
    net.restore();
    await expect.poll(() => acked, { timeout: 20_000 }).toBeGreaterThan(180);
    net.cut();
    await sleep(300);
    net.restore();
    const results = await Promise.all(sends);

    const ids = results.map((r) => r.id).sort((a, b) => a - b);
    expect(new Set(ids).size).toBe(total);
    const last = ids[ids.length - 1]!;
    await expect.poll(() => receiver.messages.at(-1)?.id, { timeout: 20_000 }).toBe(last);
    const got = receiver.messages.filter((m) => m.conv === dm.id);
    expect(got.map((m) => m.id)).toEqual(ids);
    expect(new Set(got.map((m) => m.cid)).size).toBe(total);
    const cursors = receiver.messages.map((m) => m.cursor);
    expect(cursors).toEqual([...cursors].sort((a, b) => a - b));
    expect(new Set(cursors).size).toBe(cursors.length);
    // It really was offline twice, and came back each time.
    expect(receiver.states.filter((s) => s.state === "reconnecting").length).toBeGreaterThanOrEqual(2);
    expect(receiver.states.filter((s) => s.state === "open").length).toBeGreaterThanOrEqual(3);
    expect(receiver.client.cursor).toBe(cursors.at(-1));
  });

  it("a device restarted with a stored cursor gets what it missed while it was away, once", async () => {
    const store = new MemoryCursorStore();
    const first = sdk("away-r", "tablet", { cursorStore: store });
    await first.client.connect();
    const sender = sdk("away-s", "d");
    const dm = await sender.client.openDm("away-r");
    const before = await sender.client.send(dm.id, "before");
    await expect.poll(() => first.messages.map((m) => m.id)).toEqual([before.id]);
    first.client.close();
    const missed = [];
    for (let i = 0; i < 5; i++) missed.push((await sender.client.send(dm.id, `missed ${i}`)).id);
    const second = sdk("away-r", "tablet", { cursorStore: store });
    await second.client.connect();
    await expect.poll(() => second.messages.map((m) => m.id)).toEqual(missed);
  });

  it("a device with nothing new resumes cleanly while other users' items follow its cursor in the shard", async () => {
    const store = new MemoryCursorStore();
    const first = sdk("quiet-r", "d", { cursorStore: store });
    await first.client.connect();
    const sender = sdk("quiet-s", "d");
    const dm = await sender.client.openDm("quiet-r");
    const hi = await sender.client.send(dm.id, "hi");
    await expect.poll(() => first.messages.map((m) => m.id)).toEqual([hi.id]);
    first.client.close();
    // Items for someone else land after quiet-r's cursor in the same inbox stream.
    const elsewhere = await sender.client.openDm("quiet-other");
    await sender.client.send(elsewhere.id, "not for quiet-r");
    const back = sdk("quiet-r", "d", { cursorStore: store });
    const errors: string[] = [];
    back.client.on("error", (e) => errors.push(e.code));
    await back.client.connect();
    const later = await sender.client.send(dm.id, "later");
    await expect.poll(() => back.messages.map((m) => m.id)).toEqual([later.id]);
    expect(errors).toEqual([]);
    expect(back.states.filter((s) => s.state === "reconnecting")).toEqual([]);
  });
});

describe("sends", () => {
  it("a send whose ack was lost is resent with its cid after the reconnect: one message, one id", async () => {
    const net = await proxy();
    const sender = sdk("lost-s", "phone", { url: net.url });
    await sender.client.connect();
    const peer = sdk("lost-r", "d");
    await peer.client.connect();
    const dm = await sender.client.openDm("lost-r");

    // The send reaches the edge and is stored, but nothing the edge says gets back.
    net.dropServerBytes(true);
    const sent = sender.client.send(dm.id, "only once", { cid: "lost-ack-1" });
    await expect.poll(() => peer.messages.find((m) => m.cid === "lost-ack-1"), { timeout: 10_000 }).toBeDefined();
    expect(sender.client.pendingSends).toBe(1);
    net.cut();
    net.restore();
    const ack = await sent;
    expect(ack.dup).toBe(true);
    expect(ack.id).toBe(peer.messages.find((m) => m.cid === "lost-ack-1")!.id);

    const marker = await sender.client.send(dm.id, "marker");
    await expect.poll(() => peer.messages.at(-1)?.id).toBe(marker.id);
    expect(peer.messages.filter((m) => m.cid === "lost-ack-1")).toHaveLength(1);
    // The sending device gets its own message once too (the frame it missed comes on resume).
    await expect.poll(() => sender.messages.at(-1)?.id).toBe(marker.id);
    expect(sender.messages.filter((m) => m.cid === "lost-ack-1")).toHaveLength(1);
    await expect
      .poll(async () => (await peer.client.history(dm.id)).filter((h) => h.kind === "msg").map((h) => h.cid), { timeout: 10_000 })
      .toEqual([marker.cid, "lost-ack-1"]);
  });

  it("sends made while offline wait, then go out in order once the connection is back", async () => {
    const net = await proxy();
    const sender = sdk("queue-s", "phone", { url: net.url });
    await sender.client.connect();
    const peer = sdk("queue-r", "d");
    await peer.client.connect();
    const dm = await sender.client.openDm("queue-r");
    net.cut();
    await expect.poll(() => sender.client.state).toBe("reconnecting");
    const sends = ["one", "two", "three"].map((t) => sender.client.send(dm.id, t));
    await sleep(200);
    expect(sender.client.pendingSends).toBe(3);
    net.restore();
    const acks = await Promise.all(sends);
    expect(acks.map((a) => a.dup)).toEqual([false, false, false]);
    await expect.poll(() => peer.messages.map((m) => m.text)).toEqual(["one", "two", "three"]);
    expect(peer.messages.map((m) => m.id)).toEqual(acks.map((a) => a.id));
  });
});

describe("resets", () => {
  it("a cursor older than the inbox's retention: a reset event, the new cursor stored, history still there", async () => {
    const store = new MemoryCursorStore();
    const sender = sdk("reset-s", "d");
    const dm = await sender.client.openDm("reset-r");
    const first = sdk("reset-r", "d", { cursorStore: store });
    await first.client.connect();
    const acks = [];
    for (let i = 0; i < 3; i++) acks.push(await sender.client.send(dm.id, `r${i}`));
    await expect.poll(() => first.messages.length).toBe(3);
    const oldCursor = first.messages[0]!.cursor - 1;
    first.client.close();
    // Expire the oldest inbox items as retention would (an operator's purge: the edge's identity may not).
    const cfg = testConfig(nats.url);
    await (await node.ops()).streams.purge(inboxStreamOf(topologyOf(cfg.streams), "reset-r"), { keep: 1 });
    store.set("reset-r/d", oldCursor);

    const back = sdk("reset-r", "d", { cursorStore: store });
    await back.client.connect();
    await expect.poll(() => back.resets.length).toBe(1);
    expect(back.resets[0]!.cursor).toBeGreaterThan(oldCursor);
    expect(store.get("reset-r/d")).toBe(back.resets[0]!.cursor);
    expect(back.messages).toEqual([]);
    const history = await back.client.history(dm.id);
    expect(history.filter((h) => h.kind === "msg").map((h) => h.text)).toEqual(["r2", "r1", "r0"]);
    const after = await sender.client.send(dm.id, "after the reset");
    await expect.poll(() => back.messages.map((m) => m.id)).toEqual([after.id]);
  });

  it("a cursor the server never issued (a wiped server): dropped, a reset event, connected at the inbox's end", async () => {
    const store = new MemoryCursorStore();
    store.set("wiped/d", 10_000_000);
    const c = sdk("wiped", "d", { cursorStore: store });
    await c.client.connect();
    expect(c.resets).toHaveLength(1);
    expect(c.resets[0]!.reason).toMatch(/did not know cursor 10000000/);
    expect(c.client.cursor).toBeLessThan(10_000_000);
    expect(store.get("wiped/d")).toBe(c.client.cursor);
  });
});

describe("connections", () => {
  it("a refused token makes the hook fetch a fresh one; a fixed bad token stops with UNAUTHENTICATED", async () => {
    const reasons: string[] = [];
    const ok = sdk("tok", "d", {
      token: async (reason) => {
        reasons.push(reason);
        return reasons.length === 1 ? "expired-token" : node.token("tok");
      },
    });
    await ok.client.connect();
    expect(reasons).toEqual(["connect", "refresh"]);

    const bad = sdk("tok", "d2", { token: "not-a-token" });
    const err = await bad.client.connect().then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(NatterError);
    expect(err).toMatchObject({ code: "UNAUTHENTICATED", temporary: false, closeCode: 4401 });
    expect(bad.client.state).toBe("closed");
  });

  it("an edge going away (1001) sends the client to the edge the url hook names next, and delivery goes on", async () => {
    let edgeUrl = other.url;
    const c = sdk("moving", "d", { url: () => edgeUrl });
    await c.client.connect();
    const sender = sdk("moving-s", "d");
    const dm = await sender.client.openDm("moving");
    const a = await sender.client.send(dm.id, "on the first edge");
    await expect.poll(() => c.messages.map((m) => m.id)).toEqual([a.id]);
    edgeUrl = node.url;
    await other.node.close();
    const b = await sender.client.send(dm.id, "on the second edge");
    await expect.poll(() => c.messages.map((m) => m.id)).toEqual([a.id, b.id]);
    expect(c.states.find((s) => s.state === "reconnecting")?.closeCode).toBe(1001);
  });
});

describe("errors", () => {
  it("requests reject with the server's typed errors", async () => {
    const c = sdk("err-a", "d");
    await c.client.connect();
    await expect(c.client.openDm("err-a")).rejects.toMatchObject({ name: "NatterError", code: "SELF_CONVERSATION", temporary: false });
    const g = await sdk("err-b", "d").client.createGroup("private", []);
    await expect(c.client.send(g.id, "let me in")).rejects.toMatchObject({ code: "NOT_MEMBER", temporary: false });
    await expect(c.client.history(g.id)).rejects.toMatchObject({ code: "NOT_MEMBER" });
    const dm = await c.client.openDm("err-b");
    await expect(c.client.send(dm.id, "x".repeat(4001))).rejects.toMatchObject({ code: "TEXT_TOO_LARGE", temporary: false });
    await expect(c.client.addMember(dm.id, "err-c")).rejects.toMatchObject({ code: "NOT_A_GROUP" });
    await expect(c.client.openDm("not valid!")).rejects.toBeInstanceOf(NatterError);
    expect(c.client.pendingSends).toBe(0);
    // After close, everything rejects with CLOSED.
    c.client.close();
    await expect(c.client.send(dm.id, "late")).rejects.toMatchObject({ code: "CLOSED" });
  });
});
