// The steps of a push test on real natter nodes: devices that register a subscription and go
// offline (as the presence worker records it), conversations and sends, and the wait until a
// message went through the fan-out's push decision and every push request is settled.
import { expect, onTestFinished } from "vitest";
import { conversationStreamOf, kvKeySubject, names, pushSubscriptionKey, type Topology } from "../../nats/index.ts";
import type { NodeHandle } from "./node.ts";
import { TestClient, type Frame } from "./ws-client.ts";

export interface PushFlow {
  client(edge: number, user: string, device?: string): Promise<TestClient>;
  /** The reply to `frame`, which must not be an error. */
  ok(c: TestClient, frame: Frame): Promise<Frame>;
  /** Registers a subscription from a device of `user` that then disconnects (the user goes offline). */
  subscribeThenLeave(user: string, frame: Record<string, unknown>): Promise<Frame>;
  waitOnline(user: string, online: boolean): Promise<void>;
  openDm(c: TestClient, peer: string): Promise<string>;
  send(c: TestClient, conv: string, text: string): Promise<number>;
  /** Waits until message `id` of `conv` went through the dispatcher and every push request is settled. */
  settled(conv: string, id: number): Promise<void>;
  /** The sum over the edges of a metric's sample with these labels. */
  metric(name: string, labels: string): Promise<number>;
  /** The KV operation of the subscription's key now ("PUT", "PURGE"). */
  subscriptionState(user: string, id: string): Promise<string | undefined>;
}

export function pushFlow(edges: readonly NodeHandle[], topology: Topology): PushFlow {
  async function client(edge: number, user: string, device = "d"): Promise<TestClient> {
    const e = edges[edge]!;
    const c = await TestClient.connect(e.url, { token: await e.token(user), device });
    onTestFinished(() => c.close());
    return c;
  }

  async function ok(c: TestClient, frame: Frame): Promise<Frame> {
    const r = await c.request(frame);
    expect(r.type, JSON.stringify(r)).not.toBe("error");
    return r;
  }

  /** The user's presence as the presence worker recorded it (what the dispatcher reads). */
  async function isOnline(user: string): Promise<boolean> {
    const sm = await edges[0]!.node.jsm.direct
      .getMessage(names.kvStream(names.presenceUsersBucket), { last_by_subj: kvKeySubject(names.presenceUsersBucket, user) })
      .catch(() => null);
    return sm ? (JSON.parse(sm.string()) as { online: boolean }).online : false;
  }

  async function waitOnline(user: string, online: boolean): Promise<void> {
    await expect.poll(() => isOnline(user), { timeout: 10_000, interval: 50 }).toBe(online);
  }

  async function subscribeThenLeave(user: string, frame: Record<string, unknown>): Promise<Frame> {
    const c = await client(1, user, `reg-${user}`);
    const r = await ok(c, { type: "push.register", ...frame });
    await waitOnline(user, true); // so the offline state awaited next is the one after this close
    await c.close();
    await waitOnline(user, false);
    return r;
  }

  async function openDm(c: TestClient, peer: string): Promise<string> {
    return ((await ok(c, { type: "dm.open", peer })).conv as { id: string }).id;
  }

  async function send(c: TestClient, conv: string, text: string): Promise<number> {
    return (await ok(c, { type: "send", conv, cid: `c-${Math.random().toString(36).slice(2)}`, text })).id as number;
  }

  async function settled(conv: string, id: number): Promise<void> {
    const jsm = await edges[0]!.ops();
    await expect
      .poll(
        async () => {
          // Push requests are queued in the fan-out's pass, before it acks the message.
          const d = await jsm.consumers.info(conversationStreamOf(topology, conv), names.fanoutConsumer);
          const w = await jsm.consumers.info(names.pushStream(0), names.pushSenderConsumer);
          return d.ack_floor.stream_seq >= id && d.num_pending === 0 && d.num_ack_pending === 0 && w.num_pending === 0 && w.num_ack_pending === 0;
        },
        { timeout: 20_000, interval: 100 },
      )
      .toBe(true);
  }

  async function metric(name: string, labels: string): Promise<number> {
    let sum = 0;
    for (const e of edges) {
      const text = await (await fetch(`${e.node.workersUrl}/metrics`)).text();
      const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}}`));
      sum += line ? Number(line.split(" ").pop()) : 0;
    }
    return sum;
  }

  async function subscriptionState(user: string, id: string): Promise<string | undefined> {
    const sm = await edges[0]!.node.jsm.direct.getMessage(names.kvStream(names.pushSubscriptionsBucket), {
      last_by_subj: kvKeySubject(names.pushSubscriptionsBucket, pushSubscriptionKey(user, id)),
    });
    return sm?.header?.get("KV-Operation") || (sm ? "PUT" : undefined);
  }

  return { client, ok, subscribeThenLeave, waitOnline, openDm, send, settled, metric, subscriptionState };
}
