// Wires the JetStream workers of a node (workers.enabled): the fan-out (with push decisions beside
// its copies), the persister, the upload sweeper, the presence worker and the push sender, plus
// the consumer-lag, persister backlog-age and dead-letter gauges on the workers' metrics. Each
// worker is a spec on the one base in nats/.
import type { JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Config } from "../config/index.ts";
import type { Logger, Metrics } from "../core/index.ts";
import { OrphanSweeper } from "../media/index.ts";
import { consumerLagGauge, deadLetterGauges, names, persisterBacklogGauge, streamUsageGauge, type Topology } from "../nats/index.ts";
import { Persister, type Store, type BlobStore } from "../persistence/index.ts";
import { natsDeviceCounter, natsNotifier, PresenceWorker, type PresenceStore } from "../presence/index.ts";
import type { PushDispatcher } from "../push/index.ts";
import { FanoutWorker, type ConversationDirectory, type ConversationIndex } from "../streams/index.ts";

export interface WorkersDeps {
  nc: NatsConnection;
  jsm: JetStreamManager;
  directory: ConversationDirectory;
  conversationIndex: ConversationIndex;
  presence: PresenceStore;
  store: Store;
  blobs: BlobStore;
  topology: Topology;
  metrics: Metrics;
  log: Logger;
  /** Push decisions beside the fan-out's copies (absent: push is off). */
  push: PushDispatcher | undefined;
}

/** Starts every worker; resolves to their stop, in reverse order of start. */
export async function startWorkers(cfg: Config, d: WorkersDeps): Promise<() => Promise<void>> {
  const { nc, topology, metrics, log } = d;
  const ackWaitMs = cfg.streams.ackWaitSec * 1000;
  const stops: (() => Promise<void>)[] = [];
  const start = async (w: { start(): Promise<void>; stop(): Promise<void> }) => {
    await w.start();
    stops.push(() => w.stop());
  };
  const push = d.push;
  await start(
    new FanoutWorker({
      nc,
      directory: d.directory,
      index: d.conversationIndex,
      topology,
      metrics,
      log: log.child({ component: "fanout" }),
      ackWaitMs,
      beside: push ? (messages) => push.dispatch(messages) : undefined,
    }),
  );
  await start(
    new Persister({
      nc,
      ackWaitMs,
      store: d.store,
      topology,
      metrics,
      log: log.child({ component: "persister" }),
      maxWrites: cfg.workers.persistConcurrency,
      pullAhead: cfg.streams.persisterMaxAckPending,
    }),
  );
  await start(new OrphanSweeper({ nc, blobs: d.blobs, index: d.store, metrics, log: log.child({ component: "images" }) }));
  if (cfg.presence.enabled) {
    await start(
      new PresenceWorker({
        store: d.presence,
        contactsOf: (user) => d.directory.contactsOf(user),
        notify: natsNotifier(nc, topology),
        devices: natsDeviceCounter(nc, topology),
        log: log.child({ component: "presence" }),
      }),
    );
  }
  streamUsageGauge(metrics, d.jsm);
  consumerLagGauge(metrics, d.jsm, () => {
    const out: { stream: string; consumer: string }[] = [];
    for (let shard = 0; shard < cfg.streams.conversationShards; shard++) {
      out.push({ stream: names.conversationStream(shard), consumer: names.fanoutConsumer });
      out.push({ stream: names.conversationStream(shard), consumer: names.persisterConsumer });
    }
    for (let shard = 0; cfg.push.enabled && shard < cfg.streams.inboxShards; shard++) {
      out.push({ stream: names.pushStream(shard), consumer: names.pushSenderConsumer });
    }
    return out;
  });
  persisterBacklogGauge(metrics, d.jsm, cfg.streams.conversationShards);
  deadLetterGauges(metrics, d.jsm);
  return async () => {
    for (const stop of stops.reverse()) await stop();
  };
}
