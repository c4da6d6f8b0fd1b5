// Consumer lag as a Prometheus gauge, read from JetStream when scraped: per (stream, consumer),
// messages not yet delivered (unprocessed) and delivered but not acked (ack_pending).
import type { JetStreamManager } from "@nats-io/jetstream";
import { scrapedGauge, type Metrics } from "../core/index.ts";

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
