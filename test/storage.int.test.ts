// Storage bounds on a real server: every stream has a byte limit; a conversation stream filled
// with messages refuses more sends with STORAGE_FULL and still takes membership changes and
// receipts (its reserve); presence lives in its own bucket and goes on; the usage is a metric.
import { describe, expect, it, onTestFinished } from "vitest";
import { useNats } from "./harness/nats.ts";
import { testConfig, useNode } from "./support/node.ts";
import { type Frame, TestClient } from "./support/ws-client.ts";

const STORAGE = 64 * 1024 * 1024; // conversations get 35 %: 22.4 MiB, of which 10 % is kept for membership and receipts
const TEXT = "m".repeat(100_000);
const nats = useNats();
const node = useNode(() =>
  testConfig(nats.url, {
    streams: { storageBytes: STORAGE },
    edge: { maxPayloadBytes: 1024 * 1024, maxTextChars: 100_000, sendsPerSecond: 10_000 },
  }),
);

async function client(user: string): Promise<TestClient> {
  const c = await TestClient.connect(node.url, { token: await node.token(user), device: "d" });
  onTestFinished(() => c.close());
  return c;
}

describe("storage bounds", () => {
  it("gives every stream and bucket a byte limit within streams.storageBytes", async () => {
    let total = 0;
    for await (const s of (await node.ops()).streams.list()) {
      expect(s.config.max_bytes, s.config.name).toBeGreaterThan(0);
      total += s.config.max_bytes;
    }
    expect(total).toBeLessThanOrEqual(STORAGE);
  });

  it("refuses sends into a full conversation stream with STORAGE_FULL, and membership, receipts and presence go on", async () => {
    const owner = await client("st_owner");
    const bob = await client("st_bob");
    const conv = (await owner.request({ type: "group.create", name: "full", members: ["st_bob"] })).conv as { id: string };
    let last: Frame | undefined;
    let sent = 0;
    // Bounded: 22.4 MiB of 100 kB messages is about 230 sends.
    for (let i = 0; i < 400; i++) {
      last = await owner.request({ type: "send", conv: conv.id, cid: `f${i}`, text: TEXT });
      if (last.type !== "ack") break;
      sent++;
    }
    expect(last).toMatchObject({ type: "error", code: "STORAGE_FULL", temporary: true });
    expect(sent).toBeGreaterThan(150);
    // A message as large into another conversation of the same stream is refused too.
    const dm = (await bob.request({ type: "dm.open", peer: "st_carol" })).conv as { id: string };
    expect(await bob.request({ type: "send", conv: dm.id, cid: "d1", text: TEXT })).toMatchObject({ code: "STORAGE_FULL" });

    // Membership changes and receipts use the stream's reserve.
    const added = await owner.request({ type: "group.add", conv: conv.id, user: "st_dave" });
    expect(added).toMatchObject({ type: "conv" });
    expect((added.conv as { members: string[] }).members).toContain("st_dave");
    await bob.waitFor((f) => f.type === "members" && f.action === "add" && f.user === "st_dave");
    const lastId = bob.messages().at(-1)?.id as number;
    expect(await bob.request({ type: "receipt", conv: conv.id, read: lastId })).toMatchObject({ type: "receipt", read: lastId });
    expect(await owner.request({ type: "group.remove", conv: conv.id, user: "st_dave" })).toMatchObject({ type: "conv" });
    // Presence is another bucket: the owner is online to bob.
    const seen = await bob.request({ type: "presence", conv: conv.id });
    expect(seen.users).toEqual([expect.objectContaining({ user: "st_owner", online: true })]);

    // The usage is a metric: the conversation stream is at its share for messages.
    const metrics = await (await fetch(`${node.node.workersUrl}/metrics`)).text();
    const ratio = Number(/natter_stream_usage\{stream="CONV_0",state="ratio"\} ([\d.e-]+)/.exec(metrics)?.[1]);
    expect(ratio).toBeGreaterThan(0.85);
    expect(ratio).toBeLessThan(1);
  });
});
