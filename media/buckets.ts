// The uploads bucket and its sweeper's consumer. Idempotent, like ensureTopology: every process
// runs it at start. Names come from streams/subjects.ts.
import { AckPolicy, DeliverPolicy, type ConsumerConfig, type JetStreamManager, type StreamConfig } from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";
import type { StreamsConfig } from "../config/index.ts";
import { kvBucketConfig, names, upsertConsumer, upsertStream } from "../nats/index.ts";

/**
 * How long an upload's expiry marker stays in the bucket: the sweeper may be down this long
 * without missing an orphan (an orphan missed stays in the blob store, unreachable).
 */
const UPLOAD_MARKER_TTL_S = 7 * 24 * 3600;

function uploadsBucketConfig(streams: StreamsConfig): Partial<StreamConfig> & { name: string } {
  return kvBucketConfig(streams, names.uploadsBucket, "natter: image uploads not yet attached, key <image id>, per-key TTL; expiry markers tell the sweeper", {
    markerTtlMs: UPLOAD_MARKER_TTL_S * 1000,
  });
}

function uploadsSweeperConsumerConfig(streams: StreamsConfig): Partial<ConsumerConfig> & { durable_name: string } {
  return {
    durable_name: names.uploadsSweeperConsumer,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: nanos(60_000),
    max_ack_pending: streams.maxAckPending,
    max_deliver: -1,
  };
}

export async function ensureImageBuckets(jsm: JetStreamManager, streams: StreamsConfig): Promise<void> {
  await upsertStream(jsm, uploadsBucketConfig(streams));
  await upsertConsumer(jsm, names.kvStream(names.uploadsBucket), uploadsSweeperConsumerConfig(streams));
}

/** Streams natter's images need: for readiness checks. */
export function imageStreams(): string[] {
  return [names.kvStream(names.uploadsBucket)];
}
