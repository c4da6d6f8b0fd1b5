// The one skeleton every JetStream worker runs on (fan-out, persister, push dispatch and sending,
// presence, the upload sweeper). A worker is a spec: how to read a message, what orders it, what
// to do with a batch; the base does the rest, once:
//
// - pulls from durable consumers (callback delivery: a read from NATS hands over many messages
//   in one turn, and their acks leave in one write);
// - orders by key: deliveries with the same key (a conversation) are handled one batch at a time
//   in stream order, the batch being everything of that key that waited; different keys run side
//   by side, up to `maxInFlight` batches;
// - acks a message only after its handler resolved (the effect is durable), dead-letters what can
//   never succeed, and retries the rest with exponential backoff — in place for a keyed worker (a
//   failed batch holds its key, so nothing behind it overtakes it), by nak for an unkeyed one;
// - keeps held messages from being redelivered while they wait (`working()` every ack_wait/3),
//   folds a redelivery of a message it still holds into the one it has;
// - on start, can reset its consumers to their ack floor, so what a dead predecessor left unacked
//   comes back first and in order, instead of after ack_wait behind newer messages;
// - on stop, lets running batches finish and hands the rest back (nak) for the next process;
// - for a replayable worker (dead-letter.ts), also pulls its replays from the REPLAY stream, each
//   taken as the original message (its stream, sequence and subject), so it is handled as that one;
// - logs a batch that failed for a while (NATS or the store slow or away: thousands of keys can
//   fail at once, each retry) in one warn line per 10 s with the counts and one cause; one that
//   cannot succeed as it is (a NatterError neither temporary nor UNAVAILABLE) at error, each.
import { jetstream, type ConsumerMessages, type DeliveryInfo, type JetStreamClient, type JsMsg } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { type Logger, type Metrics, MistakeLog, NatterError } from "../core/index.ts";
import { deadLetter, isReplayable, replayOrigin, type DeadLetterWorker, type Origin } from "./dead-letter.ts";
import { names } from "./subjects.ts";

/**
 * What a worker reads of a message: a JetStream delivery, or a replayed dead letter standing in for
 * the original (its stream, sequence and subject are the original's).
 */
export type SourceMsg = Pick<JsMsg, "data" | "seq" | "subject" | "headers" | "redelivered"> & {
  readonly info: Pick<DeliveryInfo, "stream" | "deliverySequence" | "timestampNanos" | "deliveryCount">;
};

/** What a message is to a worker: a value to handle, nothing to do (ack), or never readable (dead-letter). */
export type Decoded<T> = { value: T } | { skip: true } | { unreadable: string };

export interface Delivery<T> {
  /** The latest delivery of this stream message (ack through it). */
  msg: JsMsg;
  readonly value: T;
  readonly stream: string;
  readonly seq: number;
  /** Attempts so far, this one included (JetStream's deliveries and this process's retries). */
  attempts: number;
  /** When it was last received or kept alive (ms). */
  touchedAt: number;
  /** Where it came from (a replay's original). */
  readonly origin: Origin;
}

/** What became of one delivery of a batch. */
export type Outcome = { kind: "ack" } | { kind: "retry"; delayMs?: number | undefined; reason?: string | undefined } | { kind: "dead"; reason: string };

/** What a failed batch (the handler threw) calls for. */
type FailureDecision = { kind: "retry"; delayMs?: number | undefined } | { kind: "dead"; reason: string };

export interface WorkerSpec<T> {
  /** For logs, metrics and dead letters. */
  name: DeadLetterWorker;
  /** Durable consumers to pull from: (stream, consumer) pairs. */
  sources: readonly { stream: string; consumer: string }[];
  decode(m: SourceMsg): Decoded<T>;
  /** Deliveries with one key are handled in stream order, one batch at a time. Absent: each stands alone. */
  key?(value: T): string;
  /** Handles a batch: resolve when every effect is durable (all acked), or give an outcome per delivery. */
  // biome-ignore lint/suspicious/noConfusingVoidType: resolving with nothing (any async function) means every delivery succeeded
  handle(batch: readonly Delivery<T>[]): Promise<void | readonly Outcome[]>;
  /** A thrown error: retried with backoff unless this says otherwise. */
  failed?(err: unknown, batch: readonly Delivery<T>[]): FailureDecision;
  /** Most deliveries per batch (keyed workers; unkeyed batches hold one). Default 256. */
  maxBatch?: number;
  /** Batches handled at once. Default 64. */
  maxInFlight?: number;
  /** Messages pulled ahead per consumer. Default 512. */
  pullAhead?: number;
  /**
   * Resets the consumers to their ack floor before pulling (for a worker whose order matters and
   * that is the only one on its consumers): what a dead predecessor left unacked comes back first.
   */
  resetOnStart?: boolean;
  /** Backoff of the n-th retry: base × 2^(n−1), at most max. Default 250 ms → 30 s. */
  backoff?: { baseMs: number; maxMs: number };
}

export interface WorkerDeps {
  nc: NatsConnection;
  log: Logger;
  metrics?: Metrics | undefined;
  /** The consumers' ack_wait (ms): held messages are kept alive well within it. Default 30 s (streams.ackWaitSec). */
  ackWaitMs?: number | undefined;
}

export interface WorkerStats {
  /** Deliveries acked after their handler succeeded. */
  handled: number;
  batches: number;
  retries: number;
  deadLettered: number;
}

/** Delay before retry `attempt` (1-based) with the spec's backoff. */
export function backoffDelay(attempt: number, b: { baseMs: number; maxMs: number } = { baseMs: 250, maxMs: 30_000 }): number {
  return Math.min(b.maxMs, b.baseMs * 2 ** Math.min(Math.max(attempt - 1, 0), 20));
}

export class ConsumerWorker<T> {
  readonly #spec: WorkerSpec<T>;
  readonly #deps: WorkerDeps;
  readonly #js: JetStreamClient;
  readonly #subs: ConsumerMessages[] = [];
  /** Every delivery this worker holds (waiting, running or waiting to retry), by stream#seq. */
  readonly #known = new Map<string, Delivery<T>>();
  /** Deliveries waiting per key, in stream order. */
  readonly #queues = new Map<string, Delivery<T>[]>();
  /** Keys with waiting deliveries and no batch running or held, oldest first. */
  readonly #ready = new Set<string>();
  /** Keys with a batch running or held for a retry. */
  readonly #active = new Set<string>();
  readonly #running = new Set<Promise<void>>();
  readonly #timers = new Set<NodeJS.Timeout>();
  #keepAlive: NodeJS.Timeout | undefined;
  #scheduled = false;
  #stopping = false;
  readonly stats: WorkerStats = { handled: 0, batches: 0, retries: 0, deadLettered: 0 };
  readonly #failures: MistakeLog;

  constructor(spec: WorkerSpec<T>, deps: WorkerDeps) {
    this.#spec = spec;
    this.#deps = deps;
    this.#failures = new MistakeLog(deps.log, 10_000, `${spec.name}: batches failed and will be retried`);
    this.#js = jetstream(deps.nc);
  }

  get name(): string {
    return this.#spec.name;
  }

  /** Deliveries held now (waiting, running, or waiting to retry). */
  get holding(): number {
    return this.#known.size;
  }

  async start(): Promise<void> {
    const js = this.#js;
    for (const src of this.#spec.sources) {
      // A keyed worker's order survives a predecessor's death: what it left unacked is delivered
      // again first, now, in stream order (idempotent handlers make the repeats harmless).
      if (this.#spec.resetOnStart) await this.#resetToAckFloor(src.stream, src.consumer);
      const consumer = await js.consumers.get(src.stream, src.consumer);
      const messages = await consumer.consume({ max_messages: this.#spec.pullAhead ?? 512, callback: (m) => this.#receive(m, false) });
      this.#subs.push(messages);
    }
    if (isReplayable(this.#spec.name)) {
      const consumer = await js.consumers.get(names.replayStream, names.replayConsumer(this.#spec.name));
      this.#subs.push(await consumer.consume({ max_messages: 16, callback: (m) => this.#receive(m, true) }));
    }
    const every = Math.max(250, Math.floor((this.#deps.ackWaitMs ?? 30_000) / 3));
    this.#keepAlive = setInterval(() => this.#touch(every), every);
    this.#keepAlive.unref();
  }

  async #resetToAckFloor(stream: string, consumer: string): Promise<void> {
    const r = await this.#deps.nc.request(`$JS.API.CONSUMER.RESET.${stream}.${consumer}`, "{}", { timeout: 10_000 });
    const body = r.json<{ error?: { code: number; err_code?: number; description?: string } }>();
    if (body.error) {
      throw new NatterError("UNAVAILABLE", `could not reset consumer ${stream}/${consumer}: ${body.error.description ?? body.error.code}`);
    }
  }

  #receive(m: JsMsg, replay: boolean): void {
    if (this.#stopping) {
      m.nak();
      return;
    }
    const origin = replay ? replayOrigin(m) : { stream: m.info.stream, seq: m.seq, subject: m.subject };
    if (!origin) {
      this.#deps.log.error({ worker: this.#spec.name, seq: m.seq }, "a replay without its origin (Natter-Replay-* headers) dropped");
      m.term("no origin");
      return;
    }
    const id = `${origin.stream}#${origin.seq}`;
    const known = this.#known.get(id);
    if (known) {
      // A redelivery of a message still held here: answer through the newest delivery.
      known.msg = m;
      known.touchedAt = Date.now();
      return;
    }
    let decoded: Decoded<T>;
    try {
      decoded = this.#spec.decode(replay ? asOriginal(m, origin) : m);
    } catch (err) {
      decoded = { unreadable: `unreadable: ${(err as Error).message}` };
    }
    if ("skip" in decoded) {
      m.ack();
      return;
    }
    if ("unreadable" in decoded) {
      this.#track(this.#deadLetter(m, origin, decoded.unreadable));
      return;
    }
    const d: Delivery<T> = { msg: m, value: decoded.value, stream: origin.stream, seq: origin.seq, attempts: m.info.deliveryCount, touchedAt: Date.now(), origin };
    this.#known.set(id, d);
    const key = this.#spec.key ? this.#spec.key(d.value) : id;
    const queue = this.#queues.get(key);
    if (queue) queue.push(d);
    else this.#queues.set(key, [d]);
    if (!this.#active.has(key)) this.#ready.add(key);
    if (!this.#scheduled) {
      // Everything that arrived in this turn of the event loop is grouped before handling.
      this.#scheduled = true;
      setImmediate(() => this.#pump());
    }
  }

  /** Starts batches, oldest key first, while fewer than maxInFlight run. */
  #pump(): void {
    this.#scheduled = false;
    const max = this.#spec.maxInFlight ?? 64;
    const maxBatch = this.#spec.key ? (this.#spec.maxBatch ?? 256) : 1;
    while (this.#running.size < max && !this.#stopping) {
      const next = this.#ready.values().next();
      if (next.done) return;
      const key = next.value;
      this.#ready.delete(key);
      const queue = this.#queues.get(key);
      if (!queue || queue.length === 0) continue;
      const batch = queue.length <= maxBatch ? queue : queue.splice(0, maxBatch);
      if (batch === queue) this.#queues.delete(key);
      this.#active.add(key);
      this.#track(this.#run(key, batch));
    }
  }

  #track(p: Promise<void>): void {
    const t: Promise<void> = p.finally(() => {
      this.#running.delete(t);
      this.#pump();
    });
    this.#running.add(t);
  }

  async #run(key: string, batch: Delivery<T>[]): Promise<void> {
    const { log, metrics } = this.#deps;
    const t0 = performance.now();
    this.stats.batches++;
    let outcomes: readonly Outcome[];
    try {
      const result = await this.#spec.handle(batch);
      outcomes = result ?? batch.map(() => ACK);
    } catch (err) {
      const decision = this.#spec.failed?.(err, batch) ?? { kind: "retry" };
      if (decision.kind === "retry") {
        const attempt = Math.max(...batch.map((d) => d.attempts));
        const delayMs = decision.delayMs ?? backoffDelay(attempt, this.#spec.backoff);
        if (err instanceof NatterError && !err.temporary && err.code !== "UNAVAILABLE") {
          log.error({ err, worker: this.#spec.name, stream: batch[0]!.stream, seq: batch[0]!.seq, count: batch.length, attempt, retryInMs: delayMs }, `${this.#spec.name}: failed; will retry`);
        } else {
          this.#failures.note(err instanceof NatterError ? err.code : ((err as Error | undefined)?.name ?? "Error"), err);
        }
      }
      outcomes = batch.map(() => (decision.kind === "retry" ? { kind: "retry", delayMs: decision.delayMs } : decision));
    }
    metrics?.workerBatchSeconds.observe({ worker: this.#spec.name }, (performance.now() - t0) / 1000);
    await this.#settle(key, batch, outcomes);
  }

  async #settle(key: string, batch: Delivery<T>[], outcomes: readonly Outcome[]): Promise<void> {
    const retry: Delivery<T>[] = [];
    let retryMs = 0;
    const dead: Promise<void>[] = [];
    let acked = 0;
    batch.forEach((d, i) => {
      // A handler that gives fewer outcomes than deliveries has not settled the rest: retried.
      const o = outcomes[i] ?? RETRY;
      switch (o.kind) {
        case "ack":
          d.msg.ack();
          this.#forget(d);
          acked++;
          return;
        case "dead":
          this.#forget(d);
          dead.push(this.#deadLetter(d.msg, d.origin, o.reason));
          return;
        case "retry":
          retry.push(d);
          retryMs = Math.max(retryMs, o.delayMs ?? backoffDelay(d.attempts, this.#spec.backoff));
          return;
      }
    });
    this.stats.handled += acked;
    this.#deps.metrics?.workerHandled.inc({ worker: this.#spec.name }, acked);
    if (retry.length > 0) {
      this.stats.retries += retry.length;
      this.#deps.metrics?.workerRetries.inc({ worker: this.#spec.name }, retry.length);
    }
    await Promise.all(dead);
    if (retry.length === 0 || !this.#spec.key) {
      // Unkeyed: hand it back to JetStream with the delay; nothing waits behind it.
      for (const d of retry) {
        this.#forget(d);
        d.msg.nak(retryMs);
      }
      this.#release(key);
      return;
    }
    // Keyed: the key stays held; the retried deliveries go first when the delay is over.
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      for (const d of retry) d.attempts++;
      const waiting = this.#queues.get(key) ?? [];
      this.#queues.set(key, [...retry, ...waiting]);
      this.#release(key);
      this.#pump();
    }, retryMs);
    this.#timers.add(timer);
  }

  #release(key: string): void {
    this.#active.delete(key);
    if (this.#queues.has(key)) this.#ready.add(key);
  }

  #forget(d: Delivery<T>): void {
    this.#known.delete(`${d.stream}#${d.seq}`);
  }

  async #deadLetter(m: JsMsg, origin: Origin, reason: string): Promise<void> {
    const { log, metrics } = this.#deps;
    const where = { worker: this.#spec.name, stream: origin.stream, seq: origin.seq, replaySeq: origin.replaySeq };
    try {
      await deadLetter(this.#js, m, origin, this.#spec.name, reason);
      this.stats.deadLettered++;
      metrics?.deadLetters.inc({ worker: this.#spec.name });
      log.error({ ...where, reason }, "message dead-lettered");
    } catch (err) {
      const delayMs = backoffDelay(m.info.deliveryCount, this.#spec.backoff);
      log.warn({ ...where, err, retryInMs: delayMs }, "could not dead-letter; will retry");
      m.nak(delayMs);
    }
  }

  /** Tells JetStream that held deliveries are still being worked on, so it does not redeliver them. */
  #touch(olderThanMs: number): void {
    const now = Date.now();
    for (const d of this.#known.values()) {
      if (now - d.touchedAt < olderThanMs) continue;
      d.touchedAt = now;
      d.msg.working();
    }
  }

  /** Stops pulling, lets running batches finish (acked or retried), hands everything else back. */
  async stop(): Promise<void> {
    this.#stopping = true;
    for (const s of this.#subs) s.stop();
    clearInterval(this.#keepAlive);
    while (this.#running.size > 0) await Promise.allSettled([...this.#running]);
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    for (const d of this.#known.values()) d.msg.nak();
    this.#known.clear();
    this.#queues.clear();
    this.#ready.clear();
    this.#active.clear();
    this.#failures.flush();
  }
}

/** A replayed message as the original: the original's stream, sequence and subject, the replay's data, headers and deliveries. */
function asOriginal(m: JsMsg, origin: Origin): SourceMsg {
  const info = m.info;
  return {
    data: m.data,
    seq: origin.seq,
    subject: origin.subject,
    headers: m.headers,
    redelivered: m.redelivered,
    info: { stream: origin.stream, deliverySequence: info.deliverySequence, timestampNanos: info.timestampNanos, deliveryCount: info.deliveryCount },
  };
}

const ACK: Outcome = { kind: "ack" };
const RETRY: Outcome = { kind: "retry" };
