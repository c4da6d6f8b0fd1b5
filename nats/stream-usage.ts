// How full each stream is, as Prometheus gauges read from JetStream when scraped: bytes stored,
// the stream's byte limit, and their ratio (the alert in docs/operations.md watches the ratio).
import type { JetStreamManager } from "@nats-io/jetstream";
import { scrapedGauge, type Metrics } from "../core/index.ts";

export function streamUsageGauge(metrics: Metrics, jsm: JetStreamManager): void {
  scrapedGauge(
    metrics,
    "natter_stream_usage",
    "JetStream streams of natter: bytes stored (state=bytes), byte limit (state=max_bytes, -1 none) and bytes / limit (state=ratio)",
    ["stream", "state"],
    async () => {
      const out: { labels: Record<string, string>; value: number }[] = [];
      for await (const info of jsm.streams.list()) {
        const stream = info.config.name;
        const max = info.config.max_bytes;
        out.push({ labels: { stream, state: "bytes" }, value: info.state.bytes });
        out.push({ labels: { stream, state: "max_bytes" }, value: max });
        if (max > 0) out.push({ labels: { stream, state: "ratio" }, value: info.state.bytes / max });
      }
      return out;
    },
  );
}
