// The persister: a durable pull consumer on each conversation stream writes every message to the
// MessageStore and acks it only after the write succeeded. Several persister processes share the
// durable consumer and split the work; a redelivered message rewrites the same row (idempotent).
import type { ConsumerMessages, JetStreamClient, JsMsg } from "@nats-io/jetstream";
import type { Logger } from "../core/logger.ts";
import type { Metrics } from "../core/metrics.ts";
import { ConversationEventSchema, deadLetter, names, type Topology } from "../streams/index.ts";
import type { MessageStore, StoredMessage } from "./message-store.ts";
import { decodeJsonOrUndefined } from "../streams/index.ts";

export interface PersisterDeps {
  js: JetStreamClient;
  store: MessageStore;
  topology: Topology;
  log: Logger;
  metrics?: Metrics | undefined;
  /** Largest batch handed to the store at once (default 64). */
  batchSize?: number;
  /** Messages pulled from JetStream ahead of processing (per conversation stream). */
  pullAhead?: number;
  /** Batches written at once; batchSize × maxBatches rows are in flight at most. */
  maxBatches?: number;
  /** Deliveries after which a message failing alone (the store being reachable) is dead-lettered. */
  maxAttempts?: number;
}

export interface PersisterStats {
  persisted: number;
  failedBatches: number;
  deadLettered: number;
}

export class Persister {
  readonly #deps: PersisterDeps;
  readonly #subs: ConsumerMessages[] = [];
  readonly #writes = new Set<Promise<void>>();
  #batch: JsMsg[] = [];
  #scheduled = false;
  readonly stats: PersisterStats = { persisted: 0, failedBatches: 0, deadLettered: 0 };

  constructor(deps: PersisterDeps) {
    this.#deps = deps;
  }

  async start(): Promise<void> {
    const { js, topology } = this.#deps;
    for (let shard = 0; shard < topology.conversationShards; shard++) {
      const consumer = await js.consumers.get(names.conversationStream(shard), names.persisterConsumer);
      const messages = await consumer.consume({ max_messages: this.#deps.pullAhead ?? 1024, callback: (m) => this.#take(m) });
      this.#subs.push(messages);
    }
  }

  #take(m: JsMsg): void {
    this.#batch.push(m);
    if (this.#batch.length >= this.#batchSize) {
      this.#flush();
    } else if (!this.#scheduled) {
      // Everything that arrived in this turn of the event loop goes in one batch.
      this.#scheduled = true;
      setImmediate(() => this.#flush());
    }
  }

  get #batchSize(): number {
    return this.#deps.batchSize ?? 64;
  }

  /**
   * Starts batch writes while fewer than `maxBatches` are in flight. Several small batches in
   * flight keep the store's concurrency busy between batches (one big batch waits for its slowest
   * row); what does not fit waits here, bounded by the consumer's max_ack_pending.
   */
  #flush(): void {
    this.#scheduled = false;
    const maxBatches = this.#deps.maxBatches ?? 4;
    while (this.#batch.length > 0 && this.#writes.size < maxBatches) {
      const batch = this.#batch.splice(0, this.#batchSize);
      const w: Promise<void> = this.#write(batch).finally(() => {
        this.#writes.delete(w);
        this.#flush();
      });
      this.#writes.add(w);
    }
  }

  async #write(batch: JsMsg[]): Promise<void> {
    const rows: StoredMessage[] = [];
    const good: JsMsg[] = [];
    for (const m of batch) {
      const row = toRow(m);
      if (row === NOT_STORED) {
        m.ack();
        continue;
      }
      if (row) {
        rows.push(row);
        good.push(m);
      } else {
        await this.#deadLetter(m, "unreadable: not a natter conversation event");
      }
    }
    if (good.length === 0) return;
    const t0 = performance.now();
    try {
      await this.#deps.store.putMessages(rows);
    } catch (err) {
      this.stats.failedBatches++;
      await this.#recover(good, rows, err);
      return;
    }
    this.#deps.metrics?.persistBatches.observe((performance.now() - t0) / 1000);
    for (const m of good) m.ack();
    this.#persisted(good.length);
  }

  #persisted(n: number): void {
    this.stats.persisted += n;
    this.#deps.metrics?.persisted.inc(n);
  }

  /**
   * A batch failed. If the store is unreachable, everything waits (nak with backoff, never dead-
   * lettered: JetStream keeps the messages until the store is back). If it is reachable, each
   * message is tried alone; one that keeps failing alone is dead-lettered with the reason.
   */
  async #recover(batch: JsMsg[], rows: StoredMessage[], err: unknown): Promise<void> {
    const { store, log, metrics } = this.#deps;
    const reachable = await store.ping().then(() => true, () => false);
    if (!reachable) {
      metrics?.persistFailures.inc({ kind: "unavailable" }, batch.length);
      const attempt = Math.max(...batch.map((m) => m.info.deliveryCount));
      // Short waits: the store's return should be noticed within seconds, not minutes.
      const delay = Math.min(5000, backoff(attempt));
      log.warn({ err, count: batch.length, attempt, retryInMs: delay }, "store unavailable; messages stay in JetStream and are retried");
      for (const m of batch) m.nak(delay);
      return;
    }
    const maxAttempts = this.#deps.maxAttempts ?? 5;
    for (let i = 0; i < batch.length; i++) {
      const m = batch[i]!;
      try {
        await store.putMessages([rows[i]!]);
        m.ack();
        this.#persisted(1);
      } catch (one) {
        metrics?.persistFailures.inc({ kind: "message" });
        if (m.info.deliveryCount >= maxAttempts) {
          await this.#deadLetter(m, `store write failed ${m.info.deliveryCount} times: ${(one as Error).message}`);
        } else {
          log.warn({ err: one, stream: m.info.stream, seq: m.seq, attempt: m.info.deliveryCount }, "store write of one message failed; will retry");
          m.nak(backoff(m.info.deliveryCount));
        }
      }
    }
  }

  async #deadLetter(m: JsMsg, reason: string): Promise<void> {
    try {
      await deadLetter(this.#deps.js, m, "persister", reason);
      this.stats.deadLettered++;
      this.#deps.metrics?.deadLetters.inc({ worker: "persister" });
      this.#deps.log.error({ stream: m.info.stream, seq: m.seq, reason }, "message dead-lettered");
    } catch (err) {
      this.#deps.log.warn({ err, stream: m.info.stream, seq: m.seq }, "could not dead-letter; will retry");
      m.nak(backoff(m.info.deliveryCount));
    }
  }

  /** Stops pulling and waits for writes in flight (their messages are acked or nak'd). */
  async stop(): Promise<void> {
    for (const s of this.#subs) s.stop();
    this.#flush();
    while (this.#writes.size > 0) await Promise.allSettled([...this.#writes]);
  }
}

function backoff(attempt: number): number {
  return Math.min(30_000, 500 * 2 ** Math.min(Math.max(attempt - 1, 0), 6));
}

/**
 * Receipts are not written to the store: they are state, not history (history never returns them),
 * and their durable copy is the user-convs index the fan-out keeps (streams/conversation-index.ts).
 */
const NOT_STORED = Symbol("not stored");

function toRow(m: JsMsg): StoredMessage | typeof NOT_STORED | undefined {
  const parsed = ConversationEventSchema.safeParse(decodeJsonOrUndefined(m.data));
  if (!parsed.success) return undefined;
  const p = parsed.data;
  if (p.type === "receipt") return NOT_STORED;
  return p.type === "msg"
    ? { conv: p.conv, id: m.seq, kind: "msg", from: p.from, device: p.device, cid: p.cid, text: p.text, ts: p.ts, ...(p.images ? { images: p.images } : {}) }
    : {
        conv: p.conv,
        id: m.seq,
        kind: "members",
        from: p.by,
        device: "",
        cid: "",
        text: JSON.stringify({ action: p.action, user: p.user, members: p.members, name: p.name, owner: p.owner }),
        ts: p.ts,
      };
}

