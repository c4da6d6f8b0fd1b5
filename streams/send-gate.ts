// Sends stop before messages could expire unpersisted. A conversation message lives in its stream
// for streams.conversationMaxAgeSec (a per-message TTL) whether or not the persister wrote it to
// the store; a persister that cannot write for longer would lose it without a word. So each
// process that publishes messages reads, in the background, the age of the oldest message the
// persister has not acked on each conversation stream (one consumer info, and a direct get when
// something is pending, per shard per interval), and refuses new messages to a shard whose
// backlog is older than streams.refuseSendsAtBacklogPct of the retention: STORE_BEHIND, temporary,
// logged at error level once per interval while it lasts. A send costs a map lookup, no request.
//
// Membership changes and receipts are not refused: membership events carry no TTL (they wait for
// the persister however long it takes) and receipts are not written to the store at all.
import { type Logger, NatterError } from "../core/index.ts";
import { conversationStreamOf, names, oldestUnackedAgeMs, type Topology } from "../nats/index.ts";
import type { JetStreamManager } from "@nats-io/jetstream";

export interface SendGateOptions {
  jsm: JetStreamManager;
  topology: Topology;
  /** The messages' TTL (streams.conversationMaxAgeSec). */
  retentionSec: number;
  /** Refuse at this share of the retention (streams.refuseSendsAtBacklogPct). */
  refuseAtPct: number;
  log: Logger;
}

/** How often the backlog is read: a tenth of the threshold, between 250 ms and 5 s. */
function gateIntervalMs(thresholdMs: number): number {
  return Math.min(5000, Math.max(250, Math.floor(thresholdMs / 10)));
}

export class SendGate {
  readonly #o: SendGateOptions;
  readonly #thresholdMs: number;
  readonly intervalMs: number;
  /** Streams whose persister backlog is past the threshold, with its age (ms) when last read. */
  readonly #behind = new Map<string, number>();
  #refused = 0;
  #timer: NodeJS.Timeout | undefined;
  #reading: Promise<void> | undefined;

  constructor(o: SendGateOptions) {
    this.#o = o;
    this.#thresholdMs = (o.retentionSec * 1000 * o.refuseAtPct) / 100;
    this.intervalMs = gateIntervalMs(this.#thresholdMs);
  }

  /** Starts reading in the background (the first reading at once); sends pass until a reading says otherwise. */
  start(): void {
    this.#tick();
    this.#timer = setInterval(() => this.#tick(), this.intervalMs);
    this.#timer.unref();
  }

  /** One reading at a time: a slow one is not stacked under the next. */
  #tick(): void {
    this.#reading ??= this.refresh().finally(() => (this.#reading = undefined));
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#reading;
  }

  /** Throws STORE_BEHIND when the conversation's stream has a persister backlog past the threshold. */
  check(convId: string): void {
    if (this.#behind.size === 0) return;
    const stream = conversationStreamOf(this.#o.topology, convId);
    if (!this.#behind.has(stream)) return;
    this.#refused++;
    // Jittered, so refused clients do not come back together.
    const retryAfterMs = Math.round(this.intervalMs * (1 + Math.random()));
    throw new NatterError("STORE_BEHIND", undefined, { retryAfterMs });
  }

  /** check() as a send check of publishMessage. */
  admit(convId: string): void {
    this.check(convId);
  }

  /** Reads every shard's backlog once. */
  async refresh(): Promise<void> {
    const { jsm, topology, log } = this.#o;
    const wasBehind = this.#behind.size > 0;
    for (let shard = 0; shard < topology.conversationShards; shard++) {
      const stream = names.conversationStream(shard);
      try {
        const ageMs = await oldestUnackedAgeMs(jsm, stream, names.persisterConsumer);
        if (ageMs >= this.#thresholdMs) this.#behind.set(stream, ageMs);
        else this.#behind.delete(stream);
      } catch (err) {
        // Keep the last reading: a JetStream that cannot answer this cannot take sends either.
        log.warn({ err, stream }, "could not read the persister's backlog; keeping the last reading");
      }
    }
    if (this.#behind.size > 0) {
      const ageSec = Math.round(Math.max(...this.#behind.values()) / 1000);
      log.error(
        {
          streams: [...this.#behind.keys()],
          backlogAgeSec: ageSec,
          refuseAtSec: Math.round(this.#thresholdMs / 1000),
          firstExpiryInSec: Math.max(0, this.#o.retentionSec - ageSec),
          refused: this.#refused,
        },
        "sends refused (STORE_BEHIND): the persister has not written messages this old to the store; bring the store or the workers back before the oldest message expires",
      );
      this.#refused = 0;
    } else if (wasBehind) {
      log.warn({ refused: this.#refused }, "sends accepted again: the persister's backlog is below the threshold");
      this.#refused = 0;
    }
  }
}
