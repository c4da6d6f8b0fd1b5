// Push notifications through every real part: two edges on one NATS, both running the workers
// (so two push dispatchers and two push workers share the durable consumers), a local HTTP
// server standing in for a Web Push service and for webhook receivers. A message to a user with
// no online device produces exactly one push per subscription; to an online user, none.
import { createHmac } from "node:crypto";
import webpush from "web-push";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kvKeySubject, names, pushSubscriptionKey, type Topology } from "../nats/index.ts";
import { useNats } from "./harness/nats.ts";
import { testConfig, useNode } from "./support/node.ts";
import { pushFlow } from "./support/push-flow.ts";
import { browserKeys, decryptWebPush, startPushReceiver, type PushReceiver } from "./support/push-receiver.ts";

const RETRY_BASE_MS = 300;
const nats = useNats();
// Every node of a cluster must sign with the same VAPID key (docs/operations.md).
const vapid = webpush.generateVAPIDKeys();
const settings = (id: string) => ({
  edge: { port: 0, id },
  push: {
    allowHosts: ["127.0.0.1"],
    retryBaseMs: RETRY_BASE_MS,
    retryMaxMs: 5000,
    maxAttempts: 6,
    timeoutMs: 3000,
    maxSubscriptionsPerUser: 4,
    vapid: { publicKey: vapid.publicKey, privateKey: vapid.privateKey, subject: "mailto:ops@example.com" },
  },
});
const edges = [useNode(() => testConfig(nats.url, settings("edge-0"))), useNode(() => testConfig(nats.url, settings("edge-1")))];
const topology: Topology = { conversationShards: 1, inboxShards: 1 };

let receiver: PushReceiver;
beforeAll(async () => {
  receiver = await startPushReceiver();
});
afterAll(async () => {
  await receiver?.close();
});

const { client, ok, subscribeThenLeave, waitOnline, openDm, send, settled, metric } = pushFlow(edges, topology);

const json = (body: Buffer) => JSON.parse(body.toString("utf8")) as Record<string, unknown>;

describe("push notifications", () => {
  it("Web Push: an offline recipient gets exactly one encrypted, VAPID-signed push; online, none", async () => {
    const keys = browserKeys();
    const endpoint = `${receiver.url}/wp/bob`;
    const reg = await subscribeThenLeave("bob", { kind: "webpush", endpoint, keys: keys.json, expirationTime: null });
    expect(reg).toMatchObject({ type: "push.registered", kind: "webpush", id: expect.stringMatching(/^ps_/) });
    expect(reg.secret).toBeUndefined();

    const alice = await client(0, "alice");
    const conv = await openDm(alice, "bob");
    const id = await send(alice, conv, "hello bob 👋");
    await settled(conv, id);
    const got = receiver.requests("/wp/bob");
    expect(got).toHaveLength(1);
    const push = got[0]!;
    const payload = JSON.parse(decryptWebPush(push.body, keys)) as Record<string, unknown>;
    expect(payload).toMatchObject({ v: 1, type: "msg", title: "alice", body: "hello bob 👋", conv, id, from: "alice" });
    expect(push.headers["content-encoding"]).toBe("aes128gcm");
    expect(push.headers.topic).toBe(payload.pushId);
    expect(Number(push.headers.ttl)).toBeGreaterThan(0);
    // Signed with the key browsers get from any edge.
    const served = (await (await fetch(`${edges[1]!.url}/push/vapid-public-key`)).json()) as { publicKey: string };
    expect(served.publicKey).toBe(vapid.publicKey);
    expect(push.headers.authorization).toMatch(new RegExp(`^vapid t=[\\w.-]+, k=${served.publicKey}$`));

    // Online (a device connected, here to the sender's edge): no push, the device has the message.
    const bob = await client(0, "bob", "phone");
    await waitOnline("bob", true);
    const id2 = await send(alice, conv, "you are online");
    await bob.waitFor((f) => f.type === "msg" && f.id === id2);
    await settled(conv, id2);
    expect(receiver.requests("/wp/bob")).toHaveLength(1);
    expect(await metric("natter_push_sent_total", 'kind="webpush"')).toBeGreaterThanOrEqual(1);
  });

  it("webhook: an offline recipient gets exactly one signed POST per message", async () => {
    const reg = await subscribeThenLeave("carol", { kind: "webhook", url: `${receiver.url}/hook/carol` });
    const secret = reg.secret as string;
    expect(secret.length).toBeGreaterThanOrEqual(32);
    const dave = await client(0, "dave");
    const conv = await openDm(dave, "carol");
    const ids = [await send(dave, conv, "first"), await send(dave, conv, "second")];
    await settled(conv, ids[1]!);
    const got = receiver.requests("/hook/carol");
    expect(got.map((r) => json(r.body).id).sort()).toEqual([...ids].sort());
    for (const r of got) {
      const ts = r.headers["natter-timestamp"] as string;
      const expected = `v1=${createHmac("sha256", secret).update(`${ts}.${r.body.toString("utf8")}`).digest("hex")}`;
      expect(r.headers["natter-signature"]).toBe(expected);
      expect(r.headers["natter-push-id"]).toBe(json(r.body).pushId);
      expect(r.headers["content-type"]).toBe("application/json");
      expect(json(r.body)).toMatchObject({ title: "dave", from: "dave", conv });
    }
  });

  it("a subscription the push service reports gone (410) is removed and gets nothing more", async () => {
    receiver.always("/gone/erin", 410);
    const gone = await subscribeThenLeave("erin", { kind: "webpush", endpoint: `${receiver.url}/gone/erin`, keys: browserKeys().json });
    await subscribeThenLeave("erin", { kind: "webhook", url: `${receiver.url}/hook/erin` });
    const removedBefore = await metric("natter_push_subscriptions_removed_total", 'kind="webpush"');
    const frank = await client(0, "frank");
    const conv = await openDm(frank, "erin");
    const id1 = await send(frank, conv, "one");
    await settled(conv, id1);
    expect(receiver.requests("/gone/erin")).toHaveLength(1);
    const sm = await edges[0]!.node.jsm.direct.getMessage(names.kvStream(names.pushSubscriptionsBucket), {
      last_by_subj: kvKeySubject(names.pushSubscriptionsBucket, pushSubscriptionKey("erin", gone.id as string)),
    });
    expect(sm?.header?.get("KV-Operation")).toBe("PURGE");
    expect(await metric("natter_push_subscriptions_removed_total", 'kind="webpush"')).toBe(removedBefore + 1);

    const id2 = await send(frank, conv, "two");
    await settled(conv, id2);
    expect(receiver.requests("/gone/erin")).toHaveLength(1);
    expect(receiver.requests("/hook/erin").map((r) => json(r.body).id)).toEqual(expect.arrayContaining([id1, id2]));
    expect(receiver.requests("/hook/erin")).toHaveLength(2);
    // Its owner sees it gone.
    const erin = await client(1, "erin");
    expect(await ok(erin, { type: "push.remove", id: gone.id })).toMatchObject({ type: "push.removed", removed: false });
  });

  it("a failing endpoint is retried with backoff, then succeeds once; the user's other subscription gets one push", async () => {
    receiver.script("/flaky/gina", [503, 503]);
    await subscribeThenLeave("gina", { kind: "webhook", url: `${receiver.url}/flaky/gina` });
    await subscribeThenLeave("gina", { kind: "webhook", url: `${receiver.url}/hook/gina` });
    const henry = await client(0, "henry");
    const conv = await openDm(henry, "gina");
    const id = await send(henry, conv, "are you there?");
    await settled(conv, id);
    const flaky = receiver.requests("/flaky/gina");
    expect(flaky).toHaveLength(3); // 503, 503, then 201
    const gaps = [flaky[1]!.at - flaky[0]!.at, flaky[2]!.at - flaky[1]!.at];
    expect(gaps[0]).toBeGreaterThanOrEqual(RETRY_BASE_MS - 50);
    expect(gaps[1]).toBeGreaterThanOrEqual(2 * RETRY_BASE_MS - 50); // doubled
    expect(new Set(flaky.map((r) => r.headers["natter-push-id"])).size).toBe(1);
    // The retries of one request never resend to the subscription that already got it.
    expect(receiver.requests("/hook/gina")).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 4 * RETRY_BASE_MS));
    expect(receiver.requests("/flaky/gina")).toHaveLength(3);
  });

  it("a member removed from a group gets no push for later messages", async () => {
    await subscribeThenLeave("ivan", { kind: "webhook", url: `${receiver.url}/hook/ivan` });
    await subscribeThenLeave("jack", { kind: "webhook", url: `${receiver.url}/hook/jack` });
    const kim = await client(0, "kim");
    const group = ((await ok(kim, { type: "group.create", name: "team", members: ["ivan", "jack"] })).conv as { id: string }).id;
    const id1 = await send(kim, group, "before");
    await settled(group, id1);
    await ok(kim, { type: "group.remove", conv: group, user: "ivan" });
    const id2 = await send(kim, group, "after: not for ivan");
    await settled(group, id2);
    expect(receiver.requests("/hook/ivan").map((r) => json(r.body).id)).toEqual([id1]);
    expect(receiver.requests("/hook/jack").map((r) => json(r.body).id).sort()).toEqual([id1, id2].sort());
    expect(receiver.requests("/hook/ivan").map((r) => r.body.toString())).not.toContain("not for ivan");
  });

  it("refuses targets outside the rules, malformed keys, and more than the allowed subscriptions", async () => {
    const lee = await client(1, "lee");
    const refused = async (frame: Record<string, unknown>, code = "PUSH_TARGET_REFUSED") =>
      expect(await lee.request({ type: "push.register", ...frame })).toMatchObject({ type: "error", code });
    const keys = browserKeys().json;
    await refused({ kind: "webhook", url: "http://hooks.example.com/x" });
    await refused({ kind: "webhook", url: "https://10.0.0.1/x" });
    await refused({ kind: "webhook", url: "https://169.254.169.254/latest/meta-data" });
    await refused({ kind: "webhook", url: "https://localhost/x" });
    await refused({ kind: "webpush", endpoint: "https://[::1]/push", keys });
    await refused({ kind: "webpush", endpoint: `${receiver.url}/wp/lee`, keys: { p256dh: keys.p256dh, auth: "short" } }, "BAD_FRAME");
    await refused({ kind: "webpush", endpoint: `${receiver.url}/wp/lee`, keys: { p256dh: Buffer.alloc(65, 7).toString("base64url"), auth: keys.auth } }, "BAD_FRAME");
    await refused({ kind: "carrier-pigeon", url: "https://example.com" }, "BAD_FRAME");
    const ids = new Set<string>();
    for (let i = 0; i < 4; i++) ids.add((await ok(lee, { type: "push.register", kind: "webhook", url: `${receiver.url}/hook/lee-${i}` })).id as string);
    expect(ids.size).toBe(4);
    await refused({ kind: "webhook", url: `${receiver.url}/hook/lee-4` }, "PUSH_SUBSCRIPTIONS_FULL");
    // The same target again replaces it (same id), full or not.
    expect((await ok(lee, { type: "push.register", kind: "webhook", url: `${receiver.url}/hook/lee-0` })).id).toBe([...ids][0]);
    expect(await ok(lee, { type: "push.remove", id: [...ids][0] })).toMatchObject({ type: "push.removed", removed: true });
    expect(await ok(lee, { type: "push.register", kind: "webhook", url: `${receiver.url}/hook/lee-4` })).toMatchObject({ type: "push.registered" });
  });
});
