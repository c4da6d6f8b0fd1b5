// The first message path through every real part: JWT-authenticated WebSocket, JetStream,
// fan-out to the recipient's per-user subject, persister into Cassandra.
import { describe, expect, it, onTestFinished } from "vitest";
import { bucketOf } from "../persistence/index.ts";
import { useKeyspace } from "./harness/cassandra.ts";
import { useNats } from "./harness/nats.ts";
import { testConfig, useNode } from "./support/node.ts";
import { TestClient } from "./support/ws-client.ts";

const nats = useNats();
const ks = useKeyspace();
const h = useNode(() =>
  testConfig(nats.url, {
    store: { kind: "cassandra", contactPoints: [ks.contactPoint], localDataCenter: ks.localDataCenter, keyspace: ks.keyspace, consistency: "ONE" },
    edge: { port: 0, maxPayloadBytes: 1024 },
  }),
);

async function client(user: string, device: string, cursor?: number): Promise<TestClient> {
  const c = await TestClient.connect(h.url, { token: await h.token(user), device, ...(cursor !== undefined ? { cursor } : {}) });
  onTestFinished(() => c.close());
  return c;
}

describe("first message path", () => {
  it("delivers A's text to B live, acks A with the JetStream id, and writes one Cassandra row", async () => {
    const alice = await client("alice", "phone");
    const bob = await client("bob", "laptop");
    const opened = await alice.request({ type: "dm.open", peer: "bob" });
    expect(opened.type).toBe("conv");
    const conv = (opened.conv as { id: string; members: string[] });
    expect(conv.members).toEqual(["alice", "bob"]);
    // Opening the same pair from the other side returns the same conversation.
    const again = await bob.request({ type: "dm.open", peer: "alice" });
    expect((again.conv as { id: string }).id).toBe(conv.id);

    const ack = await alice.request({ type: "send", conv: conv.id, cid: "c-1", text: "héllo bob 👋" });
    expect(ack).toMatchObject({ type: "ack", conv: conv.id, cid: "c-1", dup: false });
    expect(ack.id).toBeGreaterThan(0);

    const got = await bob.waitFor((f) => f.type === "msg" && f.cid === "c-1");
    expect(got).toMatchObject({ conv: conv.id, id: ack.id, from: "alice", device: "phone", text: "héllo bob 👋" });
    // The sender's own devices get it too (multi-device).
    await alice.waitFor((f) => f.type === "msg" && f.cid === "c-1");

    await expect
      .poll(
        async () => {
          const rs = await ks.client.execute(
            "SELECT msg_id, kind, sender, body FROM messages WHERE conv_id = ? AND bucket = ?",
            [conv.id, bucketOf(Number(got.ts))],
            { prepare: true },
          );
          return rs.rows.filter((r) => r.get("kind") === "msg").map((r) => ({ id: Number(r.get("msg_id")), sender: r.get("sender"), body: r.get("body") }));
        },
        { timeout: 15_000, interval: 200 },
      )
      .toEqual([{ id: ack.id, sender: "alice", body: "héllo bob 👋" }]);

    // History holds the conversation's creation (a membership change) and the message, newest first.
    const history = await bob.request({ type: "history", conv: conv.id, limit: 10 });
    expect((history.messages as { id: number; kind: string }[]).map((m) => [m.kind, m.id])).toEqual([
      ["msg", ack.id],
      ["members", (conv as unknown as { revision?: number }).revision ?? expect.any(Number)],
    ]);
  });

  it("a retried send returns the same id and is delivered once", async () => {
    const alice = await client("alice", "phone");
    const bob = await client("bob", "tablet");
    const { conv } = (await alice.request({ type: "dm.open", peer: "bob" })) as unknown as { conv: { id: string } };
    const first = await alice.request({ type: "send", conv: conv.id, cid: "retry-1", text: "once" });
    const second = await alice.request({ type: "send", conv: conv.id, cid: "retry-1", text: "once" });
    expect(second).toMatchObject({ id: first.id, dup: true });
    await bob.waitFor((f) => f.type === "msg" && f.cid === "retry-1");
    const marker = await alice.request({ type: "send", conv: conv.id, cid: "retry-marker", text: "after" });
    await bob.waitFor((f) => f.type === "msg" && f.id === marker.id);
    expect(bob.messages().filter((m) => m.cid === "retry-1")).toHaveLength(1);
  });

  it("a device reconnecting with its cursor receives exactly what it missed, in order", async () => {
    const alice = await client("alice", "phone");
    const bob = await client("bob", "desk");
    const { conv } = (await alice.request({ type: "dm.open", peer: "bob" })) as unknown as { conv: { id: string } };
    const a = await alice.request({ type: "send", conv: conv.id, cid: "gap-a", text: "a" });
    const seen = await bob.waitFor((f) => f.type === "msg" && f.id === a.id);
    await bob.close();
    const missed: unknown[] = [];
    for (const cid of ["gap-b", "gap-c", "gap-d"]) missed.push((await alice.request({ type: "send", conv: conv.id, cid, text: cid })).id);
    const back = await client("bob", "desk", Number(seen.cursor));
    await back.waitFor((f) => f.type === "msg" && f.id === missed[2]);
    const live = await alice.request({ type: "send", conv: conv.id, cid: "gap-e", text: "live" });
    await back.waitFor((f) => f.type === "msg" && f.id === live.id);
    expect(back.messages().map((m) => m.id)).toEqual([...missed, live.id]);
  });
});

describe("bad input", () => {
  it("answers bad frames with typed errors and keeps the socket open", async () => {
    const alice = await client("alice", "phone");
    alice.sendRaw("{not json");
    await alice.waitFor((f) => f.type === "error" && f.code === "BAD_JSON");
    alice.sendRaw(JSON.stringify({ type: "launch-missiles", ref: "u1" }));
    expect(await alice.waitFor((f) => f.ref === "u1")).toMatchObject({ type: "error", code: "UNKNOWN_TYPE", temporary: false });
    alice.sendRaw(JSON.stringify({ type: "send", ref: "big", conv: "x", cid: "y", text: "z".repeat(2000) }));
    expect(await alice.waitFor((f) => f.type === "error" && f.code === "FRAME_TOO_LARGE")).toBeDefined();
    expect(await alice.request({ type: "send", conv: "conv.with.dots", cid: "c", text: "t" })).toMatchObject({ code: "BAD_FRAME" });
    expect(await alice.request({ type: "ping" })).toMatchObject({ type: "pong" });
  });

  it("refuses a non-member's send to a conversation", async () => {
    const alice = await client("alice", "phone");
    const mallory = await client("mallory", "evil");
    const { conv } = (await alice.request({ type: "dm.open", peer: "bob" })) as unknown as { conv: { id: string } };
    expect(await mallory.request({ type: "send", conv: conv.id, cid: "m1", text: "hi" })).toMatchObject({ type: "error", code: "NOT_MEMBER" });
    expect(await mallory.request({ type: "history", conv: conv.id })).toMatchObject({ type: "error", code: "NOT_MEMBER" });
  });

  it("closes with 4401 on a bad token and 4426 on an unknown protocol version", async () => {
    const bad = await TestClient.connect(h.url, { token: "not-a-jwt", device: "d1", expectClose: true });
    expect((await bad.closed).code).toBe(4401);
    const old = await TestClient.open(h.url);
    old.sendRaw(JSON.stringify({ type: "hello", v: 99, token: await h.token("alice"), device: "d1" }));
    expect((await old.closed).code).toBe(4426);
  });
});
