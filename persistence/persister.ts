// The persister: a durable pull consumer on each conversation stream writes every message to the
// MessageStore, on the worker base (nats/worker.ts), and acks it only after the write succeeded.
// Several persister processes may share the durable consumer; a repeated message rewrites the
// same row (idempotent).
//
// Messages wait per conversation (the worker's key). A conversation has at most one write in
// flight; what arrives for it meanwhile waits and goes in its next write, all together. So under a
// backlog a busy conversation's rows go as one batch (one partition, one request), when keeping up
// each message is written as it comes, and many quiet conversations are written side by side, up
// to `maxWrites` at once.
//
// Failures: the store unreachable → everything waits and is retried within seconds, never
// dead-lettered (JetStream keeps the messages). A batch failing while the store answers → each of
// its messages is written alone; one that keeps failing alone is dead-lettered after maxAttempts.
import type { NatsConnection } from "@nats-io/transport-node";
import { type Logger, type Metrics, NatterError } from "../core/index.ts";
import { backoffDelay, ConsumerWorker, decodeJsonOrUndefined, names, type Decoded, type Delivery, type Outcome, type Topology } from "../nats/index.ts";
import { ConversationEventSchema, recordOf } from "../streams/index.ts";
import type { MessageStore, StoredMessage } from "./message-store.ts";

export interface PersisterDeps {
  nc: NatsConnection;
  store: MessageStore;
  topology: Topology;
  log: Logger;
  metrics?: Metrics | undefined;
  /** The consumers' ack_wait (ms). */
  ackWaitMs?: number | undefined;
  /** Store writes in flight at once (default 64, as workers.persistConcurrency): one per conversation, with all its waiting messages. */
  maxWrites?: number;
  /** Most messages of one conversation handed to the store in one write (default 256). */
  maxRowsPerWrite?: number;
  /** Messages pulled from JetStream ahead of processing (per conversation stream). */
  pullAhead?: number;
  /** Deliveries after which a message failing alone (the store being reachable) is dead-lettered. */
  maxAttempts?: number;
}

export interface PersisterStats {
  persisted: number;
  /** Store writes (each one conversation's waiting messages). */
  writes: number;
  failedBatches: number;
  deadLettered: number;
}

/** Retries while the store is down are short: its return should be noticed within seconds. */
const UNAVAILABLE_BACKOFF = { baseMs: 500, maxMs: 5000 };
const MESSAGE_BACKOFF = { baseMs: 500, maxMs: 30_000 };

export class Persister {
  readonly #deps: PersisterDeps;
  readonly #worker: ConsumerWorker<StoredMessage>;
  readonly #stats = { persisted: 0, writes: 0, failedBatches: 0 };

  constructor(deps: PersisterDeps) {
    this.#deps = deps;
    const sources = Array.from({ length: deps.topology.conversationShards }, (_, shard) => ({ stream: names.conversationStream(shard), consumer: names.persisterConsumer }));
    this.#worker = new ConsumerWorker<StoredMessage>(
      {
        name: "persister",
        sources,
        decode: toRow,
        key: (row) => row.conv,
        handle: (batch) => this.#write(batch),
        failed: (_err, batch) => ({ kind: "retry", delayMs: backoffDelay(Math.max(...batch.map((d) => d.attempts)), UNAVAILABLE_BACKOFF) }),
        maxBatch: deps.maxRowsPerWrite ?? 256,
        maxInFlight: deps.maxWrites ?? 64,
        pullAhead: deps.pullAhead ?? 1024,
      },
      { nc: deps.nc, log: deps.log, metrics: deps.metrics, ackWaitMs: deps.ackWaitMs },
    );
  }

  get stats(): PersisterStats {
    return { ...this.#stats, deadLettered: this.#worker.stats.deadLettered };
  }

  // biome-ignore lint/suspicious/noConfusingVoidType: nothing means the whole batch was written
  async #write(batch: readonly Delivery<StoredMessage>[]): Promise<void | Outcome[]> {
    const { store, log, metrics } = this.#deps;
    const t0 = performance.now();
    this.#stats.writes++;
    try {
      await store.putMessages(batch.map((d) => d.value));
      metrics?.persistBatches.observe((performance.now() - t0) / 1000);
      this.#persisted(batch.length);
      return;
    } catch (err) {
      this.#stats.failedBatches++;
      if (!(await store.ping().then(() => true, () => false))) {
        metrics?.persistFailures.inc({ kind: "unavailable" }, batch.length);
        log.warn({ err, count: batch.length }, "store unavailable; messages stay in JetStream and are retried");
        throw new NatterError("UNAVAILABLE", "store unavailable", { cause: err });
      }
    }
    // The store answers: one message of the batch may be the problem. Each alone.
    const maxAttempts = this.#deps.maxAttempts ?? 5;
    const outcomes: Outcome[] = [];
    for (const d of batch) {
      try {
        await store.putMessages([d.value]);
        this.#persisted(1);
        outcomes.push({ kind: "ack" });
      } catch (one) {
        metrics?.persistFailures.inc({ kind: "message" });
        if (d.attempts >= maxAttempts) {
          outcomes.push({ kind: "dead", reason: `store write failed ${d.attempts} times: ${(one as Error).message}` });
        } else {
          log.warn({ err: one, stream: d.stream, seq: d.seq, attempt: d.attempts }, "store write of one message failed; will retry");
          outcomes.push({ kind: "retry", delayMs: backoffDelay(d.attempts, MESSAGE_BACKOFF) });
        }
      }
    }
    return outcomes;
  }

  #persisted(n: number): void {
    this.#stats.persisted += n;
    this.#deps.metrics?.persisted.inc(n);
  }

  async start(): Promise<void> {
    await this.#worker.start();
  }

  /** Stops pulling and waits for writes in flight (their messages are acked or retried). */
  async stop(): Promise<void> {
    await this.#worker.stop();
  }
}

/**
 * The row of a conversation event. Receipts are not written to the store: they are state, not
 * history (history never returns them), and their durable copy is the user-convs index the
 * fan-out keeps (streams/conversation-index.ts).
 */
function toRow(m: { data: Uint8Array; seq: number }): Decoded<StoredMessage> {
  const parsed = ConversationEventSchema.safeParse(decodeJsonOrUndefined(m.data));
  if (!parsed.success) return { unreadable: "unreadable: not a natter conversation event" };
  if (parsed.data.type === "receipt") return { skip: true };
  return { value: recordOf(m.seq, parsed.data) };
}
