// Firebase Cloud Messaging, HTTP v1 API. natter authenticates as a service account (OAuth 2.0
// JWT bearer grant, RFC 7523): an assertion signed RS256 with the account's private key
//   header { alg: RS256, typ: JWT, kid: private_key_id }
//   claims { iss: client_email, scope: …/auth/firebase.messaging, aud: token_uri, iat, exp ≤ iat + 1 h }
// is POSTed (form-encoded, grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer) to the
// account's token_uri for an access token, kept until shortly before it expires. A push is
//   POST <baseUrl>/v1/projects/<project>/messages:send   Authorization: Bearer <access token>
//   { "message": { "token", "notification": { title, body }, "data": { …strings }, "android", "apns", "webpush" } }
// Answers (firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode), errors as
// { "error": { code, message, status, details: [{ "@type": "…FcmError", errorCode }] } }:
//   200                                   sent
//   404 with errorCode UNREGISTERED       gone: the app instance is no longer registered
//   400 INVALID_ARGUMENT about the token  gone: not a valid registration token
//   401 (not THIRD_PARTY_AUTH_ERROR)      the access token was refused: a new one, and one resend
//   429 QUOTA_EXCEEDED, 500, 503          retry (Retry-After honoured by the worker; a 429 without
//                                         one waits a minute, FCM's advice for quota errors)
//   anything else                         rejected (e.g. 403 SENDER_ID_MISMATCH, a 404 without
//                                         UNREGISTERED, which is a wrong project rather than a gone token)
import { createPrivateKey, type KeyObject } from "node:crypto";
import { z } from "zod";
import { NatterError } from "../core/index.ts";
import type { H2Response, Http2Client } from "./h2.ts";
import { signJwt } from "./jwt.ts";
import { pushPayloadFields, type PushMessage, type PushSender, type SendOutcome } from "./senders.ts";
import type { FcmSubscription } from "./subscriptions.ts";

export const FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging";
const JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/** Longest life Google accepts for an assertion (s). */
const ASSERTION_LIFETIME_S = 3600;
/** Wait after a 429 without Retry-After: FCM asks for "a minimum initial delay of 1 minute". */
const QUOTA_DELAY_MS = 60_000;
/** An access token is replaced this long before it expires (or at half its life, if that is later). */
const TOKEN_MARGIN_MS = 5 * 60_000;

const ServiceAccountFile = z.object({
  type: z.literal("service_account"),
  project_id: z.string().min(1),
  private_key_id: z.string().min(1),
  private_key: z.string().min(1),
  client_email: z.string().min(1),
  token_uri: z.string().url().default("https://oauth2.googleapis.com/token"),
});

export interface ServiceAccount {
  projectId: string;
  clientEmail: string;
  keyId: string;
  key: KeyObject;
  tokenUri: string;
}

/** A service account key file (JSON, as the Firebase console gives it); CONFIG_INVALID naming `where` if it is not one. */
export function parseServiceAccount(text: string, where: string): ServiceAccount {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new NatterError("CONFIG_INVALID", `${where} is not JSON (a Google service account key file is expected)`);
  }
  const parsed = ServiceAccountFile.safeParse(json);
  if (!parsed.success) {
    const fields = [...new Set(parsed.error.issues.map((i) => i.path.join(".")))].join(", ");
    throw new NatterError("CONFIG_INVALID", `${where} is not a Google service account key file (check ${fields})`);
  }
  const a = parsed.data;
  let key: KeyObject;
  try {
    key = createPrivateKey(a.private_key);
  } catch (err) {
    throw new NatterError("CONFIG_INVALID", `${where}: private_key is not a PEM private key`, { cause: err });
  }
  if (key.asymmetricKeyType !== "rsa") throw new NatterError("CONFIG_INVALID", `${where}: private_key is not an RSA key`);
  return { projectId: a.project_id, clientEmail: a.client_email, keyId: a.private_key_id, key, tokenUri: a.token_uri };
}

/** The signed assertion exchanged for an access token. */
export function serviceAccountAssertion(a: ServiceAccount, nowMs: number): string {
  const iat = Math.floor(nowMs / 1000);
  return signJwt("RS256", a.key, { typ: "JWT", kid: a.keyId }, { iss: a.clientEmail, scope: FCM_SCOPE, aud: a.tokenUri, iat, exp: iat + ASSERTION_LIFETIME_S });
}

/** The token endpoint did not give an access token. */
class TokenRefused extends Error {
  readonly retryAfterMs: number | undefined;

  constructor(message: string, retryAfterMs: number | undefined) {
    super(message);
    this.retryAfterMs = retryAfterMs;
  }
}

const TokenAnswer = z.object({ access_token: z.string().min(1), expires_in: z.coerce.number().positive(), token_type: z.string().optional() });
const TokenError = z.object({ error: z.string(), error_description: z.string().optional() });

function json(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString("utf8"));
  } catch {
    return undefined;
  }
}

/**
 * Access tokens of one service account: one request at a time (concurrent sends wait for the
 * same one), kept until TOKEN_MARGIN_MS before expiry.
 */
export class AccessTokens {
  readonly #account: ServiceAccount;
  readonly #http: Http2Client;
  readonly #now: () => number;
  #current: { token: string; refreshAt: number } | undefined;
  #pending: Promise<string> | undefined;
  /** Tokens obtained (tests, logs). */
  fetched = 0;

  constructor(account: ServiceAccount, http: Http2Client, now: () => number = Date.now) {
    this.#account = account;
    this.#http = http;
    this.#now = now;
  }

  /** A valid access token: the cached one, or a new one within `timeoutMs`. */
  get(timeoutMs: number): Promise<string> {
    const c = this.#current;
    if (c && this.#now() < c.refreshAt) return Promise.resolve(c.token);
    this.#pending ??= this.#fetch(timeoutMs).finally(() => {
      this.#pending = undefined;
    });
    return this.#pending;
  }

  /** Forgets `token` (refused with 401), unless a newer one replaced it already. */
  invalidate(token: string): void {
    if (this.#current?.token === token) this.#current = undefined;
  }

  async #fetch(timeoutMs: number): Promise<string> {
    const a = this.#account;
    const started = this.#now();
    const body = new URLSearchParams({ grant_type: JWT_BEARER, assertion: serviceAccountAssertion(a, started) }).toString();
    const res = await this.#http.post(new URL(a.tokenUri), {
      headers: { "content-type": "application/x-www-form-urlencoded", accept: "application/json" },
      body,
      timeoutMs,
    });
    const answer = TokenAnswer.safeParse(json(res.body));
    if (res.status !== 200 || !answer.success) {
      const e = TokenError.safeParse(json(res.body));
      const why = e.success ? `${e.data.error}${e.data.error_description ? `: ${e.data.error_description}` : ""}` : "no access token in the answer";
      throw new TokenRefused(`FCM auth: token endpoint answered ${res.status} (${why.slice(0, 160)})`, res.retryAfterMs);
    }
    const lifeMs = answer.data.expires_in * 1000;
    this.#current = { token: answer.data.access_token, refreshAt: started + Math.max(lifeMs / 2, lifeMs - TOKEN_MARGIN_MS) };
    this.fetched++;
    return answer.data.access_token;
  }
}

/** What FCM's answer means; "unauthenticated": the access token was refused. */
export type FcmAnswer = SendOutcome | { kind: "unauthenticated" };

const FcmErrorBody = z.object({
  error: z.object({
    code: z.number().optional(),
    message: z.string().optional(),
    status: z.string().optional(),
    details: z.array(z.looseObject({ "@type": z.string().optional(), errorCode: z.string().optional(), fieldViolations: z.array(z.looseObject({ field: z.string().optional() })).optional() })).optional(),
  }),
});

export function fcmAnswer(res: Pick<H2Response, "status" | "body" | "retryAfterMs">): FcmAnswer {
  const { status } = res;
  if (status >= 200 && status < 300) return { kind: "sent", status };
  const parsed = FcmErrorBody.safeParse(json(res.body));
  const error = parsed.success ? parsed.data.error : {};
  const details = error.details ?? [];
  const errorCode = details.find((d) => d["@type"]?.endsWith("google.firebase.fcm.v1.FcmError"))?.errorCode;
  const label = `FCM ${status} ${errorCode ?? error.status ?? ""}`.trim();
  if (status === 404 && errorCode === "UNREGISTERED") return { kind: "gone", status, reason: label };
  if (status === 400 && (error.status === "INVALID_ARGUMENT" || errorCode === "INVALID_ARGUMENT")) {
    const violations = details.flatMap((d) => d.fieldViolations ?? []);
    const aboutToken = violations.some((v) => v.field === "message.token") || /registration token/i.test(error.message ?? "");
    if (aboutToken) return { kind: "gone", status, reason: `${label}: not a valid registration token` };
  }
  if (status === 401 && errorCode !== "THIRD_PARTY_AUTH_ERROR") return { kind: "unauthenticated" };
  if (status === 429) return { kind: "retry", reason: label, afterMs: res.retryAfterMs ?? QUOTA_DELAY_MS };
  if (status === 408 || status >= 500) return { kind: "retry", reason: label, afterMs: res.retryAfterMs };
  return { kind: "rejected", reason: `${label}${error.message ? `: ${error.message}` : ""}`.slice(0, 200) };
}

/** The HTTP v1 message of one push: the notification shown, the payload as data (string values). */
export function fcmMessage(token: string, m: PushMessage, nowMs: number): { message: Record<string, unknown> } {
  const fields = pushPayloadFields(m);
  const data: Record<string, string> = {};
  for (const [k, v] of Object.entries(fields)) if (v !== undefined) data[k] = String(v);
  return {
    message: {
      token,
      notification: { title: m.notification.title, body: m.notification.body },
      data,
      android: { priority: "high", ttl: `${m.ttlSec}s` },
      apns: { headers: { "apns-expiration": String(m.ttlSec === 0 ? 0 : Math.floor(nowMs / 1000) + m.ttlSec), "apns-collapse-id": m.pushId } },
      webpush: { headers: { TTL: String(m.ttlSec), Topic: m.pushId } },
    },
  };
}

function networkReason(err: unknown): string {
  const e = err as { code?: unknown; name?: unknown; message?: unknown };
  return `FCM: ${String(e.code ?? e.name ?? e.message ?? "network error")}`.slice(0, 100);
}

export interface FcmSenderOptions {
  account: ServiceAccount;
  /** Project the pushes are sent in (default: the service account's). */
  projectId?: string | undefined;
  /** API root, https://fcm.googleapis.com (tests: a local server). */
  baseUrl: string;
  /** Deadline of one send, token request and resend included (ms). */
  timeoutMs: number;
  now?: () => number;
}

export class FcmSender implements PushSender<FcmSubscription> {
  readonly #http: Http2Client;
  readonly #url: URL;
  readonly #timeoutMs: number;
  readonly #now: () => number;
  readonly tokens: AccessTokens;

  constructor(http: Http2Client, opts: FcmSenderOptions) {
    this.#http = http;
    this.#now = opts.now ?? Date.now;
    this.#timeoutMs = opts.timeoutMs;
    const project = encodeURIComponent(opts.projectId ?? opts.account.projectId);
    this.#url = new URL(`${opts.baseUrl.replace(/\/+$/, "")}/v1/projects/${project}/messages:send`);
    this.tokens = new AccessTokens(opts.account, http, this.#now);
  }

  async send(s: FcmSubscription, m: PushMessage): Promise<SendOutcome> {
    const deadline = this.#now() + this.#timeoutMs;
    const body = JSON.stringify(fcmMessage(s.token, m, this.#now()));
    for (let attempt = 1; ; attempt++) {
      const left = () => deadline - this.#now();
      let token: string;
      try {
        token = await this.tokens.get(Math.max(1, left()));
      } catch (err) {
        if (err instanceof TokenRefused) return { kind: "retry", reason: err.message, afterMs: err.retryAfterMs };
        return { kind: "retry", reason: networkReason(err) };
      }
      if (left() <= 0) return { kind: "retry", reason: "FCM: no time left for the request" };
      let res: H2Response;
      try {
        res = await this.#http.post(this.#url, {
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json; charset=utf-8" },
          body,
          timeoutMs: left(),
        });
      } catch (err) {
        return { kind: "retry", reason: networkReason(err) };
      }
      const answer = fcmAnswer(res);
      if (answer.kind !== "unauthenticated") return answer;
      // The access token was refused (revoked, or expired early): one new token, one resend.
      if (attempt > 1) return { kind: "retry", reason: "FCM 401 with a new access token" };
      this.tokens.invalidate(token);
    }
  }
}
