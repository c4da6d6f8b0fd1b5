// Phones: FCM (HTTP v1) and APNs (HTTP/2, token-based) pushes through every real part — two
// edges on one NATS, both running the workers (two push workers share the durable consumer and
// the send ledger). Google and Apple are not reachable from here: local HTTP/2 servers written to
// their documented contracts stand in (test/support/mobile-push.ts). They verify the JWTs with
// the public keys made here, check paths, headers and bodies, answer with the providers' error
// bodies, and record every request in order; the tests read behaviour from that record.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Topology } from "../nats/index.ts";
import { useNats } from "./harness/nats.ts";
import { apnsDeviceToken, fcmRegistrationToken, mobileCredentials, startFakeApns, startFakeFcm, type FakeApns, type FakeFcm, type MobileCredentials } from "./support/mobile-push.ts";
import { testConfig, useNode } from "./support/node.ts";
import { pushFlow } from "./support/push-flow.ts";

const RETRY_BASE_MS = 300;
const nats = useNats();
let creds: MobileCredentials;
let fcm: FakeFcm;
let apns: FakeApns;
let serviceAccountFile: string;
// Before the nodes start (their configuration names the stand-ins and the key files).
beforeAll(async () => {
  creds = mobileCredentials();
  fcm = await startFakeFcm({ projectId: creds.projectId, clientEmail: creds.clientEmail, keyId: creds.rsaKeyId, publicKey: creds.rsaPublic });
  apns = await startFakeApns({ keyId: creds.keyId, teamId: creds.teamId, topic: creds.topic, publicKey: creds.ecPublic });
  serviceAccountFile = creds.writeServiceAccount(fcm.tokenUri);
});
afterAll(async () => {
  await fcm?.close();
  await apns?.close();
  creds?.remove();
});

const settings = (id: string) => ({
  edge: { port: 0, id },
  push: {
    allowHosts: ["127.0.0.1"],
    retryBaseMs: RETRY_BASE_MS,
    retryMaxMs: 5000,
    maxAttempts: 6,
    timeoutMs: 3000,
    maxSubscriptionsPerUser: 8,
    fcm: { serviceAccountFile, baseUrl: fcm.url },
    apns: { keyFile: creds.p8File, keyId: creds.keyId, teamId: creds.teamId, topic: creds.topic, baseUrl: apns.url },
  },
});
const edges = [useNode(() => testConfig(nats.url, settings("edge-0"))), useNode(() => testConfig(nats.url, settings("edge-1")))];
const topology: Topology = { conversationShards: 1, inboxShards: 1 };
const { client, ok, subscribeThenLeave, waitOnline, openDm, send, settled, metric, subscriptionState } = pushFlow(edges, topology);

describe("phone pushes (FCM, APNs)", () => {
  it("an offline recipient gets exactly one push per message on FCM and on APNs; online, none", async () => {
    const [fcmToken, apnsToken] = [fcmRegistrationToken(), apnsDeviceToken()];
    const tokenRequestsBefore = fcm.tokenRequests().length;
    const viaFcm = await subscribeThenLeave("olga", { kind: "fcm", token: fcmToken });
    const viaApns = await subscribeThenLeave("olga", { kind: "apns", token: apnsToken.toUpperCase() });
    expect(viaFcm).toMatchObject({ type: "push.registered", kind: "fcm", id: expect.stringMatching(/^ps_/) });
    expect(viaApns).toMatchObject({ type: "push.registered", kind: "apns", id: expect.stringMatching(/^ps_/) });
    expect(viaFcm.secret).toBeUndefined();

    const alice = await client(0, "alice");
    const conv = await openDm(alice, "olga");
    const ids: number[] = [];
    for (const text of ["hello olga 👋", "second", "third"]) {
      ids.push(await send(alice, conv, text));
      await settled(conv, ids.at(-1)!);
    }
    // FCM: one accepted send per message, the notification and the payload as string data.
    const f = fcm.sends(fcmToken);
    expect(f.map((e) => e.status)).toEqual([200, 200, 200]);
    expect(f.map((e) => Number((e.message!.data as { id: string }).id))).toEqual(ids);
    expect(f[0]!.message).toMatchObject({ notification: { title: "alice", body: "hello olga 👋" }, data: { type: "msg", conv, from: "alice" }, android: { priority: "high" } });
    // Access tokens are reused: at most one per worker process for three sends.
    expect(fcm.tokenRequests().length - tokenRequestsBefore).toBeLessThanOrEqual(2);
    expect(fcm.tokenRequests().every((e) => e.status === 200)).toBe(true);
    // APNs: the token in lower case, one accepted request per message with the documented headers.
    const a = apns.sends(apnsToken);
    expect(a.map((e) => e.status)).toEqual([200, 200, 200]);
    expect(a.map((e) => e.payload!.id)).toEqual(ids);
    expect(a[0]!.payload).toMatchObject({ aps: { alert: { title: "alice", body: "hello olga 👋" }, "thread-id": conv }, from: "alice" });
    expect(a[0]!.headers).toMatchObject({ "apns-topic": creds.topic, "apns-push-type": "alert", "apns-priority": "10", "apns-collapse-id": a[0]!.payload!.pushId });
    expect(new Set(a.map((e) => e.jwt)).size).toBeLessThanOrEqual(2); // one provider token per worker process
    expect(await metric("natter_push_sent_total", 'kind="fcm"')).toBeGreaterThanOrEqual(3);
    expect(await metric("natter_push_sent_total", 'kind="apns"')).toBeGreaterThanOrEqual(3);

    // Online: no push; the device has the message.
    const olga = await client(0, "olga", "phone");
    await waitOnline("olga", true);
    const id4 = await send(alice, conv, "you are online");
    await olga.waitFor((m) => m.type === "msg" && m.id === id4);
    await settled(conv, id4);
    expect(fcm.sends(fcmToken)).toHaveLength(3);
    expect(apns.sends(apnsToken)).toHaveLength(3);
  });

  it("a token the provider reports unregistered or invalid is removed and gets nothing more", async () => {
    const tokens = { fcmGone: fcmRegistrationToken(), fcmInvalid: fcmRegistrationToken(), fcmOk: fcmRegistrationToken(), apnsGone: apnsDeviceToken(), apnsBad: apnsDeviceToken() };
    fcm.unregister(tokens.fcmGone); // 404 UNREGISTERED
    fcm.markInvalid(tokens.fcmInvalid); // 400 INVALID_ARGUMENT, not a valid registration token
    apns.unregister(tokens.apnsGone); // 410 Unregistered
    apns.markBad(tokens.apnsBad); // 400 BadDeviceToken
    const ids: Record<string, string> = {};
    for (const [name, token] of Object.entries(tokens)) {
      ids[name] = (await subscribeThenLeave("paul", { kind: name.startsWith("fcm") ? "fcm" : "apns", token })).id as string;
    }
    const removed = { fcm: await metric("natter_push_subscriptions_removed_total", 'kind="fcm"'), apns: await metric("natter_push_subscriptions_removed_total", 'kind="apns"') };
    const quinn = await client(0, "quinn");
    const conv = await openDm(quinn, "paul");
    const id1 = await send(quinn, conv, "one");
    await settled(conv, id1);
    const requests = () => [fcm.sends(tokens.fcmGone), fcm.sends(tokens.fcmInvalid), apns.sends(tokens.apnsGone), apns.sends(tokens.apnsBad)].map((r) => r.map((e) => e.status));
    expect(requests()).toEqual([[404], [400], [410], [400]]);
    for (const name of ["fcmGone", "fcmInvalid", "apnsGone", "apnsBad"]) expect(await subscriptionState("paul", ids[name]!), name).toBe("PURGE");
    expect(await subscriptionState("paul", ids.fcmOk!)).toBe("PUT");
    expect(await metric("natter_push_subscriptions_removed_total", 'kind="fcm"')).toBe(removed.fcm + 2);
    expect(await metric("natter_push_subscriptions_removed_total", 'kind="apns"')).toBe(removed.apns + 2);

    const id2 = await send(quinn, conv, "two");
    await settled(conv, id2);
    expect(requests()).toEqual([[404], [400], [410], [400]]);
    expect(fcm.sends(tokens.fcmOk).map((e) => Number((e.message!.data as { id: string }).id))).toEqual([id1, id2]);
  });

  it("Retry-After is honoured: FCM 429 and APNs 503 are sent again after the time asked for, not the shorter backoff", async () => {
    const [fcmToken, apnsToken] = [fcmRegistrationToken(), apnsDeviceToken()];
    fcm.script(fcmToken, [{ status: 429, retryAfter: "2" }]);
    apns.script(apnsToken, [{ status: 503, retryAfter: "2" }]);
    await subscribeThenLeave("rita", { kind: "fcm", token: fcmToken });
    await subscribeThenLeave("sven", { kind: "apns", token: apnsToken });
    const tom = await client(0, "tom");
    const [toRita, toSven] = [await openDm(tom, "rita"), await openDm(tom, "sven")];
    const [id1, id2] = [await send(tom, toRita, "are you there?"), await send(tom, toSven, "and you?")];
    await settled(toRita, id1);
    await settled(toSven, id2);
    const f = fcm.sends(fcmToken);
    const a = apns.sends(apnsToken);
    expect(f.map((e) => e.status)).toEqual([429, 200]);
    expect(a.map((e) => `${e.status} ${e.reason ?? ""}`.trim())).toEqual(["503 ServiceUnavailable", "200"]);
    // The backoff alone would have sent again after RETRY_BASE_MS (300 ms).
    expect(f[1]!.at - f[0]!.at).toBeGreaterThanOrEqual(2000 - 50);
    expect(a[1]!.at - a[0]!.at).toBeGreaterThanOrEqual(2000 - 50);
    // Both attempts carry the same push id.
    expect((f[1]!.message!.data as { pushId: string }).pushId).toBe((f[0]!.message!.data as { pushId: string }).pushId);
    expect(a[1]!.headers["apns-collapse-id"]).toBe(a[0]!.headers["apns-collapse-id"]);
  });

  it("a refused access token (FCM 401) and an expired provider token (APNs 403) are replaced and the push sent once", async () => {
    const [fcmToken, apnsToken] = [fcmRegistrationToken(), apnsDeviceToken()];
    fcm.script(fcmToken, [{ status: 401 }]); // the access token of that request is revoked
    apns.script(apnsToken, [{ status: 403 }]); // the provider token of that request counts as expired
    await subscribeThenLeave("uma", { kind: "fcm", token: fcmToken });
    await subscribeThenLeave("uma", { kind: "apns", token: apnsToken });
    const vic = await client(0, "vic");
    const conv = await openDm(vic, "uma");
    const id = await send(vic, conv, "hi uma");
    await settled(conv, id);
    const f = fcm.sends(fcmToken);
    expect(f.map((e) => e.status)).toEqual([401, 200]);
    // Between the refused send and the accepted one: a new access token.
    expect(fcm.events.filter((e) => e.seq > f[0]!.seq && e.seq < f[1]!.seq).map((e) => `${e.kind} ${e.status}`)).toContain("token 200");
    const a = apns.sends(apnsToken);
    expect(a.map((e) => `${e.status} ${e.reason ?? ""}`.trim())).toEqual(["403 ExpiredProviderToken", "200"]);
    expect(a[1]!.jwt).not.toBe(a[0]!.jwt);
    expect(a[1]!.claims!.iat).toBeGreaterThanOrEqual(a[0]!.claims!.iat as number);
  });

  it("refuses malformed tokens; the same token again is the same subscription", async () => {
    const wes = await client(1, "wes");
    const refused = async (frame: Record<string, unknown>) => expect(await wes.request({ type: "push.register", ...frame })).toMatchObject({ type: "error", code: "BAD_FRAME" });
    await refused({ kind: "apns", token: "not-hex-at-all" });
    await refused({ kind: "apns", token: "ab".repeat(16) });
    await refused({ kind: "fcm", token: "has a space in it, which no token has" });
    await refused({ kind: "fcm" });
    await refused({ kind: "apns", token: "ab".repeat(32), topic: "com.other.app" });
    const token = apnsDeviceToken();
    const first = await ok(wes, { type: "push.register", kind: "apns", token });
    expect((await ok(wes, { type: "push.register", kind: "apns", token: token.toUpperCase() })).id).toBe(first.id);
  });
});
