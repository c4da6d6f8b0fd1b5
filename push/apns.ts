// Apple Push Notification service, token-based: every request carries a provider token, a JWT
// signed ES256 with the team's APNs key (.p8)
//   header { alg: ES256, kid: <key id> }   claims { iss: <team id>, iat }
// Apple refuses a token older than an hour and one renewed more than once in 20 minutes
// (TooManyProviderTokenUpdates), so one token is used for 50 minutes by every request, then
// replaced. A push is an HTTP/2 request
//   POST <host>/3/device/<device token>   authorization: bearer <provider token>
//   apns-topic: <bundle id>  apns-push-type: alert  apns-priority: 10
//   apns-expiration: <epoch s>  apns-collapse-id: <push id>
//   { "aps": { "alert": { title, body }, "sound": "default", "thread-id"? }, …natter's payload }
// with the host api.push.apple.com (production) or api.sandbox.push.apple.com (development).
// Answers (developer.apple.com, "Handling notification responses from APNs"), errors as
// { "reason": "…", "timestamp"? }:
//   200                                  sent
//   410 (Unregistered, ExpiredToken)     gone: the device token is no longer active for the topic
//   400 BadDeviceToken                   gone: not a device token (of this environment)
//   403 ExpiredProviderToken             a new provider token, and one resend
//   429, 500, 503                        retry (a Retry-After, if Apple sends one, is honoured)
//   anything else                        rejected (e.g. 403 InvalidProviderToken: the key id, team
//                                        id or key is wrong; 400 DeviceTokenNotForTopic, BadTopic)
import { createPrivateKey, type KeyObject } from "node:crypto";
import { z } from "zod";
import { NatterError } from "../core/index.ts";
import type { H2Response, Http2Client } from "./h2.ts";
import { signJwt } from "./jwt.ts";
import { pushPayloadFields, type PushMessage, type PushSender, type SendOutcome } from "./senders.ts";
import type { ApnsSubscription } from "./subscriptions.ts";

export const APNS_HOSTS = { production: "https://api.push.apple.com", sandbox: "https://api.sandbox.push.apple.com" } as const;
/** A provider token is used this long, then replaced (Apple: at least every 60 min, at most every 20). */
export const PROVIDER_TOKEN_REUSE_MS = 50 * 60_000;
/** After ExpiredProviderToken, a new token is made at most this often (else TooManyProviderTokenUpdates). */
const MIN_FORCED_RENEWAL_MS = 60_000;

/** An APNs signing key (.p8: a PKCS#8 PEM P-256 key); CONFIG_INVALID naming `where` if it is not one. */
export function parseApnsKey(pem: string, where: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (err) {
    throw new NatterError("CONFIG_INVALID", `${where} is not a PEM private key (the .p8 file from Apple is expected)`, { cause: err });
  }
  if (key.asymmetricKeyType !== "ec" || key.asymmetricKeyDetails?.namedCurve !== "prime256v1") {
    throw new NatterError("CONFIG_INVALID", `${where} is not a P-256 (ES256) key`);
  }
  return key;
}

export interface ApnsCredentials {
  key: KeyObject;
  /** 10 characters, from the key's page in Apple's developer account. */
  keyId: string;
  /** 10 characters, the team the key belongs to. */
  teamId: string;
}

/** The provider token of the moment: the same for PROVIDER_TOKEN_REUSE_MS, then a new one. */
export class ProviderTokens {
  readonly #c: ApnsCredentials;
  readonly #now: () => number;
  #current: { token: string; at: number } | undefined;
  #forcedAt: number | undefined;
  /** Tokens made (tests, logs). */
  made = 0;

  constructor(credentials: ApnsCredentials, now: () => number = Date.now) {
    this.#c = credentials;
    this.#now = now;
  }

  current(): string {
    const now = this.#now();
    const c = this.#current;
    if (c && now - c.at < PROVIDER_TOKEN_REUSE_MS && now >= c.at) return c.token;
    return this.#make(now);
  }

  /**
   * APNs called `token` expired. A new one is made unless another request renewed it already
   * (then that one is used) or the last forced renewal is less than a minute old (false: give up
   * for now, the push is retried later).
   */
  renew(token: string): boolean {
    if (this.#current?.token !== token) return true;
    const now = this.#now();
    if (this.#forcedAt !== undefined && now - this.#forcedAt < MIN_FORCED_RENEWAL_MS) return false;
    this.#forcedAt = now;
    this.#make(now);
    return true;
  }

  #make(now: number): string {
    const token = signJwt("ES256", this.#c.key, { kid: this.#c.keyId }, { iss: this.#c.teamId, iat: Math.floor(now / 1000) });
    this.#current = { token, at: now };
    this.made++;
    return token;
  }
}

/** What APNs's answer means; "expired-token": the provider token was too old. */
export type ApnsAnswer = SendOutcome | { kind: "expired-token" };

const ApnsErrorBody = z.object({ reason: z.string(), timestamp: z.number().optional() });

export function apnsAnswer(res: Pick<H2Response, "status" | "body" | "retryAfterMs">): ApnsAnswer {
  const { status } = res;
  if (status === 200) return { kind: "sent", status };
  let reason = "";
  try {
    const parsed = ApnsErrorBody.safeParse(JSON.parse(res.body.toString("utf8")));
    if (parsed.success) reason = parsed.data.reason;
  } catch {
    // no JSON body: the status says enough
  }
  const label = `APNs ${status}${reason ? ` ${reason}` : ""}`;
  if (status === 410) return { kind: "gone", status, reason: label };
  if (status === 400 && reason === "BadDeviceToken") return { kind: "gone", status, reason: label };
  if (status === 403 && reason === "ExpiredProviderToken") return { kind: "expired-token" };
  if (status === 429 || status === 500 || status === 503) return { kind: "retry", reason: label, afterMs: res.retryAfterMs };
  return { kind: "rejected", reason: label.slice(0, 200) };
}

/** The JSON payload: Apple's `aps` dictionary and natter's payload beside it. */
export function apnsPayload(m: PushMessage): string {
  const n = m.notification;
  const aps: Record<string, unknown> = { alert: { title: n.title, body: n.body }, sound: "default" };
  if (n.conv !== undefined) aps["thread-id"] = n.conv;
  return JSON.stringify({ aps, ...pushPayloadFields(m) });
}

function networkReason(err: unknown): string {
  const e = err as { code?: unknown; name?: unknown; message?: unknown };
  return `APNs: ${String(e.code ?? e.name ?? e.message ?? "network error")}`.slice(0, 100);
}

export interface ApnsSenderOptions {
  credentials: ApnsCredentials;
  /** The app's bundle id (apns-topic). */
  topic: string;
  /** https://api.push.apple.com or https://api.sandbox.push.apple.com (tests: a local server). */
  baseUrl: string;
  /** Deadline of one send, resend included (ms). */
  timeoutMs: number;
  now?: () => number;
}

export class ApnsSender implements PushSender<ApnsSubscription> {
  readonly #http: Http2Client;
  readonly #o: ApnsSenderOptions;
  readonly #now: () => number;
  readonly tokens: ProviderTokens;

  constructor(http: Http2Client, opts: ApnsSenderOptions) {
    this.#http = http;
    this.#o = opts;
    this.#now = opts.now ?? Date.now;
    this.tokens = new ProviderTokens(opts.credentials, this.#now);
  }

  async send(s: ApnsSubscription, m: PushMessage): Promise<SendOutcome> {
    const now = this.#now();
    const deadline = now + this.#o.timeoutMs;
    const url = new URL(`${this.#o.baseUrl.replace(/\/+$/, "")}/3/device/${encodeURIComponent(s.token)}`);
    const body = apnsPayload(m);
    const headers = {
      "apns-topic": this.#o.topic,
      "apns-push-type": "alert",
      "apns-priority": "10",
      // 0: deliver now or never (APNs stores nothing)
      "apns-expiration": String(m.ttlSec === 0 ? 0 : Math.floor(now / 1000) + m.ttlSec),
      // A repeat (the rare second send after a crash) replaces the first on the device.
      "apns-collapse-id": m.pushId,
      "content-type": "application/json",
    };
    for (let attempt = 1; ; attempt++) {
      const left = deadline - this.#now();
      if (left <= 0) return { kind: "retry", reason: "APNs: no time left for the request" };
      const token = this.tokens.current();
      let res: H2Response;
      try {
        res = await this.#http.post(url, { headers: { ...headers, authorization: `bearer ${token}` }, body, timeoutMs: left });
      } catch (err) {
        return { kind: "retry", reason: networkReason(err) };
      }
      const answer = apnsAnswer(res);
      if (answer.kind !== "expired-token") return answer;
      if (attempt > 1 || !this.tokens.renew(token)) return { kind: "retry", reason: "APNs 403 ExpiredProviderToken" };
    }
  }
}
