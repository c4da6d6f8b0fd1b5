// The edge's limits, each with its typed error or close code, on a real node.
import { WebSocket } from "ws";
import { describe, expect, it, onTestFinished } from "vitest";
import { ConversationIndex } from "../streams/index.ts";
import { useNats } from "./harness/nats.ts";
import { testConfig, useNode } from "./support/node.ts";
import { TestClient } from "./support/ws-client.ts";

const nats = useNats();
const node = useNode(() =>
  testConfig(nats.url, {
    edge: {
      port: 0,
      maxTextChars: 60_000,
      maxPayloadBytes: 128 * 1024,
      sendsPerSecond: 3,
      badFramesPerMinute: 5,
      // Every connect in this file must say hello in time: leave room for a stalled event loop.
      helloTimeoutMs: 2000,
      maxBufferedBytes: 64 * 1024,
      allowedOrigins: ["https://chat.example"],
    },
  }),
);
// The conversation cap, on a node whose budget leaves room for the group creations it takes.
const roomy = useNode(() => testConfig(nats.url, { edge: { port: 0, maxConversationsPerUser: 3, sendsPerSecond: 1000 } }));

async function client(user: string, device = "d", on = node): Promise<TestClient> {
  const c = await TestClient.connect(on.url, { token: await on.token(user), device });
  onTestFinished(() => c.close());
  return c;
}

describe("edge limits", () => {
  it("refuses over-long text with TEXT_TOO_LARGE and keeps the socket", async () => {
    const a = await client("lim_a");
    const { conv } = (await a.request({ type: "dm.open", peer: "lim_b" })) as unknown as { conv: { id: string } };
    expect(await a.request({ type: "send", conv: conv.id, cid: "big", text: "x".repeat(60_001) })).toMatchObject({ code: "TEXT_TOO_LARGE", temporary: false });
    expect(await a.request({ type: "ping" })).toMatchObject({ type: "pong" });
  });

  it("rate-limits sends per user with a temporary RATE_LIMITED", async () => {
    const a = await client("rate_a");
    const { conv } = (await a.request({ type: "dm.open", peer: "rate_b" })) as unknown as { conv: { id: string } };
    const replies = await Promise.all(Array.from({ length: 12 }, (_, i) => a.request({ type: "send", conv: conv.id, cid: `r${i}`, text: "hi" })));
    const limited = replies.filter((r) => r.type === "error");
    expect(limited.length).toBeGreaterThan(0);
    for (const r of limited) expect(r).toMatchObject({ code: "RATE_LIMITED", temporary: true });
    expect(replies.filter((r) => r.type === "ack").length).toBeGreaterThanOrEqual(8); // the burst (2 × rate, never below 10 sends) less the dm.open (2)
  });

  it("closes with 4429 after too many bad frames", async () => {
    const a = await client("bad_a");
    for (let i = 0; i < 20; i++) a.sendRaw("nope");
    expect((await a.closed).code).toBe(4429);
  });

  it("closes with 4408 when no hello arrives in time", async () => {
    const c = await TestClient.open(node.url);
    expect((await c.closed).code).toBe(4408);
  });

  it("closes with 4403 for an origin outside the allowlist, and serves an allowed one", async () => {
    const wsUrl = `${node.url.replace(/^http/, "ws")}/ws`;
    const evil = new WebSocket(wsUrl, { origin: "https://evil.example" });
    const code = await new Promise<number>((resolve) => evil.on("close", (c) => resolve(c)));
    expect(code).toBe(4403);
    // The hello timer starts when the socket opens: have the token ready before.
    const token = await node.token("origin_ok");
    const good = new WebSocket(wsUrl, { origin: "https://chat.example" });
    onTestFinished(() => good.close());
    const first = new Promise<string>((resolve) => good.once("message", (d) => resolve(String(d))));
    await new Promise((resolve, reject) => {
      good.once("open", resolve);
      good.once("error", reject);
    });
    good.send(JSON.stringify({ type: "hello", v: 1, token, device: "d" }));
    expect(JSON.parse(await first)).toMatchObject({ type: "welcome" });
  });

  it("closes a device that does not read with 4409 (resume from your cursor), without hurting the sender", async () => {
    const reader = await client("slow_reader");
    // Four users (each within its budget of 3 sends/s) in one group with the reader.
    const senders = await Promise.all([0, 1, 2, 3].map((i) => client(`slow_sender${i}`)));
    const { conv } = (await senders[0]!.request({ type: "group.create", name: "flood", members: ["slow_reader", "slow_sender1", "slow_sender2", "slow_sender3"] })) as unknown as {
      conv: { id: string };
    };
    // Stop reading: the kernel buffers fill, then the edge's buffer passes 64 KiB.
    (reader.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    const big = "y".repeat(50_000);
    let sent = 0;
    for (let round = 0; round < 40 && reader.ws.readyState === WebSocket.OPEN; round++) {
      const acks = await Promise.all(senders.map((s, i) => s.request({ type: "send", conv: conv.id, cid: `big${round}_${i}`, text: big })));
      sent += acks.filter((a) => a.type === "ack").length;
      await new Promise((r) => setTimeout(r, 400)); // stay under the send rate limit
      (reader.ws as unknown as { _socket: { pause(): void } })._socket.pause();
      if (round === 39) break;
      // Let the edge notice: its buffer grows only once the socket's kernel buffers are full.
    }
    (reader.ws as unknown as { _socket: { resume(): void } })._socket.resume();
    expect((await reader.closed).code).toBe(4409);
    expect(sent).toBeGreaterThan(0);
    expect(await senders[0]!.request({ type: "ping" })).toMatchObject({ type: "pong" });
  });
});

describe("conversations per user", () => {
  type Conv = { id: string; members: string[] };
  const convOf = (f: Record<string, unknown>) => f.conv as Conv;
  const listed = async (c: TestClient) => ((await c.request({ type: "convs" })).convs as Conv[]).map((x) => x.id).sort();
  /** What the limit counts: the user's member entries in the user-convs index. */
  const memberCount = (user: string) => new ConversationIndex(roomy.node.js, roomy.node.jsm).memberCount(user);

  it("refuses a user's fourth conversation with TOO_MANY_CONVERSATIONS, whoever opens it, and frees a slot on leaving", async () => {
    const a = await client("cap_a", "d", roomy);
    const b = await client("cap_b", "d", roomy);
    const e = await client("cap_e", "d", roomy);
    const dms = [convOf(await a.request({ type: "dm.open", peer: "cap_b" })), convOf(await a.request({ type: "dm.open", peer: "cap_c" }))];
    const group = convOf(await b.request({ type: "group.create", name: "three", members: ["cap_a"] }));
    // The count is the user-convs index, which the fan-out keeps: wait until it holds all three.
    await expect.poll(() => memberCount("cap_a")).toBe(3);
    expect(await listed(a)).toEqual([...dms.map((d) => d.id), group.id].sort());

    expect(await a.request({ type: "dm.open", peer: "cap_d" })).toMatchObject({ type: "error", code: "TOO_MANY_CONVERSATIONS", temporary: false });
    // The other side of a new 1:1, a group with cap_a in it, an add of cap_a: all refused, nothing created.
    expect(await e.request({ type: "dm.open", peer: "cap_a" })).toMatchObject({ code: "TOO_MANY_CONVERSATIONS", message: expect.stringContaining("cap_a") });
    expect(await e.request({ type: "group.create", name: "no", members: ["cap_a", "cap_f"] })).toMatchObject({ code: "TOO_MANY_CONVERSATIONS" });
    const open = convOf(await e.request({ type: "group.create", name: "open", members: [] }));
    expect(await e.request({ type: "group.add", conv: open.id, user: "cap_a" })).toMatchObject({ code: "TOO_MANY_CONVERSATIONS" });
    expect(convOf(await e.request({ type: "members", conv: open.id })).members).toEqual(["cap_e"]);
    expect(await listed(e)).not.toContain(expect.stringMatching(/^dm_/));
    // A conversation that exists opens again: it is not a new one.
    expect(convOf(await a.request({ type: "dm.open", peer: "cap_b" })).id).toBe(dms[0]!.id);
    // A non-member adding cap_a learns nothing of cap_a's limit.
    expect(await a.request({ type: "group.add", conv: open.id, user: "cap_a" })).toMatchObject({ code: "NOT_MEMBER" });

    // Leaving the group frees a slot once the index has it (the listing drops it earlier, from the stream).
    expect(await a.request({ type: "group.leave", conv: group.id })).toMatchObject({ type: "conv" });
    await expect.poll(() => listed(a)).toEqual(dms.map((d) => d.id).sort());
    await expect.poll(() => memberCount("cap_a")).toBe(2);
    expect(convOf(await e.request({ type: "dm.open", peer: "cap_a" })).members).toEqual(["cap_a", "cap_e"]);
  });
});
