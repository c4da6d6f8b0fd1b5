// The persister: a durable pull consumer on each conversation stream writes every message to the
// MessageStore and acks it only after the write succeeded. Several persister processes share the
// durable consumer and split the work; a redelivered message rewrites the same row (idempotent).
import type { ConsumerMessages, JetStreamClient, JsMsg } from "@nats-io/jetstream";
import type { Logger } from "../core/logger.ts";
import type { Metrics } from "../core/metrics.ts";
import { deadLetter, decodeJsonOrUndefined, names, type Topology } from "../nats/index.ts";
import { ConversationEventSchema } from "../streams/index.ts";
import type { MessageStore, StoredMessage } from "./message-store.ts";

export interface PersisterDeps {
  js: JetStreamClient;
  store: MessageStore;
  topology: Topology;
  log: Logger;
  metrics?: Metrics | undefined;
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

interface Pending {
  m: JsMsg;
  row: StoredMessage;
}

/**
 * Messages wait per conversation. A conversation has at most one write in flight; what arrives
 * for it meanwhile waits and goes in its next write, all together. So under a backlog a busy
 * conversation's rows go as one batch (one partition, one request), when keeping up each message
 * is written as it comes, and many quiet conversations are written side by side, up to
 * `maxWrites` at once. A conversation's rows are written in order, never racing each other.
 */
export class Persister {
  readonly #deps: PersisterDeps;
  readonly #subs: ConsumerMessages[] = [];
  readonly #writes = new Set<Promise<void>>();
  /** Conversations with messages to write and no write in flight, oldest first. */
  readonly #ready = new Map<string, Pending[]>();
  /** Messages of conversations with a write in flight: ready again when it ends. */
  readonly #held = new Map<string, Pending[]>();
  readonly #busy = new Set<string>();
  #scheduled = false;
  readonly stats: PersisterStats = { persisted: 0, writes: 0, failedBatches: 0, deadLettered: 0 };

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
    const row = toRow(m);
    if (row === NOT_STORED) {
      m.ack();
      return;
    }
    if (!row) {
      this.#track(this.#deadLetter(m, "unreadable: not a natter conversation event"));
      return;
    }
    const queue = this.#busy.has(row.conv) ? this.#held : this.#ready;
    const waiting = queue.get(row.conv);
    if (waiting) waiting.push({ m, row });
    else queue.set(row.conv, [{ m, row }]);
    if (!this.#scheduled) {
      // Everything that arrived in this turn of the event loop is grouped before writing.
      this.#scheduled = true;
      setImmediate(() => this.#pump());
    }
  }

  /** Starts writes, oldest conversation first, while fewer than `maxWrites` are in flight. */
  #pump(): void {
    this.#scheduled = false;
    const maxWrites = this.#deps.maxWrites ?? 64;
    const maxRows = this.#deps.maxRowsPerWrite ?? 256;
    while (this.#writes.size < maxWrites) {
      const first = this.#ready.entries().next();
      if (first.done) return;
      const [conv, waiting] = first.value;
      this.#ready.delete(conv);
      const group = waiting.length <= maxRows ? waiting : waiting.splice(0, maxRows);
      if (group !== waiting) this.#held.set(conv, waiting);
      this.#busy.add(conv);
      this.#track(
        this.#write(group).finally(() => {
          this.#busy.delete(conv);
          const next = this.#held.get(conv);
          if (next) {
            this.#held.delete(conv);
            this.#ready.set(conv, next);
          }
        }),
      );
    }
  }

  #track(p: Promise<void>): void {
    const w: Promise<void> = p.finally(() => {
      this.#writes.delete(w);
      this.#pump();
    });
    this.#writes.add(w);
  }

  async #write(group: Pending[]): Promise<void> {
    const rows = group.map((p) => p.row);
    const msgs = group.map((p) => p.m);
    const t0 = performance.now();
    this.stats.writes++;
    try {
      await this.#deps.store.putMessages(rows);
    } catch (err) {
      this.stats.failedBatches++;
      await this.#recover(msgs, rows, err);
      return;
    }
    this.#deps.metrics?.persistBatches.observe((performance.now() - t0) / 1000);
    for (const m of msgs) m.ack();
    this.#persisted(msgs.length);
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
    this.#pump();
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

