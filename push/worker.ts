// The push worker: a durable consumer (`push-sender`) on each PUSH_<n> stream. For each request
// it reads the recipient's subscriptions and sends to each one through the send ledger
// (ledger.ts), so each (message, subscription) is sent once however often the request comes.
// A request is acked when every subscription is settled (sent, gone, refused); while one asks to
// be retried (429, 5xx, network) it is nak'd with exponential backoff (push.retryBaseMs doubling
// up to push.retryMaxMs, or the target's Retry-After), and dead-lettered after push.maxAttempts.
// A subscription the push service reports gone (404, 410) is removed.
import { createHash } from "node:crypto";
import type { ConsumerMessages, JetStreamClient, JsMsg } from "@nats-io/jetstream";
import type { Logger } from "../core/logger.ts";
import type { Metrics } from "../core/metrics.ts";
import { deadLetter, decodeJsonOrUndefined, names, pushSentKey, type Topology } from "../nats/index.ts";
import type { SendLedger } from "./ledger.ts";
import { PushRequestSchema, type PushRequest } from "./request.ts";
import type { PushSenders } from "./senders.ts";
import type { PushSubscriptions, Subscription } from "./subscriptions.ts";

export interface PushWorkerSettings {
  maxAttempts: number;
  retryBaseMs: number;
  retryMaxMs: number;
  /** One request's deadline (ms): a claim in the ledger is held a little longer. */
  timeoutMs: number;
  maxAgeSec: number;
  concurrency: number;
}

export interface PushWorkerDeps {
  js: JetStreamClient;
  subscriptions: PushSubscriptions;
  ledger: SendLedger;
  senders: PushSenders;
  topology: Topology;
  settings: PushWorkerSettings;
  log: Logger;
  metrics?: Metrics | undefined;
}

/** Margin of a ledger claim beyond the request deadline (ms). */
const CLAIM_MARGIN_MS = 5000;

/** The push id of (message, subscription): opaque, stable, 32 URL-safe characters (a valid Web Push Topic). */
export function pushIdOf(stream: string, seq: number, subscriptionId: string): string {
  return createHash("sha256").update(`${stream}:${seq}:${subscriptionId}`).digest("base64url").slice(0, 32);
}

/** Delay before attempt `deliveries + 1`: base × 2^(deliveries − 1), at most max; a longer Retry-After wins (up to max). */
export function retryDelay(settings: Pick<PushWorkerSettings, "retryBaseMs" | "retryMaxMs">, deliveries: number, retryAfterMs?: number): number {
  const backoff = settings.retryBaseMs * 2 ** Math.min(Math.max(deliveries - 1, 0), 30);
  return Math.min(settings.retryMaxMs, Math.max(backoff, retryAfterMs ?? 0));
}

type Delivery = { settled: true } | { settled: false; retryMs: number; reason: string; busy: boolean; kind: string };


export class PushWorker {
  readonly #deps: PushWorkerDeps;
  readonly #subs: ConsumerMessages[] = [];
  readonly #loops: Promise<void>[] = [];
  readonly #inFlight = new Set<Promise<void>>();
  /** Pushes a target accepted (tests, logs). */
  sent = 0;

  constructor(deps: PushWorkerDeps) {
    this.#deps = deps;
  }

  async start(): Promise<void> {
    const { js, topology } = this.#deps;
    for (let shard = 0; shard < topology.inboxShards; shard++) {
      const consumer = await js.consumers.get(names.pushStream(shard), names.pushSenderConsumer);
      const messages = await consumer.consume({ max_messages: Math.max(16, this.#deps.settings.concurrency) });
      this.#subs.push(messages);
      this.#loops.push(this.#run(messages));
    }
  }

  async #run(messages: ConsumerMessages): Promise<void> {
    const max = this.#deps.settings.concurrency;
    for await (const m of messages) {
      while (this.#inFlight.size >= max) await Promise.race(this.#inFlight);
      const work: Promise<void> = this.#handle(m)
        .catch((err: unknown) => {
          const delay = retryDelay(this.#deps.settings, m.info.deliveryCount);
          this.#deps.log.warn({ err, stream: m.info.stream, seq: m.seq, retryInMs: delay }, "push failed (NATS); will retry");
          m.nak(delay);
        })
        .finally(() => this.#inFlight.delete(work));
      this.#inFlight.add(work);
    }
  }

  async #handle(m: JsMsg): Promise<void> {
    const { log, metrics, settings } = this.#deps;
    const parsed = PushRequestSchema.safeParse(decodeJsonOrUndefined(m.data));
    if (!parsed.success) {
      await this.#deadLetter(m, "unreadable push request");
      return;
    }
    const r = parsed.data;
    const ageMs = Date.now() - r.ts;
    if (ageMs > settings.maxAgeSec * 1000) {
      log.info({ user: r.user, stream: r.stream, seq: r.seq }, "push older than push.maxAgeSec dropped");
      metrics?.pushFailed.inc({ kind: "any", reason: "expired" });
      m.ack();
      return;
    }
    const subs = await this.#deps.subscriptions.list(r.user);
    const results = await Promise.all(subs.map((s) => this.#deliver(m, r, s, ageMs)));
    const pending = results.filter((d): d is Extract<Delivery, { settled: false }> => !d.settled);
    if (pending.length === 0) {
      m.ack();
      return;
    }
    const failing = pending.filter((d) => !d.busy);
    if (failing.length > 0 && m.info.deliveryCount >= settings.maxAttempts) {
      for (const d of failing) metrics?.pushFailed.inc({ kind: d.kind, reason: "dead" });
      await this.#deadLetter(m, `gave up after ${m.info.deliveryCount} attempts: ${failing.map((d) => d.reason).join("; ")}`);
      return;
    }
    m.nak(Math.max(...pending.map((d) => d.retryMs)));
  }

  /** Sends `r` to one subscription unless the ledger says it was (or is being) sent. */
  async #deliver(m: JsMsg, r: PushRequest, s: Subscription, ageMs: number): Promise<Delivery> {
    const { ledger, senders, subscriptions, log, metrics, settings } = this.#deps;
    const key = pushSentKey(r.user, s.id, r.stream, r.seq);
    const claim = await ledger.claim(key, settings.timeoutMs + CLAIM_MARGIN_MS);
    if (claim.kind === "done") return { settled: true };
    if (claim.kind === "busy") return { settled: false, retryMs: claim.waitMs + 100, reason: "in flight elsewhere", busy: true, kind: s.kind };
    const pushId = pushIdOf(r.stream, r.seq, s.id);
    if (claim.resumed) log.warn({ user: r.user, subscription: s.id, pushId }, "an earlier attempt died mid-send; sending again with the same push id");
    const outcome = await senders.send(s, {
      pushId,
      notification: r.notification,
      ttlSec: Math.max(0, Math.floor(settings.maxAgeSec - ageMs / 1000)),
    });
    const where = { user: r.user, subscription: s.id, kind: s.kind, stream: r.stream, seq: r.seq };
    switch (outcome.kind) {
      case "sent":
        await ledger.settle(key, claim.revision, { state: "sent" });
        this.sent++;
        metrics?.pushSent.inc({ kind: s.kind });
        return { settled: true };
      case "gone":
        log.info({ ...where, status: outcome.status }, "push subscription gone; removed");
        await subscriptions.remove(r.user, s.id, s.revision);
        await ledger.settle(key, claim.revision, { state: "dropped", reason: `gone (HTTP ${outcome.status})` });
        metrics?.pushRemoved.inc({ kind: s.kind });
        return { settled: true };
      case "rejected":
      case "blocked":
        log.warn({ ...where, reason: outcome.reason }, "push refused; not retried");
        await ledger.settle(key, claim.revision, { state: "dropped", reason: outcome.reason });
        metrics?.pushFailed.inc({ kind: s.kind, reason: outcome.kind });
        return { settled: true };
      case "retry": {
        await ledger.settle(key, claim.revision, { state: "retry" });
        metrics?.pushFailed.inc({ kind: s.kind, reason: "retry" });
        const retryMs = retryDelay(settings, m.info.deliveryCount, outcome.afterMs);
        log.info({ ...where, reason: outcome.reason, attempt: m.info.deliveryCount, retryInMs: retryMs }, "push failed; will retry");
        return { settled: false, retryMs, reason: `${s.id}: ${outcome.reason}`, busy: false, kind: s.kind };
      }
      default: {
        const never: never = outcome;
        return never;
      }
    }
  }

  async #deadLetter(m: JsMsg, reason: string): Promise<void> {
    try {
      await deadLetter(this.#deps.js, m, "push", reason);
      this.#deps.metrics?.deadLetters.inc({ worker: "push" });
      this.#deps.log.error({ stream: m.info.stream, seq: m.seq, reason }, "push request dead-lettered");
    } catch (err) {
      this.#deps.log.warn({ err, stream: m.info.stream, seq: m.seq }, "could not dead-letter; will retry");
      m.nak(retryDelay(this.#deps.settings, m.info.deliveryCount));
    }
  }

  /** Stops pulling, lets in-flight requests finish (acked or nak'd). */
  async stop(): Promise<void> {
    for (const s of this.#subs) s.stop();
    await Promise.allSettled(this.#loops);
    await Promise.allSettled([...this.#inFlight]);
  }
}
