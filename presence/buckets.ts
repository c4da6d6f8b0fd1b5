// The KV buckets and the consumer of presence and discovery. Idempotent, like ensureTopology:
// every process runs it at start. Names come from streams/subjects.ts.
import { AckPolicy, DeliverPolicy, type ConsumerConfig, type JetStreamManager, type StreamConfig } from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";
import type { PresenceConfig, StreamsConfig } from "../config/index.ts";
import { kvBucketConfig, names, upsertConsumer, upsertStream } from "../nats/index.ts";
import { EDGE_TOMBSTONE_TTL_S } from "./edges.ts";

type Named = Partial<StreamConfig> & { name: string };

function presenceBucketConfig(streams: StreamsConfig, presence: PresenceConfig): Named {
  return kvBucketConfig(streams, names.presenceBucket, "natter: online devices, key <user>.<device>, per-key TTL; expiry markers tell the presence worker", {
    markerTtlMs: presence.markerTtlSec * 1000,
  });
}

function presenceUsersBucketConfig(streams: StreamsConfig): Named {
  return kvBucketConfig(streams, names.presenceUsersBucket, "natter: each user's presence as contacts were last told (online, since, last seen)");
}

function edgesBucketConfig(streams: StreamsConfig): Named {
  return kvBucketConfig(streams, names.edgesBucket, "natter: edges serving clients (discovery), key <edge id>, per-key TTL", {
    markerTtlMs: EDGE_TOMBSTONE_TTL_S * 1000,
  });
}

/** The presence worker's durable consumer on the presence bucket's stream. */
function presenceConsumerConfig(streams: StreamsConfig): Partial<ConsumerConfig> & { durable_name: string } {
  return {
    durable_name: names.presenceConsumer,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: nanos(30_000),
    max_ack_pending: streams.maxAckPending,
    max_deliver: -1,
  };
}

export async function ensurePresenceBuckets(jsm: JetStreamManager, streams: StreamsConfig, presence: PresenceConfig): Promise<void> {
  await upsertStream(jsm, presenceBucketConfig(streams, presence));
  await upsertConsumer(jsm, names.kvStream(names.presenceBucket), presenceConsumerConfig(streams));
  await upsertStream(jsm, presenceUsersBucketConfig(streams));
  await upsertStream(jsm, edgesBucketConfig(streams));
}

/** Streams these buckets live in: for readiness checks. */
export function presenceStreams(): string[] {
  return [names.presenceBucket, names.presenceUsersBucket, names.edgesBucket].map((b) => names.kvStream(b));
}
