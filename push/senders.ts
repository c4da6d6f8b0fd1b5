// Push senders: one small interface, one implementation per kind of subscription, chosen in one
// place (`PushSenders.send`, an exhaustive switch). Web Push and webhooks send through
// GuardedHttp (the target rules: their URLs come from clients), and classify the answer alike:
//   2xx → sent; 404, 410 → gone (the subscription is removed); 408, 425, 429, 5xx, network
//   errors and timeouts → retry (with backoff); a refused target → blocked; any other 4xx → rejected.
// FCM (fcm.ts) and APNs (apns.ts) talk HTTP/2 to the provider's configured host and read the
// provider's own error codes into the same outcomes.
import { createHmac } from "node:crypto";
import webpush from "web-push";
import { NatterError } from "../core/index.ts";
import type { Notification } from "./content.ts";
import type { GuardedHttp, HttpResult } from "./http.ts";
import type { ApnsSubscription, FcmSubscription, Subscription, WebhookSubscription, WebPushSubscription } from "./subscriptions.ts";

/** One push to one subscription. */
export interface PushMessage {
  /** Stable per (message, subscription): a repeat after a crash carries the same id. */
  pushId: string;
  notification: Notification;
  /** How long a push service may hold it for an offline device (seconds). */
  ttlSec: number;
}

export type SendOutcome =
  | { kind: "sent"; status: number }
  | { kind: "gone"; status: number; reason?: string | undefined }
  | { kind: "retry"; reason: string; afterMs?: number | undefined }
  | { kind: "rejected"; reason: string }
  | { kind: "blocked"; reason: string };

export interface PushSender<S extends Subscription> {
  send(subscription: S, message: PushMessage): Promise<SendOutcome>;
}

export function outcomeOf(r: HttpResult): SendOutcome {
  const { status } = r;
  if (status >= 200 && status < 300) return { kind: "sent", status };
  if (status === 404 || status === 410) return { kind: "gone", status };
  if (status === 408 || status === 425 || status === 429 || status >= 500) return { kind: "retry", reason: `HTTP ${status}`, afterMs: r.retryAfterMs };
  return { kind: "rejected", reason: `HTTP ${status}` };
}

async function post(http: GuardedHttp, target: string, body: Uint8Array | string, headers: Record<string, string | number>): Promise<SendOutcome> {
  try {
    return outcomeOf(await http.post(target, body, headers));
  } catch (err) {
    if (err instanceof NatterError && err.code === "PUSH_TARGET_REFUSED") return { kind: "blocked", reason: err.message };
    const e = err as { code?: unknown; name?: unknown; message?: unknown };
    return { kind: "retry", reason: String(e.code ?? e.name ?? e.message ?? "network error").slice(0, 100) };
  }
}

/** What a push carries: the notification and its push id, the same for every kind. */
export function pushPayloadFields(m: PushMessage): { v: 1; pushId: string } & PushMessage["notification"] {
  return { v: 1, pushId: m.pushId, ...m.notification };
}

/** The payload as JSON (Web Push, webhooks). */
export function pushPayload(m: PushMessage): string {
  return JSON.stringify(pushPayloadFields(m));
}

export interface VapidKeys {
  publicKey: string;
  privateKey: string;
  /** mailto: or https: contact for push services. */
  subject: string;
}

/**
 * Web Push (RFC 8030, 8291, 8292): the payload encrypted to the browser's keys (aes128gcm) and
 * signed with natter's VAPID key by `web-push`, then POSTed to the endpoint by GuardedHttp.
 * `Topic` is derived from the push id: a push service replaces a repeat it still holds.
 */
export class WebPushSender implements PushSender<WebPushSubscription> {
  readonly #http: GuardedHttp;
  readonly #vapid: VapidKeys;

  constructor(http: GuardedHttp, vapid: VapidKeys) {
    this.#http = http;
    this.#vapid = vapid;
  }

  async send(s: WebPushSubscription, m: PushMessage): Promise<SendOutcome> {
    let details: ReturnType<typeof webpush.generateRequestDetails>;
    try {
      details = webpush.generateRequestDetails({ endpoint: s.endpoint, keys: s.keys }, pushPayload(m), {
        vapidDetails: this.#vapid,
        TTL: m.ttlSec,
        topic: m.pushId.slice(0, 32),
        urgency: "high",
        contentEncoding: "aes128gcm",
      });
    } catch (err) {
      return { kind: "rejected", reason: `cannot encrypt for this subscription: ${(err as Error).message}`.slice(0, 200) };
    }
    const headers: Record<string, string | number> = {};
    for (const [k, v] of Object.entries(details.headers)) if (v !== undefined) headers[k] = v as string | number;
    return post(this.#http, details.endpoint, details.body ?? "", headers);
  }
}

const WEBHOOK_HEADERS = {
  pushId: "Natter-Push-Id",
  timestamp: "Natter-Timestamp",
  signature: "Natter-Signature",
} as const;

/** `v1=<hex HMAC-SHA256 of "<timestamp>.<body>">` with the subscription's secret. */
function webhookSignature(secret: string, timestamp: string, body: string): string {
  return `v1=${createHmac("sha256", secret).update(`${timestamp}.${body}`).digest("hex")}`;
}

/**
 * A generic HTTPS webhook: the payload as JSON, signed with the secret the device received at
 * registration (so a receiver can tell natter's requests from anyone else's, and a timestamp
 * lets it refuse replays).
 */
export class WebhookSender implements PushSender<WebhookSubscription> {
  readonly #http: GuardedHttp;

  constructor(http: GuardedHttp) {
    this.#http = http;
  }

  async send(s: WebhookSubscription, m: PushMessage): Promise<SendOutcome> {
    const body = pushPayload(m);
    const timestamp = String(Date.now());
    return post(this.#http, s.url, body, {
      "content-type": "application/json",
      [WEBHOOK_HEADERS.pushId]: m.pushId,
      [WEBHOOK_HEADERS.timestamp]: timestamp,
      [WEBHOOK_HEADERS.signature]: webhookSignature(s.secret, timestamp, body),
    });
  }
}

/** A subscription of a kind this server has no credentials for (its settings were removed since). */
const unconfigured = (setting: string): Promise<SendOutcome> => Promise.resolve({ kind: "rejected", reason: `${setting} is not configured on this server` });

/** Sends through the sender of each subscription's kind. */
export class PushSenders {
  readonly #webpush: PushSender<WebPushSubscription>;
  readonly #webhook: PushSender<WebhookSubscription>;
  readonly #fcm: PushSender<FcmSubscription> | undefined;
  readonly #apns: PushSender<ApnsSubscription> | undefined;

  constructor(senders: {
    webpush: PushSender<WebPushSubscription>;
    webhook: PushSender<WebhookSubscription>;
    /** Absent without push.fcm settings. */
    fcm?: PushSender<FcmSubscription> | undefined;
    /** Absent without push.apns settings. */
    apns?: PushSender<ApnsSubscription> | undefined;
  }) {
    this.#webpush = senders.webpush;
    this.#webhook = senders.webhook;
    this.#fcm = senders.fcm;
    this.#apns = senders.apns;
  }

  send(s: Subscription, m: PushMessage): Promise<SendOutcome> {
    switch (s.kind) {
      case "webpush":
        return this.#webpush.send(s, m);
      case "webhook":
        return this.#webhook.send(s, m);
      case "fcm":
        return this.#fcm ? this.#fcm.send(s, m) : unconfigured("push.fcm");
      case "apns":
        return this.#apns ? this.#apns.send(s, m) : unconfigured("push.apns");
      default: {
        const never: never = s;
        throw new NatterError("INTERNAL", `unknown subscription kind ${JSON.stringify(never)}`);
      }
    }
  }
}
