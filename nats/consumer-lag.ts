// Consumer lag as Prometheus gauges, read from JetStream when scraped: per (stream, consumer),
// messages not yet delivered (unprocessed) and delivered but not acked (ack_pending); the age of
// the oldest message a consumer has not acked (its backlog age); the dead letters per worker.
import type { JetStreamManager } from "@nats-io/jetstream";
import { scrapedGauge, type Metrics } from "../core/index.ts";
import { DEAD_LETTER_WORKERS } from "./dead-letter.ts";
import { isNotFound } from "./errors.ts";
import { names } from "./subjects.ts";

export function consumerLagGauge(metrics: Metrics, jsm: JetStreamManager, consumers: () => readonly { stream: string; consumer: string }[]): void {
  scrapedGauge(
    metrics,
    "natter_consumer_pending_messages",
    "Messages of a worker's consumer: unprocessed (not yet delivered) and ack_pending (delivered, not acked)",
    ["stream", "consumer", "state"],
    async () => {
      const out: { labels: Record<string, string>; value: number }[] = [];
      for (const { stream, consumer } of consumers()) {
        const info = await jsm.consumers.info(stream, consumer);
        out.push({ labels: { stream, consumer, state: "unprocessed" }, value: info.num_pending });
        out.push({ labels: { stream, consumer, state: "ack_pending" }, value: info.num_ack_pending });
      }
      return out;
    },
  );
}

/**
 * How old (ms) the oldest message of `stream` is that `consumer` has not acked: the first message
 * after the consumer's ack floor (everything at or below it is acked). 0 when the consumer has
 * nothing pending or unacked. Two requests: the consumer's info, and a direct get only when
 * something is pending.
 */
export async function oldestUnackedAgeMs(jsm: JetStreamManager, stream: string, consumer: string, now = Date.now()): Promise<number> {
  const info = await jsm.consumers.info(stream, consumer);
  if (info.num_pending === 0 && info.num_ack_pending === 0) return 0;
  // The message after the floor, or the next one still in the stream (the floor's neighbour may
  // have been removed).
  let oldest: { time: Date } | null;
  try {
    oldest = await jsm.direct.getMessage(stream, { seq: info.ack_floor.stream_seq + 1, next_by_subj: ">" });
  } catch (err) {
    if (isNotFound(err)) return 0;
    throw err;
  }
  return oldest ? Math.max(0, now - oldest.time.getTime()) : 0;
}

/** `natter_persister_backlog_age_seconds{stream}`: the oldest conversation message not yet persisted. */
export function persisterBacklogGauge(metrics: Metrics, jsm: JetStreamManager, conversationShards: number): void {
  scrapedGauge(
    metrics,
    "natter_persister_backlog_age_seconds",
    "Age of the oldest message of a conversation stream the persister has not acked (written to the store); 0 when it is caught up",
    ["stream"],
    async () => {
      const out: { labels: Record<string, string>; value: number }[] = [];
      for (let shard = 0; shard < conversationShards; shard++) {
        const stream = names.conversationStream(shard);
        out.push({ labels: { stream }, value: (await oldestUnackedAgeMs(jsm, stream, names.persisterConsumer)) / 1000 });
      }
      return out;
    },
  );
}

/**
 * `natter_dead_letter_messages{worker}`: messages in the DEAD stream, per worker that gave up on
 * them; `natter_dead_letter_oldest_age_seconds`: how old its oldest is (DEAD drops them at 30 days).
 */
export function deadLetterGauges(metrics: Metrics, jsm: JetStreamManager): void {
  scrapedGauge(metrics, "natter_dead_letter_messages", "Messages in the DEAD stream, per worker that gave up on them", ["worker"], async () => {
    const counts = new Map<string, number>(DEAD_LETTER_WORKERS.map((w) => [w, 0]));
    const info = await jsm.streams.info(names.deadLetterStream, { subjects_filter: names.deadLetterStreamSubjects });
    // Subjects are dead.<worker>.<stream>.
    for (const [subject, n] of Object.entries(info.state.subjects ?? {})) {
      const worker = subject.split(".")[1] ?? "";
      counts.set(worker, (counts.get(worker) ?? 0) + n);
    }
    return [...counts].map(([worker, value]) => ({ labels: { worker }, value }));
  });
  scrapedGauge(metrics, "natter_dead_letter_oldest_age_seconds", "Age of the oldest message in the DEAD stream (removed at 30 days); 0 when it is empty", [], async () => {
    const { state } = await jsm.streams.info(names.deadLetterStream);
    const age = state.messages === 0 ? 0 : Math.max(0, (Date.now() - Date.parse(state.first_ts)) / 1000);
    return [{ labels: {}, value: age }];
  });
}
