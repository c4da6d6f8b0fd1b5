// APNs: the provider token and its lifetime, the reading of Apple's answers, the payload, and the
// sender against a local HTTP/2 stand-in for Apple (test/support/mobile-push.ts), written to the
// documented contract. No test reaches Apple.
import { generateKeyPairSync } from "node:crypto";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { readFileSync } from "node:fs";
import { decodeProtectedHeader, jwtVerify } from "jose";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { apnsDeviceToken, mobileCredentials, startFakeApns, type FakeApns, type MobileCredentials } from "../test/support/mobile-push.ts";
import { NatterError } from "../core/errors.ts";
import { apnsAnswer, apnsPayload, ApnsSender, parseApnsKey, PROVIDER_TOKEN_REUSE_MS, ProviderTokens, type ApnsCredentials } from "./apns.ts";
import { Http2Client } from "./h2.ts";
import type { PushMessage } from "./senders.ts";
import type { ApnsSubscription } from "./subscriptions.ts";

const message: PushMessage = {
  pushId: "q".repeat(32),
  notification: { type: "msg", title: "alice", body: "hello bob", conv: "dm_ab", id: 7, from: "alice", ts: 1_700_000_000_000 },
  ttlSec: 3600,
};
const sub = (token: string): ApnsSubscription => ({ v: 1, kind: "apns", token, device: "iphone", at: 0, id: "ps_y", user: "bob", revision: 1 });
const reason = (r: string, extra: object = {}) => Buffer.from(JSON.stringify({ reason: r, ...extra }));

let creds: MobileCredentials;
let apns: FakeApns;
let credentials: ApnsCredentials;
const http = new Http2Client();

beforeAll(async () => {
  creds = mobileCredentials();
  apns = await startFakeApns({ keyId: creds.keyId, teamId: creds.teamId, topic: creds.topic, publicKey: creds.ecPublic });
  credentials = { key: parseApnsKey(readFileSync(creds.p8File, "utf8"), creds.p8File), keyId: creds.keyId, teamId: creds.teamId };
});
afterAll(async () => {
  http.close();
  await apns?.close();
  creds?.remove();
});

describe("the provider token", () => {
  it("is an ES256 JWT (JOSE signature) with the key id, issued by the team, with iat", async () => {
    const now = Date.now();
    const jwt = new ProviderTokens(credentials, () => now).current();
    expect(decodeProtectedHeader(jwt)).toEqual({ alg: "ES256", kid: creds.keyId });
    const { payload } = await jwtVerify(jwt, creds.ecPublic, { algorithms: ["ES256"] });
    expect(payload).toEqual({ iss: creds.teamId, iat: Math.floor(now / 1000) });
  });

  it("is reused for 50 minutes, then replaced (Apple: not more often than every 20, not less than every 60)", () => {
    let now = Date.now();
    const tokens = new ProviderTokens(credentials, () => now);
    const first = tokens.current();
    now += PROVIDER_TOKEN_REUSE_MS - 1;
    expect(tokens.current()).toBe(first);
    now += 1;
    const second = tokens.current();
    expect(second).not.toBe(first);
    expect(tokens.made).toBe(2);
    expect(PROVIDER_TOKEN_REUSE_MS).toBeGreaterThanOrEqual(20 * 60_000);
    expect(PROVIDER_TOKEN_REUSE_MS).toBeLessThan(60 * 60_000);
  });

  it("after ExpiredProviderToken: one new token for all requests that saw the old one, at most one forced renewal a minute", () => {
    let now = Date.now();
    const tokens = new ProviderTokens(credentials, () => now);
    const old = tokens.current();
    expect(tokens.renew(old)).toBe(true);
    const renewed = tokens.current();
    expect(renewed).not.toBe(old);
    expect(tokens.renew(old)).toBe(true); // another request with the old token: the new one is used
    expect(tokens.current()).toBe(renewed);
    expect(tokens.renew(renewed)).toBe(false); // expired again within a minute: Apple's clock disagrees; wait
    expect(tokens.current()).toBe(renewed);
    now += 60_000;
    expect(tokens.renew(renewed)).toBe(true);
    expect(tokens.made).toBe(3);
  });

  it("keys that are not P-256 are refused, naming the file", () => {
    const pem = (k: ReturnType<typeof generateKeyPairSync>["privateKey"]) => k.export({ type: "pkcs8", format: "pem" }).toString();
    const refused = (text: string) => {
      try {
        parseApnsKey(text, "AuthKey.p8");
      } catch (err) {
        expect(err).toBeInstanceOf(NatterError);
        expect((err as NatterError).code).toBe("CONFIG_INVALID");
        return (err as NatterError).message;
      }
      throw new Error("expected CONFIG_INVALID");
    };
    expect(refused(pem(generateKeyPairSync("ec", { namedCurve: "secp384r1" }).privateKey))).toContain("AuthKey.p8 is not a P-256");
    expect(refused("garbage")).toContain("AuthKey.p8 is not a PEM private key");
  });
});

describe("Apple's answers", () => {
  it("200 is sent; 410 (Unregistered, ExpiredToken) and 400 BadDeviceToken remove the subscription", () => {
    expect(apnsAnswer({ status: 200, body: Buffer.alloc(0) })).toEqual({ kind: "sent", status: 200 });
    expect(apnsAnswer({ status: 410, body: reason("Unregistered", { timestamp: 1_700_000_000_000 }) })).toEqual({ kind: "gone", status: 410, reason: "APNs 410 Unregistered" });
    expect(apnsAnswer({ status: 410, body: reason("ExpiredToken") }).kind).toBe("gone");
    expect(apnsAnswer({ status: 400, body: reason("BadDeviceToken") })).toEqual({ kind: "gone", status: 400, reason: "APNs 400 BadDeviceToken" });
  });

  it("403 ExpiredProviderToken asks for a new provider token; other refusals are not retried and remove nothing", () => {
    expect(apnsAnswer({ status: 403, body: reason("ExpiredProviderToken") })).toEqual({ kind: "expired-token" });
    for (const [status, r] of [
      [403, "InvalidProviderToken"],
      [400, "DeviceTokenNotForTopic"],
      [400, "BadTopic"],
      [404, "BadPath"],
      [413, "PayloadTooLarge"],
    ] as const) {
      expect(apnsAnswer({ status, body: reason(r) })).toEqual({ kind: "rejected", reason: `APNs ${status} ${r}` });
    }
  });

  it("429, 500 and 503 are retried, with a Retry-After when Apple sends one", () => {
    expect(apnsAnswer({ status: 429, body: reason("TooManyRequests") })).toEqual({ kind: "retry", reason: "APNs 429 TooManyRequests", afterMs: undefined });
    expect(apnsAnswer({ status: 503, body: reason("ServiceUnavailable"), retryAfterMs: 5000 })).toEqual({ kind: "retry", reason: "APNs 503 ServiceUnavailable", afterMs: 5000 });
    expect(apnsAnswer({ status: 500, body: Buffer.from("not json") }).kind).toBe("retry");
  });
});

describe("the payload", () => {
  it("is Apple's aps alert (threaded by conversation) with natter's payload beside it", () => {
    expect(JSON.parse(apnsPayload(message))).toEqual({
      aps: { alert: { title: "alice", body: "hello bob" }, sound: "default", "thread-id": "dm_ab" },
      v: 1,
      pushId: message.pushId,
      ...message.notification,
    });
    const generic = JSON.parse(apnsPayload({ ...message, notification: { type: "msg", title: "New message", body: "You have a new message", ts: 1 } })) as { aps: object };
    expect(generic.aps).toEqual({ alert: { title: "New message", body: "You have a new message" }, sound: "default" });
  });
});

describe("ApnsSender against a local stand-in for Apple", () => {
  const sender = () => new ApnsSender(http, { credentials, topic: creds.topic, baseUrl: apns.url, timeoutMs: 5000 });

  it("sends one request with the documented headers, reusing one provider token", async () => {
    const s = sender();
    const [a, b] = [apnsDeviceToken(), apnsDeviceToken()];
    const before = Math.floor(Date.now() / 1000);
    expect(await s.send(sub(a), message)).toEqual({ kind: "sent", status: 200 });
    expect(await s.send(sub(b), message)).toEqual({ kind: "sent", status: 200 });
    const [ra, rb] = [apns.sends(a), apns.sends(b)];
    expect(ra).toHaveLength(1);
    expect(ra[0]!.headers).toMatchObject({ "apns-topic": creds.topic, "apns-push-type": "alert", "apns-priority": "10", "apns-collapse-id": message.pushId });
    expect(Number(ra[0]!.headers["apns-expiration"])).toBeGreaterThanOrEqual(before + 3600);
    expect(ra[0]!.payload).toMatchObject({ aps: { alert: { title: "alice", body: "hello bob" } }, pushId: message.pushId });
    expect(rb[0]!.jwt).toBe(ra[0]!.jwt);
    expect(s.tokens.made).toBe(1);
  });

  it("Unregistered and BadDeviceToken are gone; 503 with Retry-After is retried after it", async () => {
    const s = sender();
    const [gone, bad, busy] = [apnsDeviceToken(), apnsDeviceToken(), apnsDeviceToken()];
    apns.unregister(gone);
    apns.markBad(bad);
    apns.script(busy, [{ status: 503, retryAfter: "3" }]);
    expect(await s.send(sub(gone), message)).toEqual({ kind: "gone", status: 410, reason: "APNs 410 Unregistered" });
    expect(await s.send(sub(bad), message)).toEqual({ kind: "gone", status: 400, reason: "APNs 400 BadDeviceToken" });
    expect(await s.send(sub(busy), message)).toEqual({ kind: "retry", reason: "APNs 503 ServiceUnavailable", afterMs: 3000 });
    expect(await s.send(sub(busy), message)).toEqual({ kind: "sent", status: 200 });
  });

  it("ExpiredProviderToken: a new provider token, and the push sent again with it", async () => {
    const s = sender();
    const token = apnsDeviceToken();
    await s.send(sub(apnsDeviceToken()), message);
    apns.expireSeenProviderTokens();
    expect(await s.send(sub(token), message)).toEqual({ kind: "sent", status: 200 });
    const seen = apns.sends(token);
    expect(seen.map((e) => `${e.status} ${e.reason ?? ""}`.trim())).toEqual(["403 ExpiredProviderToken", "200"]);
    expect(seen[1]!.jwt).not.toBe(seen[0]!.jwt);
  });

  it("a wrong topic or a key Apple does not know is refused, not retried", async () => {
    const wrongTopic = new ApnsSender(http, { credentials, topic: "com.example.other", baseUrl: apns.url, timeoutMs: 5000 });
    expect(await wrongTopic.send(sub(apnsDeviceToken()), message)).toEqual({ kind: "rejected", reason: "APNs 400 DeviceTokenNotForTopic" });
    const otherKey = generateKeyPairSync("ec", { namedCurve: "prime256v1" }).privateKey;
    const wrongKey = new ApnsSender(http, { credentials: { ...credentials, key: otherKey }, topic: creds.topic, baseUrl: apns.url, timeoutMs: 5000 });
    expect(await wrongKey.send(sub(apnsDeviceToken()), message)).toEqual({ kind: "rejected", reason: "APNs 403 InvalidProviderToken" });
  });

  it("a server that does not answer within the deadline is retried", async () => {
    const silent = http2.createServer();
    silent.on("stream", () => undefined); // never answers
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    onTestFinished(() => new Promise<void>((resolve) => silent.close(() => resolve())));
    const client = new Http2Client();
    onTestFinished(() => client.close());
    const s = new ApnsSender(client, { credentials, topic: creds.topic, baseUrl: `http://127.0.0.1:${(silent.address() as AddressInfo).port}`, timeoutMs: 300 });
    expect(await s.send(sub(apnsDeviceToken()), message)).toEqual({ kind: "retry", reason: "APNs: ETIMEDOUT" });
  });
});
