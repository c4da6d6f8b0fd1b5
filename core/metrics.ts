// Prometheus metrics of one natter process, served at /metrics on the workers' HTTP port.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

export interface Metrics {
  registry: Registry;
  persisted: Counter<never>;
  persistBatches: Histogram<never>;
  persistFailures: Counter<"kind">;
  deadLetters: Counter<"worker">;
  fanoutCopies: Counter<never>;
  fanoutFailures: Counter<never>;
  pushQueued: Counter<never>;
  pushSent: Counter<"kind">;
  pushFailed: Counter<"kind" | "reason">;
  pushRemoved: Counter<"kind">;
  workerHandled: Counter<"worker">;
  workerRetries: Counter<"worker">;
  workerBatchSeconds: Histogram<"worker">;
}

export function createMetrics(opts: { defaults?: boolean } = {}): Metrics {
  const registry = new Registry();
  if (opts.defaults ?? true) collectDefaultMetrics({ register: registry, prefix: "natter_" });
  return {
    registry,
    persisted: new Counter({ name: "natter_persisted_messages_total", help: "Messages written to the store and acked", registers: [registry] }),
    persistBatches: new Histogram({
      name: "natter_persist_batch_seconds",
      help: "Time to write one batch to the store",
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    persistFailures: new Counter({
      name: "natter_persist_failures_total",
      help: "Failed store writes (kind: unavailable = store unreachable, message = one message failing alone)",
      labelNames: ["kind"],
      registers: [registry],
    }),
    deadLetters: new Counter({ name: "natter_dead_letters_total", help: "Messages moved to the DEAD stream", labelNames: ["worker"], registers: [registry] }),
    fanoutCopies: new Counter({ name: "natter_fanout_copies_total", help: "Inbox copies stored by the fan-out", registers: [registry] }),
    fanoutFailures: new Counter({ name: "natter_fanout_failures_total", help: "Fan-out attempts that failed and will be retried", registers: [registry] }),
    pushQueued: new Counter({ name: "natter_push_requests_total", help: "Push requests queued for recipients with no online device", registers: [registry] }),
    pushSent: new Counter({ name: "natter_push_sent_total", help: "Pushes a push service or webhook accepted (kind: webpush, webhook, fcm, apns)", labelNames: ["kind"], registers: [registry] }),
    pushFailed: new Counter({
      name: "natter_push_failed_total",
      help: "Push attempts that failed (reason: retry = will be retried, rejected = refused for good, blocked = target not allowed, dead = given up and dead-lettered)",
      labelNames: ["kind", "reason"],
      registers: [registry],
    }),
    pushRemoved: new Counter({ name: "natter_push_subscriptions_removed_total", help: "Subscriptions removed because the push service or webhook reported them gone (404, 410; FCM UNREGISTERED or an invalid token; APNs Unregistered or BadDeviceToken)", labelNames: ["kind"], registers: [registry] }),
    workerHandled: new Counter({ name: "natter_worker_messages_total", help: "Messages a worker handled and acked", labelNames: ["worker"], registers: [registry] }),
    workerRetries: new Counter({ name: "natter_worker_retries_total", help: "Messages a worker will try again (backoff)", labelNames: ["worker"], registers: [registry] }),
    workerBatchSeconds: new Histogram({
      name: "natter_worker_batch_seconds",
      help: "Time a worker took to handle one batch (one conversation's waiting messages, or one message)",
      labelNames: ["worker"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
  };
}

/** A gauge whose values are read when Prometheus scrapes (e.g. consumer lag from JetStream). */
export function scrapedGauge(
  m: Metrics,
  name: string,
  help: string,
  labelNames: string[],
  read: () => Promise<{ labels: Record<string, string>; value: number }[]>,
): Gauge<string> {
  return new Gauge({
    name,
    help,
    labelNames,
    registers: [m.registry],
    async collect() {
      this.reset();
      for (const { labels, value } of await read()) this.set(labels, value);
    },
  });
}
