// The streams, consumers and buckets of push notifications. Idempotent like ensureTopology: every
// process runs it at start (when push.enabled). Names come from streams/subjects.ts.
import { DiscardPolicy, RetentionPolicy, StorageType, type JetStreamManager, type StreamConfig } from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";
import type { PushConfig, StreamsConfig } from "../config/index.ts";
import { kvBucketConfig, names, streamMaxBytes, upsertConsumer, upsertStream, workerConsumerConfig } from "../nats/index.ts";
import { SUBSCRIPTION_TOMBSTONE_TTL_S } from "./subscriptions.ts";

type Named = Partial<StreamConfig> & { name: string };
const S = 1000;

/** PUSH_<n>: push requests for the users of inbox shard n; a request goes once sent (work queue). */
function pushStreamConfig(streams: StreamsConfig, push: PushConfig, shard: number): Named {
  return {
    name: names.pushStream(shard),
    description: "natter: push requests for recipients with no online device, one per (message, recipient)",
    subjects: [names.pushStreamSubjects(shard)],
    retention: RetentionPolicy.Workqueue,
    storage: StorageType.File,
    num_replicas: streams.replicas,
    max_age: nanos(push.maxAgeSec * S),
    // A dispatcher redelivery queues nothing twice (msg id of (stream, seq, user)); past the
    // window the send ledger still stops a second send.
    duplicate_window: nanos(Math.min(streams.duplicateWindowSec, push.maxAgeSec) * S),
    // When full the oldest requests go: a push that late is stale anyway.
    max_bytes: streamMaxBytes(streams, "push"),
    discard: DiscardPolicy.Old,
  };
}

function pushSubscriptionsBucketConfig(streams: StreamsConfig): Named {
  return kvBucketConfig(streams, names.pushSubscriptionsBucket, "natter: push subscriptions, key <user>.<subscription id>", {
    markerTtlMs: SUBSCRIPTION_TOMBSTONE_TTL_S * S,
  });
}

/** One marker per (message, subscription); kept past the age after which a push is dropped anyway. */
function pushSentBucketConfig(streams: StreamsConfig, push: PushConfig): Named {
  return {
    ...kvBucketConfig(streams, names.pushSentBucket, "natter: push send markers, key <user>.<subscription id>.<stream>.<seq>"),
    max_age: nanos(2 * push.maxAgeSec * S),
    // Markers only stop a second send: when full the oldest go rather than pushes failing.
    discard: DiscardPolicy.Old,
  };
}

export async function ensurePushTopology(jsm: JetStreamManager, streams: StreamsConfig, push: PushConfig): Promise<void> {
  await upsertStream(jsm, pushSubscriptionsBucketConfig(streams));
  await upsertStream(jsm, pushSentBucketConfig(streams, push));
  for (let shard = 0; shard < streams.inboxShards; shard++) {
    await upsertStream(jsm, pushStreamConfig(streams, push, shard));
    await upsertConsumer(jsm, names.pushStream(shard), workerConsumerConfig(streams, names.pushSenderConsumer));
  }
  // Push decisions are made in the fan-out's pass now: a consumer left by an earlier version
  // would only pile up messages nobody reads.
  for (let shard = 0; shard < streams.conversationShards; shard++) {
    await jsm.consumers.delete(names.conversationStream(shard), names.legacyPushConsumer).catch(() => undefined);
  }
}

/** Streams push needs: for readiness checks. */
export function pushStreams(streams: StreamsConfig): string[] {
  const out = [names.kvStream(names.pushSubscriptionsBucket), names.kvStream(names.pushSentBucket)];
  for (let shard = 0; shard < streams.inboxShards; shard++) out.push(names.pushStream(shard));
  return out;
}
