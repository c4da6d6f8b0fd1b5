// The persister: a durable pull consumer on each conversation stream writes every message to the
// MessageStore and acks it only after the write succeeded. Several persister processes share the
// durable consumer and split the work; a redelivered message rewrites the same row (idempotent).
import type { ConsumerMessages, JetStreamClient, JsMsg } from "@nats-io/jetstream";
import type { Logger } from "../core/logger.ts";
import { ConversationEventSchema, decodeJson, names, type Topology } from "../streams/index.ts";
import type { MessageStore, StoredMessage } from "./message-store.ts";

export interface PersisterDeps {
  js: JetStreamClient;
  store: MessageStore;
  topology: Topology;
  log: Logger;
  /** Largest batch handed to the store at once. */
  batchSize?: number;
}

export interface PersisterStats {
  persisted: number;
  failedBatches: number;
  poison: number;
}

export class Persister {
  readonly #deps: PersisterDeps;
  readonly #subs: ConsumerMessages[] = [];
  readonly #writes = new Set<Promise<void>>();
  #batch: JsMsg[] = [];
  #scheduled = false;
  readonly stats: PersisterStats = { persisted: 0, failedBatches: 0, poison: 0 };

  constructor(deps: PersisterDeps) {
    this.#deps = deps;
  }

  async start(): Promise<void> {
    const { js, topology } = this.#deps;
    for (let shard = 0; shard < topology.conversationShards; shard++) {
      const consumer = await js.consumers.get(names.conversationStream(shard), names.persisterConsumer);
      const messages = await consumer.consume({ max_messages: 1024, callback: (m) => this.#take(m) });
      this.#subs.push(messages);
    }
  }

  #take(m: JsMsg): void {
    this.#batch.push(m);
    if (this.#batch.length >= (this.#deps.batchSize ?? 512)) {
      this.#flush();
    } else if (!this.#scheduled) {
      // Everything that arrived in this turn of the event loop goes in one batch.
      this.#scheduled = true;
      setImmediate(() => this.#flush());
    }
  }

  #flush(): void {
    this.#scheduled = false;
    const batch = this.#batch;
    this.#batch = [];
    if (batch.length === 0) return;
    const w = this.#write(batch).finally(() => this.#writes.delete(w));
    this.#writes.add(w);
  }

  async #write(batch: JsMsg[]): Promise<void> {
    const rows: StoredMessage[] = [];
    const good: JsMsg[] = [];
    for (const m of batch) {
      const parsed = ConversationEventSchema.safeParse(safeJson(m.data));
      if (!parsed.success) {
        this.stats.poison++;
        this.#deps.log.error({ stream: m.info.stream, seq: m.seq }, "unreadable message in conversation stream; terminated");
        m.term("unreadable message");
        continue;
      }
      const p = parsed.data;
      rows.push(
        p.type === "msg"
          ? { conv: p.conv, id: m.seq, kind: "msg", from: p.from, device: p.device, cid: p.cid, text: p.text, ts: p.ts }
          : {
              conv: p.conv,
              id: m.seq,
              kind: "members",
              from: p.by,
              device: "",
              cid: "",
              text: JSON.stringify({ action: p.action, user: p.user, members: p.members, name: p.name, owner: p.owner }),
              ts: p.ts,
            },
      );
      good.push(m);
    }
    try {
      await this.#deps.store.putMessages(rows);
    } catch (err) {
      this.stats.failedBatches++;
      const attempt = Math.max(...good.map((m) => m.info.deliveryCount));
      const delay = Math.min(30_000, 500 * 2 ** Math.min(attempt - 1, 6));
      this.#deps.log.warn({ err, count: good.length, attempt, retryInMs: delay }, "store write failed; messages will be redelivered");
      for (const m of good) m.nak(delay);
      return;
    }
    for (const m of good) m.ack();
    this.stats.persisted += good.length;
  }

  /** Stops pulling and waits for writes in flight (their messages are acked or nak'd). */
  async stop(): Promise<void> {
    for (const s of this.#subs) s.stop();
    this.#flush();
    await Promise.allSettled([...this.#writes]);
  }
}

function safeJson(data: Uint8Array): unknown {
  try {
    return decodeJson(data);
  } catch {
    return undefined;
  }
}
