// Stand-ins for Google's and Apple's push services. No machine here reaches either, so these are
// local HTTP/2 servers (h2c) written to the providers' documented request/response contracts:
//   - Google: the OAuth 2.0 token endpoint for service accounts (JWT bearer grant, RFC 7523;
//     developers.google.com/identity/protocols/oauth2/service-account) and FCM HTTP v1
//     `projects.messages.send` with its error codes (firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode);
//   - Apple: the APNs provider API (developer.apple.com: "Sending notification requests to APNs",
//     "Establishing a token-based connection to APNs", "Handling notification responses from APNs").
// They check what a real service would refuse (signatures and claims of the JWTs with the public
// keys made here, paths, headers, bodies), answer with the providers' status codes and error
// bodies, and record every request in order, so tests prove behaviour by the sequence seen.
// Apple decides a provider token is expired by its `iat` (older than an hour); a test cannot wait
// an hour, so `expireSeenProviderTokens()` makes the fake treat the tokens seen so far as expired.
// Long (≈420 lines): two providers' contracts, each with its token endpoint, JWT checks and error bodies.
import { generateKeyPairSync, type KeyObject, randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { decodeProtectedHeader, jwtVerify } from "jose";

/** Credentials as the providers hand them out, written to files as an operator would keep them. */
export interface MobileCredentials {
  dir: string;
  projectId: string;
  clientEmail: string;
  /** private_key_id of the service account key. */
  rsaKeyId: string;
  rsaPublic: KeyObject;
  /** Writes the service account key file (JSON) with this token_uri; returns its path. */
  writeServiceAccount(tokenUri: string): string;
  /** The APNs key (.p8). */
  p8File: string;
  ecPublic: KeyObject;
  keyId: string;
  teamId: string;
  topic: string;
  remove(): void;
}

export function mobileCredentials(): MobileCredentials {
  const dir = mkdtempSync(path.join(os.tmpdir(), "natter-mobile-"));
  const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const projectId = "natter-test";
  const clientEmail = "natter-push@natter-test.iam.gserviceaccount.com";
  const rsaKeyId = randomBytes(20).toString("hex");
  const writeServiceAccount = (tokenUri: string): string => {
    const file = path.join(dir, "service-account.json");
    const account = {
      type: "service_account",
      project_id: projectId,
      private_key_id: rsaKeyId,
      private_key: rsa.privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
      client_email: clientEmail,
      client_id: "100000000000000000000",
      auth_uri: "https://accounts.google.com/o/oauth2/auth",
      token_uri: tokenUri,
    };
    writeFileSync(file, JSON.stringify(account, null, 2), { mode: 0o600 });
    return file;
  };
  const ec = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const p8File = path.join(dir, "AuthKey_KEY1234567.p8");
  writeFileSync(p8File, ec.privateKey.export({ type: "pkcs8", format: "pem" }).toString(), { mode: 0o600 });
  return {
    dir,
    projectId,
    clientEmail,
    rsaKeyId,
    rsaPublic: rsa.publicKey,
    writeServiceAccount,
    p8File,
    ecPublic: ec.publicKey,
    keyId: "KEY1234567",
    teamId: "TEAM123456",
    topic: "com.example.natter",
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

interface Received {
  method: string;
  path: string;
  headers: http2.IncomingHttpHeaders;
  body: Buffer;
}

async function listen(handle: (r: Received) => Promise<{ status: number; headers?: Record<string, string>; body?: unknown }>): Promise<{ url: string; close(): Promise<void> }> {
  const server = http2.createServer();
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (s) => {
    sessions.add(s);
    s.on("close", () => sessions.delete(s));
  });
  server.on("stream", (stream, headers) => {
    const chunks: Buffer[] = [];
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", () => {
      const r: Received = { method: String(headers[":method"]), path: String(headers[":path"]), headers, body: Buffer.concat(chunks) };
      handle(r).then(
        (a) => {
          if (stream.destroyed) return;
          const body = a.body === undefined ? undefined : typeof a.body === "string" ? a.body : JSON.stringify(a.body);
          stream.respond({ ":status": a.status, ...(body !== undefined && typeof a.body !== "string" ? { "content-type": "application/json; charset=UTF-8" } : {}), ...a.headers });
          stream.end(body);
        },
        (err: unknown) => {
          if (!stream.destroyed) stream.respond({ ":status": 500 });
          stream.end(String(err));
        },
      );
    });
    stream.on("error", () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sessions) s.destroy();
        server.close(() => resolve());
      }),
  };
}

const nowSec = () => Math.floor(Date.now() / 1000);

// ── FCM ──────────────────────────────────────────────────────────────────────────────────────

const FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging";
const FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError";

interface FcmEvent {
  /** Order in which the fake saw requests (token and send requests together). */
  seq: number;
  at: number;
  kind: "token" | "send";
  status: number;
  /** send: the registration token of the message; token: the access token given (if any). */
  token?: string | undefined;
  accessToken?: string | undefined;
  message?: Record<string, unknown> | undefined;
  /** The assertion's claims (token requests). */
  claims?: Record<string, unknown> | undefined;
}

interface FcmAnswerScript {
  /** 401: the access token of that request is revoked at that moment (Google may revoke one early). */
  status: 401 | 403 | 429 | 500 | 503;
  retryAfter?: string;
}

function fcmError(code: number, status: string, message: string, errorCode?: string, extra: object[] = []): object {
  const details = [...(errorCode ? [{ "@type": FCM_ERROR, errorCode }] : []), ...extra];
  return { error: { code, message, status, ...(details.length > 0 ? { details } : {}) } };
}

const UNAUTHENTICATED = fcmError(401, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.");
const FCM_SCRIPTED: Record<FcmAnswerScript["status"], object> = {
  401: UNAUTHENTICATED,
  429: fcmError(429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Messages' of service 'fcm.googleapis.com'.", "QUOTA_EXCEEDED"),
  500: fcmError(500, "INTERNAL", "Internal error encountered.", "INTERNAL"),
  503: fcmError(503, "UNAVAILABLE", "The service is currently unavailable.", "UNAVAILABLE"),
  403: fcmError(403, "PERMISSION_DENIED", "SenderId mismatch", "SENDER_ID_MISMATCH"),
};

export interface FakeFcm {
  readonly url: string;
  readonly tokenUri: string;
  readonly events: FcmEvent[];
  /** Send requests for registration token `token`, in order. */
  sends(token: string): FcmEvent[];
  tokenRequests(): FcmEvent[];
  /** The app instance of `token` unregistered: 404 UNREGISTERED from now on. */
  unregister(token: string): void;
  /** `token` is not a valid registration token: 400 INVALID_ARGUMENT. */
  markInvalid(token: string): void;
  /** Answer the next sends to `token` like this, in order (then normally). */
  script(token: string, answers: FcmAnswerScript[]): void;
  /** Every access token given so far is revoked (401 UNAUTHENTICATED on use). */
  revokeAccessTokens(): void;
  close(): Promise<void>;
}

export interface FakeFcmOptions {
  projectId: string;
  clientEmail: string;
  keyId: string;
  /** The service account's public key (Google checks the assertion's signature with it). */
  publicKey: KeyObject;
  /** expires_in of access tokens (Google: 3599). */
  tokenLifetimeSec?: number;
}

export async function startFakeFcm(opts: FakeFcmOptions): Promise<FakeFcm> {
  const events: FcmEvent[] = [];
  const accessTokens = new Map<string, number>(); // token → expiry (ms)
  const unregistered = new Set<string>();
  const invalid = new Set<string>();
  const scripts = new Map<string, FcmAnswerScript[]>();
  let tokenUri = "";
  const record = (e: Omit<FcmEvent, "seq" | "at">) => events.push({ ...e, seq: events.length + 1, at: Date.now() });

  const tokenEndpoint = async (r: Received) => {
    const refuse = (error: string, description: string, claims?: Record<string, unknown>) => {
      record({ kind: "token", status: 400, claims });
      return { status: 400, body: { error, error_description: description } };
    };
    if (r.method !== "POST") return { status: 405 };
    if (!String(r.headers["content-type"]).startsWith("application/x-www-form-urlencoded")) return refuse("invalid_request", "Bad Request");
    const form = new URLSearchParams(r.body.toString("utf8"));
    if (form.get("grant_type") !== "urn:ietf:params:oauth:grant-type:jwt-bearer") return refuse("unsupported_grant_type", `Invalid grant_type: ${form.get("grant_type") ?? ""}`);
    const assertion = form.get("assertion") ?? "";
    let claims: Record<string, unknown>;
    try {
      const header = decodeProtectedHeader(assertion);
      if (header.alg !== "RS256" || header.kid !== opts.keyId) return refuse("invalid_grant", "Invalid JWT Signature.");
      claims = (await jwtVerify(assertion, opts.publicKey, { algorithms: ["RS256"] })).payload as Record<string, unknown>;
    } catch {
      return refuse("invalid_grant", "Invalid JWT Signature.");
    }
    if (claims.iss !== opts.clientEmail) return refuse("invalid_grant", "Invalid grant: account not found", claims);
    if (claims.aud !== tokenUri) return refuse("invalid_grant", "Invalid JWT: Failed audience check.", claims);
    const iat = Number(claims.iat);
    const exp = Number(claims.exp);
    if (!(Math.abs(iat - nowSec()) <= 300 && exp > iat && exp - iat <= 3600)) {
      return refuse("invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.", claims);
    }
    if (!String(claims.scope ?? "").split(" ").includes(FCM_SCOPE)) return refuse("invalid_scope", "Invalid OAuth scope or ID token audience provided.", claims);
    const lifetime = opts.tokenLifetimeSec ?? 3599;
    const accessToken = `ya29.${randomBytes(24).toString("base64url")}`;
    accessTokens.set(accessToken, Date.now() + lifetime * 1000);
    record({ kind: "token", status: 200, accessToken, claims });
    return { status: 200, body: { access_token: accessToken, expires_in: lifetime, token_type: "Bearer" } };
  };

  const send = async (r: Received) => {
    let message: Record<string, unknown> | undefined;
    const answer = (status: number, body: object, headers?: Record<string, string>) => {
      record({ kind: "send", status, token: typeof message?.token === "string" ? message.token : undefined, message });
      return { status, body, headers };
    };
    const m = /^\/v1\/projects\/([^/]+)\/messages:send$/.exec(r.path);
    if (r.method !== "POST" || !m) return answer(404, fcmError(404, "NOT_FOUND", "Requested entity was not found."));
    const auth = /^Bearer (\S+)$/.exec(String(r.headers.authorization ?? ""));
    const expiry = auth ? accessTokens.get(auth[1]!) : undefined;
    if (expiry === undefined || expiry <= Date.now()) return answer(401, UNAUTHENTICATED);
    if (decodeURIComponent(m[1]!) !== opts.projectId) return answer(403, fcmError(403, "PERMISSION_DENIED", "Permission 'cloudmessaging.messages.create' denied on resource."));
    if (!String(r.headers["content-type"]).startsWith("application/json")) return answer(400, fcmError(400, "INVALID_ARGUMENT", "Invalid JSON payload received."));
    try {
      message = (JSON.parse(r.body.toString("utf8")) as { message?: Record<string, unknown> }).message;
    } catch {
      return answer(400, fcmError(400, "INVALID_ARGUMENT", "Invalid JSON payload received."));
    }
    if (!message || typeof message.token !== "string") return answer(400, fcmError(400, "INVALID_ARGUMENT", "Recipient of the message is not set.", "INVALID_ARGUMENT"));
    // data: a map of strings (a number is refused, as the API does).
    const data = (message.data ?? {}) as Record<string, unknown>;
    const bad = Object.entries(data).findIndex(([, v]) => typeof v !== "string");
    if (bad >= 0) {
      const field = `message.data[${bad}].value`;
      return answer(400, fcmError(400, "INVALID_ARGUMENT", `Invalid value at '${field}' (TYPE_STRING)`, undefined, [{ "@type": "type.googleapis.com/google.rpc.BadRequest", fieldViolations: [{ field, description: "Invalid value" }] }]));
    }
    const ttl = (message.android as { ttl?: unknown } | undefined)?.ttl;
    if (ttl !== undefined && !/^\d+(\.\d{1,9})?s$/.test(String(ttl))) return answer(400, fcmError(400, "INVALID_ARGUMENT", "Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf.Duration)"));
    const token = message.token;
    if (invalid.has(token)) return answer(400, fcmError(400, "INVALID_ARGUMENT", "The registration token is not a valid FCM registration token", "INVALID_ARGUMENT"));
    if (unregistered.has(token)) return answer(404, fcmError(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED"));
    const scripted = scripts.get(token)?.shift();
    if (scripted?.status === 401) accessTokens.delete(auth![1]!);
    if (scripted) return answer(scripted.status, FCM_SCRIPTED[scripted.status], scripted.retryAfter !== undefined ? { "retry-after": scripted.retryAfter } : undefined);
    return answer(200, { name: `projects/${opts.projectId}/messages/0:${Date.now()}%${randomBytes(8).toString("hex")}` });
  };

  const server = await listen((r) => (r.path === "/token" ? tokenEndpoint(r) : send(r)));
  tokenUri = `${server.url}/token`;
  return {
    url: server.url,
    tokenUri,
    events,
    sends: (token) => events.filter((e) => e.kind === "send" && e.token === token),
    tokenRequests: () => events.filter((e) => e.kind === "token"),
    unregister: (token) => unregistered.add(token),
    markInvalid: (token) => invalid.add(token),
    script: (token, answers) => scripts.set(token, [...answers]),
    revokeAccessTokens: () => accessTokens.clear(),
    close: () => server.close(),
  };
}

// ── APNs ─────────────────────────────────────────────────────────────────────────────────────

interface ApnsEvent {
  seq: number;
  at: number;
  /** The device token of the path. */
  token: string;
  status: number;
  reason?: string | undefined;
  headers: http2.IncomingHttpHeaders;
  payload?: Record<string, unknown> | undefined;
  /** The provider token (JWT) the request carried. */
  jwt?: string | undefined;
  /** Its verified claims. */
  claims?: Record<string, unknown> | undefined;
}

interface ApnsAnswerScript {
  /** 403: ExpiredProviderToken for the provider token of that request (as if it had turned an hour old). */
  status: 403 | 429 | 500 | 503;
  retryAfter?: string;
}

const APNS_SCRIPTED: Record<ApnsAnswerScript["status"], string> = { 403: "ExpiredProviderToken", 429: "TooManyRequests", 500: "InternalServerError", 503: "ServiceUnavailable" };

export interface FakeApns {
  readonly url: string;
  readonly events: ApnsEvent[];
  /** Requests for device token `token`, in order. */
  sends(token: string): ApnsEvent[];
  /** The device token is no longer active for the topic: 410 Unregistered. */
  unregister(token: string): void;
  /** 400 BadDeviceToken (e.g. a development token sent to production). */
  markBad(token: string): void;
  script(token: string, answers: ApnsAnswerScript[]): void;
  /** The provider tokens seen so far count as older than an hour: 403 ExpiredProviderToken. */
  expireSeenProviderTokens(): void;
  close(): Promise<void>;
}

export interface FakeApnsOptions {
  keyId: string;
  teamId: string;
  topic: string;
  publicKey: KeyObject;
}

export async function startFakeApns(opts: FakeApnsOptions): Promise<FakeApns> {
  const events: ApnsEvent[] = [];
  const unregistered = new Map<string, number>();
  const bad = new Set<string>();
  const scripts = new Map<string, ApnsAnswerScript[]>();
  const seenJwts = new Set<string>();
  const expiredJwts = new Set<string>();

  const handle = async (r: Received) => {
    const apnsId = typeof r.headers["apns-id"] === "string" ? r.headers["apns-id"] : randomUUID();
    const m = /^\/3\/device\/([^/?]*)$/.exec(r.path);
    const token = m?.[1] ?? "";
    let jwt: string | undefined;
    let claims: Record<string, unknown> | undefined;
    let payload: Record<string, unknown> | undefined;
    const answer = (status: number, reason?: string, extra: Record<string, unknown> = {}, headers: Record<string, string> = {}) => {
      events.push({ seq: events.length + 1, at: Date.now(), token, status, reason, headers: r.headers, payload, jwt, claims });
      return { status, headers: { "apns-id": apnsId, ...headers }, body: reason ? { reason, ...extra } : undefined };
    };
    if (r.method !== "POST") return answer(405, "MethodNotAllowed");
    if (!m) return answer(404, "BadPath");
    // Provider token: `authorization: bearer <JWT>`, ES256, kid = key id, iss = team id, iat within the hour.
    const auth = /^bearer (\S+)$/i.exec(String(r.headers.authorization ?? ""));
    if (!auth) return answer(403, "MissingProviderToken");
    jwt = auth[1]!;
    try {
      const header = decodeProtectedHeader(jwt);
      if (header.alg !== "ES256" || header.kid !== opts.keyId) return answer(403, "InvalidProviderToken");
      claims = (await jwtVerify(jwt, opts.publicKey, { algorithms: ["ES256"] })).payload as Record<string, unknown>;
    } catch {
      return answer(403, "InvalidProviderToken");
    }
    if (claims.iss !== opts.teamId || typeof claims.iat !== "number") return answer(403, "InvalidProviderToken");
    if (claims.iat > nowSec() + 60) return answer(403, "InvalidProviderToken");
    if (nowSec() - claims.iat > 3600 || expiredJwts.has(jwt)) return answer(403, "ExpiredProviderToken");
    seenJwts.add(jwt);
    if (scripts.get(token)?.[0]?.status === 403) {
      scripts.get(token)!.shift();
      expiredJwts.add(jwt);
      return answer(403, "ExpiredProviderToken");
    }
    const topic = r.headers["apns-topic"];
    if (topic === undefined) return answer(400, "MissingTopic");
    if (topic !== opts.topic) return answer(400, "DeviceTokenNotForTopic");
    if (r.headers["apns-push-type"] !== "alert") return answer(400, "InvalidPushType");
    const priority = r.headers["apns-priority"];
    if (priority !== undefined && !["1", "5", "10"].includes(String(priority))) return answer(400, "BadPriority");
    const expiration = r.headers["apns-expiration"];
    if (expiration !== undefined && !/^\d+$/.test(String(expiration))) return answer(400, "BadExpirationDate");
    const collapse = r.headers["apns-collapse-id"];
    if (collapse !== undefined && Buffer.byteLength(String(collapse)) > 64) return answer(400, "BadCollapseId");
    if (token === "") return answer(400, "MissingDeviceToken");
    if (!/^[0-9a-f]+$/i.test(token) || bad.has(token)) return answer(400, "BadDeviceToken");
    if (r.body.length === 0) return answer(400, "PayloadEmpty");
    if (r.body.length > 4096) return answer(413, "PayloadTooLarge");
    try {
      payload = JSON.parse(r.body.toString("utf8")) as Record<string, unknown>;
    } catch {
      return answer(400, "BadRequest");
    }
    if (typeof payload.aps !== "object" || payload.aps === null) return answer(400, "BadRequest");
    const gone = unregistered.get(token);
    if (gone !== undefined) return answer(410, "Unregistered", { timestamp: gone });
    const scripted = scripts.get(token)?.shift();
    if (scripted) return answer(scripted.status, APNS_SCRIPTED[scripted.status], {}, scripted.retryAfter !== undefined ? { "retry-after": scripted.retryAfter } : {});
    return answer(200);
  };

  const server = await listen(handle);
  return {
    url: server.url,
    events,
    sends: (token) => events.filter((e) => e.token === token),
    unregister: (token) => unregistered.set(token, Date.now()),
    markBad: (token) => bad.add(token),
    script: (token, answers) => scripts.set(token, [...answers]),
    expireSeenProviderTokens: () => {
      for (const t of seenJwts) expiredJwts.add(t);
    },
    close: () => server.close(),
  };
}

/** A random APNs device token (32 bytes, hex). */
export const apnsDeviceToken = (): string => randomBytes(32).toString("hex");
/** A random FCM registration token (its usual shape: instance id, colon, 140 more characters). */
export const fcmRegistrationToken = (): string => `${randomBytes(8).toString("base64url")}:APA91b${randomBytes(105).toString("base64url")}`;
