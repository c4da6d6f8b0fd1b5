// FCM HTTP v1: the service-account assertion, the reading of FCM's answers, the message, and the
// sender against a local HTTP/2 stand-in for Google (test/support/mobile-push.ts), written to
// the documented contract. No test reaches Google.
import { generateKeyPairSync } from "node:crypto";
import { readFileSync } from "node:fs";
import { decodeProtectedHeader, jwtVerify } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fcmRegistrationToken, mobileCredentials, startFakeFcm, type FakeFcm, type MobileCredentials } from "../test/support/mobile-push.ts";
import { NatterError } from "../core/errors.ts";
import { AccessTokens, FCM_SCOPE, fcmAnswer, fcmMessage, FcmSender, parseServiceAccount, serviceAccountAssertion, type ServiceAccount } from "./fcm.ts";
import { Http2Client } from "./h2.ts";
import type { PushMessage } from "./senders.ts";
import type { FcmSubscription } from "./subscriptions.ts";

const message: PushMessage = {
  pushId: "p".repeat(32),
  notification: { type: "msg", title: "alice", body: "hello bob", conv: "dm_ab", id: 7, from: "alice", ts: 1_700_000_000_000 },
  ttlSec: 3600,
};
const sub = (token: string): FcmSubscription => ({ v: 1, kind: "fcm", token, device: "phone", at: 0, id: "ps_x", user: "bob", revision: 1 });
const body = (v: unknown) => Buffer.from(JSON.stringify(v));
const fcmError = (code: number, status: string, message: string, errorCode?: string, extra: object[] = []) =>
  body({ error: { code, status, message, details: [...(errorCode ? [{ "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", errorCode }] : []), ...extra] } });

let creds: MobileCredentials;
let fcm: FakeFcm;
let account: ServiceAccount;
const http = new Http2Client();

beforeAll(async () => {
  creds = mobileCredentials();
  fcm = await startFakeFcm({ projectId: creds.projectId, clientEmail: creds.clientEmail, keyId: creds.rsaKeyId, publicKey: creds.rsaPublic, tokenLifetimeSec: 400 });
  const file = creds.writeServiceAccount(fcm.tokenUri);
  account = parseServiceAccount(readFileSync(file, "utf8"), file);
});
afterAll(async () => {
  http.close();
  await fcm?.close();
  creds?.remove();
});

describe("the service-account assertion", () => {
  it("is an RS256 JWT with the key id, for the FCM scope, addressed to the token endpoint, living one hour", async () => {
    const now = Date.now();
    const jwt = serviceAccountAssertion(account, now);
    expect(decodeProtectedHeader(jwt)).toEqual({ alg: "RS256", typ: "JWT", kid: creds.rsaKeyId });
    const { payload } = await jwtVerify(jwt, creds.rsaPublic, { algorithms: ["RS256"] });
    const iat = Math.floor(now / 1000);
    expect(payload).toEqual({ iss: creds.clientEmail, scope: FCM_SCOPE, aud: fcm.tokenUri, iat, exp: iat + 3600 });
  });

  it("key files that are not a service account's are refused, naming the file", () => {
    const refused = (text: string) => {
      try {
        parseServiceAccount(text, "sa.json");
      } catch (err) {
        expect(err).toBeInstanceOf(NatterError);
        expect((err as NatterError).code).toBe("CONFIG_INVALID");
        return (err as NatterError).message;
      }
      throw new Error("expected CONFIG_INVALID");
    };
    expect(refused("not json")).toContain("sa.json is not JSON");
    expect(refused(JSON.stringify({ type: "authorized_user" }))).toMatch(/not a Google service account key file \(check .*type/);
    const ec = generateKeyPairSync("ec", { namedCurve: "prime256v1" }).privateKey.export({ type: "pkcs8", format: "pem" }).toString();
    const withKey = (private_key: string) => JSON.stringify({ type: "service_account", project_id: "p", private_key_id: "k", private_key, client_email: "e" });
    expect(refused(withKey(ec))).toContain("not an RSA key");
    expect(refused(withKey("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----"))).toContain("not a PEM private key");
    // Without token_uri: Google's.
    const { private_key } = JSON.parse(readFileSync(creds.writeServiceAccount(fcm.tokenUri), "utf8")) as { private_key: string };
    expect(parseServiceAccount(withKey(private_key), "x").tokenUri).toBe("https://oauth2.googleapis.com/token");
  });
});

describe("FCM's answers", () => {
  it("200 is sent; 404 UNREGISTERED and 400 INVALID_ARGUMENT about the token remove the subscription", () => {
    expect(fcmAnswer({ status: 200, body: body({ name: "projects/p/messages/1" }) })).toEqual({ kind: "sent", status: 200 });
    expect(fcmAnswer({ status: 404, body: fcmError(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED") })).toMatchObject({ kind: "gone", status: 404 });
    expect(fcmAnswer({ status: 400, body: fcmError(400, "INVALID_ARGUMENT", "The registration token is not a valid FCM registration token", "INVALID_ARGUMENT") })).toMatchObject({ kind: "gone", status: 400 });
    const tokenViolation = [{ "@type": "type.googleapis.com/google.rpc.BadRequest", fieldViolations: [{ field: "message.token", description: "Invalid registration token" }] }];
    expect(fcmAnswer({ status: 400, body: fcmError(400, "INVALID_ARGUMENT", "Request contains an invalid argument.", undefined, tokenViolation) }).kind).toBe("gone");
  });

  it("a 404 without UNREGISTERED (a wrong project) and other invalid arguments are refused, never removing the subscription", () => {
    expect(fcmAnswer({ status: 404, body: fcmError(404, "NOT_FOUND", "Requested entity was not found.") }).kind).toBe("rejected");
    const dataViolation = [{ "@type": "type.googleapis.com/google.rpc.BadRequest", fieldViolations: [{ field: "message.data[0].value", description: "Invalid value" }] }];
    expect(fcmAnswer({ status: 400, body: fcmError(400, "INVALID_ARGUMENT", "Invalid value at 'message.data[0].value' (TYPE_STRING), 12", undefined, dataViolation) }).kind).toBe("rejected");
    expect(fcmAnswer({ status: 403, body: fcmError(403, "PERMISSION_DENIED", "SenderId mismatch", "SENDER_ID_MISMATCH") })).toMatchObject({ kind: "rejected", reason: expect.stringContaining("SENDER_ID_MISMATCH") });
    expect(fcmAnswer({ status: 400, body: Buffer.from("<html>") }).kind).toBe("rejected");
  });

  it("401 asks for a new access token, unless it is the APNs/Web Push credential behind FCM (THIRD_PARTY_AUTH_ERROR)", () => {
    expect(fcmAnswer({ status: 401, body: fcmError(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.") })).toEqual({ kind: "unauthenticated" });
    expect(fcmAnswer({ status: 401, body: fcmError(401, "UNAUTHENTICATED", "Auth error from APNS or Web Push Service", "THIRD_PARTY_AUTH_ERROR") }).kind).toBe("rejected");
  });

  it("429, 500 and 503 are retried, with the Retry-After FCM gave (a 429 without one: after a minute, as FCM asks)", () => {
    const quota = fcmError(429, "RESOURCE_EXHAUSTED", "Quota exceeded", "QUOTA_EXCEEDED");
    expect(fcmAnswer({ status: 429, body: quota, retryAfterMs: 30_000 })).toEqual({ kind: "retry", reason: "FCM 429 QUOTA_EXCEEDED", afterMs: 30_000 });
    expect(fcmAnswer({ status: 429, body: quota })).toEqual({ kind: "retry", reason: "FCM 429 QUOTA_EXCEEDED", afterMs: 60_000 });
    expect(fcmAnswer({ status: 503, body: fcmError(503, "UNAVAILABLE", "The service is currently unavailable.", "UNAVAILABLE") })).toMatchObject({ kind: "retry", afterMs: undefined });
    expect(fcmAnswer({ status: 500, body: Buffer.alloc(0) }).kind).toBe("retry");
  });
});

describe("the message", () => {
  it("carries the notification, the payload as string data, and the push's TTL for each platform", () => {
    const now = 1_700_000_000_000;
    const m = fcmMessage("tok", message, now).message;
    expect(m).toMatchObject({ token: "tok", notification: { title: "alice", body: "hello bob" }, android: { priority: "high", ttl: "3600s" } });
    expect(m.data).toEqual({ v: "1", pushId: message.pushId, type: "msg", title: "alice", body: "hello bob", conv: "dm_ab", id: "7", from: "alice", ts: String(message.notification.ts) });
    expect(m.apns).toEqual({ headers: { "apns-expiration": String(now / 1000 + 3600), "apns-collapse-id": message.pushId } });
    expect(fcmMessage("tok", { ...message, ttlSec: 0 }, now).message.apns).toMatchObject({ headers: { "apns-expiration": "0" } });
  });
});

describe("FcmSender against a local stand-in for Google", () => {
  const sender = () => new FcmSender(http, { account, baseUrl: fcm.url, timeoutMs: 5000 });

  it("sends with an access token obtained once and reused", async () => {
    const s = sender();
    const [a, b] = [fcmRegistrationToken(), fcmRegistrationToken()];
    const before = fcm.tokenRequests().length;
    expect(await s.send(sub(a), message)).toEqual({ kind: "sent", status: 200 });
    expect(await s.send(sub(b), message)).toEqual({ kind: "sent", status: 200 });
    expect(fcm.tokenRequests().slice(before).map((e) => e.status)).toEqual([200]);
    expect(fcm.sends(a)).toHaveLength(1);
    expect(fcm.sends(a)[0]!.message).toMatchObject({ token: a, notification: { title: "alice" } });
  });

  it("concurrent sends wait for one token request", async () => {
    const s = sender();
    const before = fcm.tokenRequests().length;
    const outcomes = await Promise.all(Array.from({ length: 8 }, () => s.send(sub(fcmRegistrationToken()), message)));
    expect(outcomes.every((o) => o.kind === "sent")).toBe(true);
    expect(fcm.tokenRequests().length - before).toBe(1);
  });

  it("keeps an access token until shortly before it expires (half its life here: 400 s)", async () => {
    let now = Date.now();
    const tokens = new AccessTokens(account, http, () => now);
    const first = await tokens.get(5000);
    now += 199_000;
    expect(await tokens.get(5000)).toBe(first);
    now += 2000;
    const second = await tokens.get(5000);
    expect(second).not.toBe(first);
    expect(tokens.fetched).toBe(2);
  });

  it("a refused access token (401) is replaced once and the push sent again", async () => {
    const s = sender();
    const token = fcmRegistrationToken();
    await s.send(sub(fcmRegistrationToken()), message); // an access token in the cache
    fcm.revokeAccessTokens();
    const from = fcm.events.length;
    expect(await s.send(sub(token), message)).toEqual({ kind: "sent", status: 200 });
    expect(fcm.events.slice(from).map((e) => `${e.kind} ${e.status}`)).toEqual(["send 401", "token 200", "send 200"]);
  });

  it("maps the stand-in's answers: UNREGISTERED and an invalid token are gone, QUOTA_EXCEEDED retried after Retry-After", async () => {
    const s = sender();
    const [gone, invalid, busy] = [fcmRegistrationToken(), fcmRegistrationToken(), fcmRegistrationToken()];
    fcm.unregister(gone);
    fcm.markInvalid(invalid);
    fcm.script(busy, [{ status: 429, retryAfter: "7" }]);
    expect(await s.send(sub(gone), message)).toMatchObject({ kind: "gone", status: 404, reason: "FCM 404 UNREGISTERED" });
    expect(await s.send(sub(invalid), message)).toMatchObject({ kind: "gone", status: 400 });
    expect(await s.send(sub(busy), message)).toEqual({ kind: "retry", reason: "FCM 429 QUOTA_EXCEEDED", afterMs: 7000 });
    expect(await s.send(sub(busy), message)).toEqual({ kind: "sent", status: 200 });
  });

  it("a token endpoint that refuses the assertion (wrong key) makes the push wait and retry, with Google's reason", async () => {
    const other = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey;
    const s = new FcmSender(http, { account: { ...account, key: other }, baseUrl: fcm.url, timeoutMs: 5000 });
    const outcome = await s.send(sub(fcmRegistrationToken()), message);
    expect(outcome).toMatchObject({ kind: "retry", reason: expect.stringContaining("invalid_grant") });
  });

  it("a service that does not answer is retried (network errors, deadline)", async () => {
    const s = new FcmSender(http, { account, baseUrl: "http://127.0.0.1:9", timeoutMs: 2000 });
    // The token endpoint works; the send goes to a closed port.
    expect(await s.send(sub(fcmRegistrationToken()), message)).toMatchObject({ kind: "retry", reason: expect.stringMatching(/^FCM: /) });
  });
});
