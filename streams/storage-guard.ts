// Keeps chat messages out of the last part of each conversation stream (CONVERSATION_RESERVE),
// so that a stream filled with messages still takes membership events and receipts.
//
// The guard reads each conversation stream's bytes every few seconds (one stream info per shard
// per process) and adds what this process has published since: on one edge its view is exact up
// to the stored overhead, and with several edges it trails the others' sends by one interval at
// most (they fill part of the reserve; the stream's own limit is the backstop). A send into a
// stream past its share is refused with STORAGE_FULL before anything is stored.
import type { JetStreamManager } from "@nats-io/jetstream";
import { type Logger, NatterError } from "../core/index.ts";
import { CONVERSATION_RESERVE, conversationStreamOf, names, type Topology } from "../nats/index.ts";

/** What a stored message weighs beyond its payload (subject, headers, index), roughly. */
const STORED_OVERHEAD = 200;

interface Usage {
  /** The stream's bytes at the last read, plus what this process published since. */
  bytes: number;
  maxBytes: number;
}

export class StorageGuard {
  readonly #jsm: JetStreamManager;
  readonly #t: Topology;
  readonly #log: Logger;
  readonly #intervalMs: number;
  readonly #usage = new Map<string, Usage>();
  #timer: NodeJS.Timeout | undefined;
  #refusing = new Set<string>();

  constructor(jsm: JetStreamManager, t: Topology, log: Logger, opts: { intervalMs?: number } = {}) {
    this.#jsm = jsm;
    this.#t = t;
    this.#log = log;
    this.#intervalMs = opts.intervalMs ?? 2000;
  }

  /** Reads every conversation stream's usage now, then every interval until stop(). */
  async start(): Promise<void> {
    await this.refresh();
    this.#timer = setInterval(() => void this.refresh().catch((err: unknown) => this.#log.warn({ err }, "could not read the conversation streams' usage")), this.#intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  async refresh(): Promise<void> {
    for (let shard = 0; shard < this.#t.conversationShards; shard++) {
      const name = names.conversationStream(shard);
      const info = await this.#jsm.streams.info(name);
      this.#usage.set(name, { bytes: info.state.bytes, maxBytes: info.config.max_bytes });
    }
  }

  /** Refuses (STORAGE_FULL) a message of about `bytes` into `conv` when its stream has no room for messages left. */
  admit(conv: string, bytes: number): void {
    const stream = conversationStreamOf(this.#t, conv);
    const u = this.#usage.get(stream);
    if (!u || u.maxBytes <= 0) return;
    if (u.bytes + bytes > u.maxBytes * (1 - CONVERSATION_RESERVE)) {
      if (!this.#refusing.has(stream)) {
        this.#refusing.add(stream);
        this.#log.error({ stream, bytes: u.bytes, maxBytes: u.maxBytes }, "conversation stream full: sends are refused (STORAGE_FULL) until messages expire or streams.storageBytes grows");
      }
      throw new NatterError("STORAGE_FULL");
    }
    if (this.#refusing.delete(stream)) this.#log.warn({ stream }, "conversation stream has room again: sends are accepted");
    u.bytes += bytes + STORED_OVERHEAD;
  }
}
