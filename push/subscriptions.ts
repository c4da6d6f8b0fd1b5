// Push subscriptions: the KV bucket `push-subs`, key `<user>.<subscription id>`, one value per
// target a user's devices registered (a browser's Web Push subscription, a webhook URL, an FCM
// registration token or an APNs device token).
// A subscription's id is derived from (user, kind, target), so registering the same endpoint
// again (a browser re-subscribing, a retried register) replaces it instead of adding a second one
// that would receive every push twice.
import { createECDH, createHash, randomBytes } from "node:crypto";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import { headers } from "@nats-io/transport-node";
import { z } from "zod";
import { checkId, type Logger, NatterError } from "../core/index.ts";
import { decodeJsonOrUndefined, directBatch, encodeJson, isNotFound, isWrongLastSequence, kvKeySubject, kvOperation, names, pushSubscriptionKey, pushSubscriptionsFilter } from "../nats/index.ts";
import { checkTargetUrl, type TargetPolicy } from "./targets.ts";

const TIMEOUT_MS = 5000;
/** How long a removed subscription's tombstone stays in the bucket (seconds). */
export const SUBSCRIPTION_TOMBSTONE_TTL_S = 24 * 3600;

const base64url = /^[A-Za-z0-9_-]+={0,2}$/;

const WebPushValue = z.object({
  v: z.literal(1),
  kind: z.literal("webpush"),
  endpoint: z.string(),
  keys: z.object({ p256dh: z.string(), auth: z.string() }),
  /** The device that registered it. */
  device: z.string(),
  at: z.number(),
});
const WebhookValue = z.object({
  v: z.literal(1),
  kind: z.literal("webhook"),
  url: z.string(),
  /** HMAC-SHA256 key of the signature header; given to the client once, at registration. */
  secret: z.string(),
  device: z.string(),
  at: z.number(),
});
/** An app on an Android phone (or any FCM client): its registration token. */
const FcmValue = z.object({ v: z.literal(1), kind: z.literal("fcm"), token: z.string(), device: z.string(), at: z.number() });
/** An app on an Apple device: its APNs device token (hex, lower case); the topic is the server's (push.apns.topic). */
const ApnsValue = z.object({ v: z.literal(1), kind: z.literal("apns"), token: z.string(), device: z.string(), at: z.number() });
const SubscriptionValue = z.discriminatedUnion("kind", [WebPushValue, WebhookValue, FcmValue, ApnsValue]);
type SubscriptionValue = z.infer<typeof SubscriptionValue>;

type Stored = { id: string; user: string; revision: number };
export type WebPushSubscription = z.infer<typeof WebPushValue> & Stored;
export type WebhookSubscription = z.infer<typeof WebhookValue> & Stored;
export type FcmSubscription = z.infer<typeof FcmValue> & Stored;
export type ApnsSubscription = z.infer<typeof ApnsValue> & Stored;
export type Subscription = WebPushSubscription | WebhookSubscription | FcmSubscription | ApnsSubscription;
type SubscriptionKind = Subscription["kind"];

/** What a device registers (the `push.register` frame). */
export type RegisterInput =
  | { kind: "webpush"; endpoint: string; keys: { p256dh: string; auth: string } }
  | { kind: "webhook"; url: string }
  | { kind: "fcm" | "apns"; token: string };

export interface Registered {
  id: string;
  kind: SubscriptionKind;
  /** Webhooks: the key of the `Natter-Signature` header, returned once. */
  secret?: string | undefined;
}

export interface PushSubscriptionsOptions {
  js: JetStreamClient;
  jsm: JetStreamManager;
  policy: TargetPolicy;
  maxPerUser: number;
  /** Kinds that need the server's credentials: accepted only when configured (push.fcm, push.apns). */
  mobile: { fcm: boolean; apns: boolean };
  log: Logger;
}

function decodeKey(value: string, bytes: number, field: string): Buffer {
  const buf = base64url.test(value) ? Buffer.from(value, "base64url") : Buffer.alloc(0);
  if (buf.length !== bytes) throw new NatterError("BAD_FRAME", `${field} must be ${bytes} bytes, URL-safe base64`);
  return buf;
}

/** Checks a browser subscription's keys: p256dh a P-256 public point, auth 16 bytes. */
function checkWebPushKeys(keys: { p256dh: string; auth: string }): void {
  const point = decodeKey(keys.p256dh, 65, "keys.p256dh");
  decodeKey(keys.auth, 16, "keys.auth");
  try {
    const ecdh = createECDH("prime256v1");
    ecdh.generateKeys();
    ecdh.computeSecret(point);
  } catch {
    throw new NatterError("BAD_FRAME", "keys.p256dh is not a P-256 public key");
  }
}

/** Longest FCM registration token accepted (they are about 160 characters). */
const MAX_FCM_TOKEN = 4096;

/** An FCM registration token: printable ASCII without spaces (it goes into a JSON body). */
export function checkFcmToken(token: string): string {
  if (token.length < 16 || token.length > MAX_FCM_TOKEN || !/^[\x21-\x7e]+$/.test(token)) {
    throw new NatterError("BAD_FRAME", `token must be an FCM registration token (16-${MAX_FCM_TOKEN} printable characters)`);
  }
  return token;
}

/** An APNs device token: hex (32 bytes today; Apple says it may grow), returned in lower case. */
export function checkApnsToken(token: string): string {
  if (!/^(?:[0-9a-fA-F]{2}){32,100}$/.test(token)) throw new NatterError("BAD_FRAME", "token must be an APNs device token (hex, 64-200 characters)");
  return token.toLowerCase();
}

/** The target a subscription id is derived from. */
function targetOf(value: SubscriptionValue): string {
  switch (value.kind) {
    case "webpush":
      return value.endpoint;
    case "webhook":
      return value.url;
    case "fcm":
    case "apns":
      return value.token;
    default: {
      const never: never = value;
      throw new NatterError("INTERNAL", `unknown subscription kind ${JSON.stringify(never)}`);
    }
  }
}

/** The subscription id of a target: the same for the same (user, kind, target). */
function subscriptionId(user: string, value: SubscriptionValue): string {
  return `ps_${createHash("sha256").update(`${user}\n${value.kind}\n${targetOf(value)}`).digest("base64url").slice(0, 22)}`;
}

const HAS_SUBSCRIPTION_TTL_MS = 2000;
const HAS_SUBSCRIPTION_MAX = 100_000;

export class PushSubscriptions {
  readonly #o: PushSubscriptionsOptions;
  readonly #stream = names.kvStream(names.pushSubscriptionsBucket);

  constructor(opts: PushSubscriptionsOptions) {
    this.#o = opts;
  }

  /** Registers (or replaces) a subscription of `user`, checking its target. */
  async register(user: string, device: string, input: RegisterInput): Promise<Registered> {
    checkId("user id", user);
    this.#hasSubscription.delete(user);
    let value: SubscriptionValue;
    let secret: string | undefined;
    const at = Date.now();
    switch (input.kind) {
      case "webpush":
        checkTargetUrl(input.endpoint, this.#o.policy);
        checkWebPushKeys(input.keys);
        value = { v: 1, kind: "webpush", endpoint: input.endpoint, keys: { p256dh: input.keys.p256dh, auth: input.keys.auth }, device, at };
        break;
      case "webhook":
        checkTargetUrl(input.url, this.#o.policy);
        secret = randomBytes(32).toString("base64url");
        value = { v: 1, kind: "webhook", url: input.url, secret, device, at };
        break;
      case "fcm":
        if (!this.#o.mobile.fcm) throw new NatterError("PUSH_DISABLED", "this server does not send FCM pushes (push.fcm is not configured)");
        value = { v: 1, kind: "fcm", token: checkFcmToken(input.token), device, at };
        break;
      case "apns":
        if (!this.#o.mobile.apns) throw new NatterError("PUSH_DISABLED", "this server does not send APNs pushes (push.apns is not configured)");
        value = { v: 1, kind: "apns", token: checkApnsToken(input.token), device, at };
        break;
      default: {
        const never: never = input;
        throw new NatterError("BAD_FRAME", `unknown subscription kind ${JSON.stringify(never)}`);
      }
    }
    const id = subscriptionId(user, value);
    const existing = await this.list(user);
    if (!existing.some((s) => s.id === id) && existing.length >= this.#o.maxPerUser) {
      throw new NatterError("PUSH_SUBSCRIPTIONS_FULL", `a user has at most ${this.#o.maxPerUser} push subscriptions; remove one first`);
    }
    try {
      await this.#o.js.publish(kvKeySubject(names.pushSubscriptionsBucket, pushSubscriptionKey(user, id)), encodeJson(value), { timeout: TIMEOUT_MS });
    } catch (err) {
      throw new NatterError("UNAVAILABLE", "could not store the push subscription", { cause: err });
    }
    return { id, kind: input.kind, ...(secret !== undefined ? { secret } : {}) };
  }

  /** Every live subscription of `user`. */
  async list(user: string): Promise<Subscription[]> {
    const filter = pushSubscriptionsFilter(user);
    const prefix = filter.slice(0, -1);
    const out: Subscription[] = [];
    try {
      const it = await directBatch(this.#o.jsm, this.#stream, { multi_last: [filter] });
      for await (const sm of it) {
        if (kvOperation(sm.header) !== "PUT" || !sm.subject.startsWith(prefix)) continue;
        const parsed = SubscriptionValue.safeParse(decodeJsonOrUndefined(sm.data));
        if (!parsed.success) {
          this.#o.log.warn({ subject: sm.subject }, "unreadable push subscription skipped");
          continue;
        }
        out.push({ ...parsed.data, id: sm.subject.slice(prefix.length), user, revision: sm.seq });
      }
    } catch (err) {
      if (isNotFound(err)) return out;
      throw new NatterError("UNAVAILABLE", "push subscriptions unavailable", { cause: err });
    }
    return out;
  }

  /**
   * Who of `users` has at least one subscription: one request for those not answered in the
   * last HAS_SUBSCRIPTION_TTL_MS. The push dispatcher asks for every message's recipients; a
   * registration made on another node is seen within that time (this node's own at once).
   */
  async usersWithSubscriptions(users: readonly string[]): Promise<Set<string>> {
    const found = new Set<string>();
    const now = Date.now();
    const ask: string[] = [];
    for (const u of new Set(users)) {
      const known = this.#hasSubscription.get(u);
      if (known && known.until > now) {
        if (known.has) found.add(u);
      } else {
        ask.push(u);
      }
    }
    if (ask.length === 0) return found;
    const fresh = new Set<string>();
    const prefix = kvKeySubject(names.pushSubscriptionsBucket, "");
    try {
      const it = await directBatch(this.#o.jsm, this.#stream, { multi_last: ask.map((u) => pushSubscriptionsFilter(u)) });
      for await (const sm of it) {
        if (kvOperation(sm.header) !== "PUT") continue;
        const user = sm.subject.slice(prefix.length).split(".")[0];
        if (user !== undefined) fresh.add(user);
      }
    } catch (err) {
      if (!isNotFound(err)) throw new NatterError("UNAVAILABLE", "push subscriptions unavailable", { cause: err });
    }
    if (this.#hasSubscription.size + ask.length > HAS_SUBSCRIPTION_MAX) this.#hasSubscription.clear();
    for (const u of ask) {
      this.#hasSubscription.set(u, { has: fresh.has(u), until: now + HAS_SUBSCRIPTION_TTL_MS });
      if (fresh.has(u)) found.add(u);
    }
    return found;
  }

  readonly #hasSubscription = new Map<string, { has: boolean; until: number }>();

  /**
   * Removes a subscription. With `revision`, only if it is still that one (a push service's
   * "gone" must not remove a subscription registered again since). True if removed.
   */
  async remove(user: string, id: string, revision?: number): Promise<boolean> {
    this.#hasSubscription.delete(user);
    const subject = kvKeySubject(names.pushSubscriptionsBucket, pushSubscriptionKey(user, id));
    let expect = revision;
    if (expect === undefined) {
      const current = (await this.list(user)).find((s) => s.id === id);
      if (!current) return false;
      expect = current.revision;
    }
    const h = headers();
    h.set("KV-Operation", "PURGE");
    h.set("Nats-Rollup", "sub");
    try {
      await this.#o.js.publish(subject, undefined, {
        headers: h,
        ttl: `${SUBSCRIPTION_TOMBSTONE_TTL_S}s`,
        expect: { lastSubjectSequence: expect },
        timeout: TIMEOUT_MS,
      });
      return true;
    } catch (err) {
      if (isWrongLastSequence(err)) return false;
      throw new NatterError("UNAVAILABLE", "could not remove the push subscription", { cause: err });
    }
  }
}

