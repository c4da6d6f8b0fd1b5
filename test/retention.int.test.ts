// A conversation quiet for longer than the stream's retention keeps its members: messages and
// receipts carry a TTL in the conversation stream, membership events do not.
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { describe, expect, it, onTestFinished } from "vitest";
import { conversationStreamOf, conversationSubject, membershipSubject, topologyOf } from "../nats/index.ts";
import { useNats } from "./harness/nats.ts";
import { testConfig, useNode } from "./support/node.ts";
import { TestClient, type Frame } from "./support/ws-client.ts";

const nats = useNats();
const cfg = () => testConfig(nats.url, { streams: { conversationMaxAgeSec: 2 } });
const node = useNode(cfg);

describe("retention", () => {
  it("expires messages from the stream after their TTL but never the membership; history comes from the store", async () => {
    const a = await TestClient.connect(node.url, { token: await node.token("ret_a"), device: "d" });
    onTestFinished(() => a.close());
    const { conv } = (await a.request({ type: "dm.open", peer: "ret_b" })) as unknown as { conv: { id: string } };
    // Everything needed to look at the stream is ready before the send: the message lives 2 s.
    const nc = await connect({ servers: nats.url });
    onTestFinished(() => nc.close());
    const jsm = await jetstreamManager(nc);
    const t = topologyOf(cfg().streams);
    const stream = conversationStreamOf(t, conv.id);
    const lastOf = async (subject: string) => (await jsm.direct.getMessage(stream, { last_by_subj: subject }).catch(() => null))?.seq ?? null;
    const first = await a.request({ type: "send", conv: conv.id, cid: "old", text: "before the quiet" });
    expect(await lastOf(conversationSubject(t, conv.id))).toBe(first.id);
    // The message leaves the stream after its TTL; the membership stays.
    await expect.poll(() => lastOf(conversationSubject(t, conv.id)), { timeout: 10_000, interval: 250 }).toBeNull();
    expect(await lastOf(membershipSubject(t, conv.id))).not.toBeNull();
    const again = await a.request({ type: "send", conv: conv.id, cid: "new", text: "after the quiet" });
    expect(again.type).toBe("ack");
    const h = await a.request({ type: "history", conv: conv.id, limit: 10 });
    expect((h.messages as Frame[]).filter((m) => m.kind === "msg").map((m) => m.text)).toEqual(["after the quiet", "before the quiet"]);
  });
});
