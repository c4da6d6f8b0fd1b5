// The daily quota per user on two edges: over it a user gets QUOTA_EXCEEDED (not temporary, with
// the time to the next UTC day) while others chat on; the count is the cluster's (the quota
// bucket), a repeated send (same cid) is not counted, and stored bytes count text × members.
import { describe, expect, it, onTestFinished } from "vitest";
import { decodeJson, kvKeySubject, names } from "../nats/index.ts";
import { useNats } from "./harness/nats.ts";
import { testConfig, useNode } from "./support/node.ts";
import { TestClient } from "./support/ws-client.ts";

const nats = useNats();
const quota = { messagesPerDay: 5, storedBytesPerDay: 10_000 };
const edges = [useNode(() => testConfig(nats.url, { quota })), useNode(() => testConfig(nats.url, { quota, workers: { enabled: false } }))];

async function client(on: number, user: string, device = "d"): Promise<TestClient> {
  const c = await TestClient.connect(edges[on]!.url, { token: await edges[on]!.token(user), device });
  onTestFinished(() => c.close());
  return c;
}

const today = () => new Date().toISOString().slice(0, 10).replaceAll("-", "");

/** The user's count for today in the quota bucket, as every edge reads it. */
async function stored(user: string): Promise<{ messages: number; bytes: number } | undefined> {
  const sm = await edges[0]!.node.jsm.direct.getMessage(names.kvStream(names.quotaBucket), { last_by_subj: kvKeySubject(names.quotaBucket, `${user}.${today()}`) }).catch(() => null);
  return sm ? (decodeJson(sm.data) as { messages: number; bytes: number }) : undefined;
}

describe("daily quota per user", () => {
  it("refuses the sixth message of the day with QUOTA_EXCEEDED on either edge, while another user chats on", async () => {
    const a = await client(0, "q_a");
    const b = await client(0, "q_b");
    const dm = (await a.request({ type: "dm.open", peer: "q_b" })).conv as { id: string };
    for (let i = 0; i < 5; i++) expect(await a.request({ type: "send", conv: dm.id, cid: `a${i}`, text: "hi" })).toMatchObject({ type: "ack" });
    const refused = await a.request({ type: "send", conv: dm.id, cid: "a5", text: "hi" });
    expect(refused).toMatchObject({ type: "error", code: "QUOTA_EXCEEDED", temporary: false });
    expect(refused.retryAfterMs).toBeGreaterThan(0);
    expect(refused.retryAfterMs).toBeLessThanOrEqual(24 * 3600 * 1000);

    // The other user is not affected: it sends and q_a still receives.
    const ack = await b.request({ type: "send", conv: dm.id, cid: "b0", text: "still here" });
    expect(ack).toMatchObject({ type: "ack" });
    await a.waitFor((f) => f.type === "msg" && f.id === ack.id);

    // Once the first edge wrote its count, the other edge refuses q_a too.
    await expect.poll(async () => (await stored("q_a"))?.messages).toBe(5);
    const elsewhere = await client(1, "q_a", "tablet");
    expect(await elsewhere.request({ type: "send", conv: dm.id, cid: "a6", text: "hi" })).toMatchObject({ code: "QUOTA_EXCEEDED" });
  });

  it("does not count a send repeated with the same cid", async () => {
    const d = await client(1, "q_d");
    const dm = (await d.request({ type: "dm.open", peer: "q_e" })).conv as { id: string };
    const first = await d.request({ type: "send", conv: dm.id, cid: "same", text: "hi" });
    for (let i = 0; i < 5; i++) expect(await d.request({ type: "send", conv: dm.id, cid: "same", text: "hi" })).toMatchObject({ type: "ack", id: first.id, dup: true });
    for (let i = 0; i < 4; i++) expect(await d.request({ type: "send", conv: dm.id, cid: `n${i}`, text: "hi" })).toMatchObject({ type: "ack", dup: false });
    expect(await d.request({ type: "send", conv: dm.id, cid: "n4", text: "hi" })).toMatchObject({ code: "QUOTA_EXCEEDED" });
  });

  it("counts stored bytes as text × members", async () => {
    const c = await client(0, "q_c");
    const members = Array.from({ length: 9 }, (_, i) => `q_m${i}`);
    const group = (await c.request({ type: "group.create", name: "ten", members })).conv as { id: string };
    // 1,000 bytes to 10 members: 10,000 stored, the whole quota.
    expect(await c.request({ type: "send", conv: group.id, cid: "g0", text: "x".repeat(1000) })).toMatchObject({ type: "ack" });
    const over = await c.request({ type: "send", conv: group.id, cid: "g1", text: "x" });
    expect(over).toMatchObject({ code: "QUOTA_EXCEEDED" });
    expect(over.message).toMatch(/bytes/);
  });
});
