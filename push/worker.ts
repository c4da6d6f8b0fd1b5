// The push worker: a durable consumer (`push-sender`) on each PUSH_<n> stream. For each request
// it reads the recipient's subscriptions and sends to each one through the send ledger
// (ledger.ts), so each (message, subscription) is sent once however often the request comes.
// A request is acked when every subscription is settled (sent, gone, refused); while one asks to
// be retried (429, 5xx, network) it is nak'd with exponential backoff (push.retryBaseMs doubling
// up to push.retryMaxMs, or the target's Retry-After), and dead-lettered after push.maxAttempts.
// A subscription the push service reports gone (404, 410; FCM's UNREGISTERED or a bad token,
// APNs's Unregistered or BadDeviceToken) is removed.
import { createHash } from "node:crypto";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger, Metrics } from "../core/index.ts";
import { ConsumerWorker, decodeJsonOrUndefined, names, pushSentKey, type Delivery, type Outcome, type Topology } from "../nats/index.ts";
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
  nc: NatsConnection;
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
function pushIdOf(stream: string, seq: number, subscriptionId: string): string {
  return createHash("sha256").update(`${stream}:${seq}:${subscriptionId}`).digest("base64url").slice(0, 32);
}

/** Delay before attempt `deliveries + 1`: base × 2^(deliveries − 1), at most max; a longer Retry-After wins (up to max). */
export function retryDelay(settings: Pick<PushWorkerSettings, "retryBaseMs" | "retryMaxMs">, deliveries: number, retryAfterMs?: number): number {
  const backoff = settings.retryBaseMs * 2 ** Math.min(Math.max(deliveries - 1, 0), 30);
  return Math.min(settings.retryMaxMs, Math.max(backoff, retryAfterMs ?? 0));
}

/** What became of one subscription's send. */
type Delivery_ = { settled: true } | { settled: false; retryMs: number; reason: string; busy: boolean; kind: string };

export class PushWorker {
  readonly #deps: PushWorkerDeps;
  readonly #worker: ConsumerWorker<PushRequest>;
  /** Pushes a target accepted (tests, logs). */
  sent = 0;

  constructor(deps: PushWorkerDeps) {
    this.#deps = deps;
    const { settings } = deps;
    const sources = Array.from({ length: deps.topology.inboxShards }, (_, shard) => ({ stream: names.pushStream(shard), consumer: names.pushSenderConsumer }));
    this.#worker = new ConsumerWorker<PushRequest>(
      {
        name: "push-sender",
        sources,
        decode: (m) => {
          const parsed = PushRequestSchema.safeParse(decodeJsonOrUndefined(m.data));
          return parsed.success ? { value: parsed.data } : { unreadable: "unreadable push request" };
        },
        handle: async ([d]) => [await this.#handle(d!)],
        // A thrown error is NATS trouble (the ledger, the subscriptions): retried until it works.
        failed: (_err, [d]) => ({ kind: "retry", delayMs: retryDelay(settings, d!.attempts) }),
        maxInFlight: settings.concurrency,
        pullAhead: Math.max(16, settings.concurrency),
      },
      { nc: deps.nc, log: deps.log, metrics: deps.metrics },
    );
  }

  async start(): Promise<void> {
    await this.#worker.start();
  }

  async #handle(d: Delivery<PushRequest>): Promise<Outcome> {
    const { log, metrics, settings } = this.#deps;
    const r = d.value;
    const ageMs = Date.now() - r.ts;
    if (ageMs > settings.maxAgeSec * 1000) {
      log.info({ user: r.user, stream: r.stream, seq: r.seq }, "push older than push.maxAgeSec dropped");
      metrics?.pushFailed.inc({ kind: "any", reason: "expired" });
      return { kind: "ack" };
    }
    const subs = await this.#deps.subscriptions.list(r.user);
    const results = await Promise.all(subs.map((s) => this.#deliver(d, r, s, ageMs)));
    const pending = results.filter((x): x is Extract<Delivery_, { settled: false }> => !x.settled);
    if (pending.length === 0) return { kind: "ack" };
    const failing = pending.filter((x) => !x.busy);
    if (failing.length > 0 && d.attempts >= settings.maxAttempts) {
      for (const x of failing) metrics?.pushFailed.inc({ kind: x.kind, reason: "dead" });
      return { kind: "dead", reason: `gave up after ${d.attempts} attempts: ${failing.map((x) => x.reason).join("; ")}` };
    }
    return { kind: "retry", delayMs: Math.max(...pending.map((x) => x.retryMs)) };
  }

  /** Sends `r` to one subscription unless the ledger says it was (or is being) sent. */
  async #deliver(d: Delivery<PushRequest>, r: PushRequest, s: Subscription, ageMs: number): Promise<Delivery_> {
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
        log.info({ ...where, status: outcome.status, reason: outcome.reason }, "push subscription gone; removed");
        await subscriptions.remove(r.user, s.id, s.revision);
        await ledger.settle(key, claim.revision, { state: "dropped", reason: `gone (${outcome.reason ?? `HTTP ${outcome.status}`})` });
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
        const retryMs = retryDelay(settings, d.attempts, outcome.afterMs);
        log.info({ ...where, reason: outcome.reason, attempt: d.attempts, retryInMs: retryMs }, "push failed; will retry");
        return { settled: false, retryMs, reason: `${s.id}: ${outcome.reason}`, busy: false, kind: s.kind };
      }
      default: {
        const never: never = outcome;
        return never;
      }
    }
  }

  /** Stops pulling, lets in-flight requests finish (acked or retried). */
  async stop(): Promise<void> {
    await this.#worker.stop();
  }
}
