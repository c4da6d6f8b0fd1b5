// Creates (or updates) natter's streams, durable consumers and KV buckets. Idempotent: every
// process runs it at start, so a fresh server and an upgraded config converge the same way.
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  RetentionPolicy,
  StorageType,
  type JetStreamManager,
  type StreamConfig,
  type ConsumerConfig,
} from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";
import type { StreamsConfig } from "../config/index.ts";
import { REPLAYABLE_WORKERS } from "./dead-letter.ts";
import { names, type Topology } from "./subjects.ts";

export function topologyOf(cfg: StreamsConfig): Topology {
  return { conversationShards: cfg.conversationShards, inboxShards: cfg.inboxShards, messageTtlSec: cfg.conversationMaxAgeSec };
}

const S = 1000;

function conversationStreamConfig(cfg: StreamsConfig, shard: number): Partial<StreamConfig> & { name: string } {
  return {
    name: names.conversationStream(shard),
    description: "natter: conversation messages and events; the stream sequence is the message id",
    subjects: names.conversationStreamSubjects(shard),
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    num_replicas: cfg.replicas,
    // No stream-wide age: messages and receipts carry a TTL of conversationMaxAgeSec, membership
    // events none, so a conversation quiet for longer than the retention keeps its members.
    max_age: 0,
    allow_msg_ttl: true,
    duplicate_window: nanos(cfg.duplicateWindowSec * S),
    discard: DiscardPolicy.Old,
    allow_direct: true,
  };
}

function inboxStreamConfig(cfg: StreamsConfig, shard: number): Partial<StreamConfig> & { name: string } {
  return {
    name: names.inboxStream(shard),
    description: "natter: per-user inboxes; the stream sequence is the device cursor",
    subjects: [names.inboxStreamSubjects(shard)],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    num_replicas: cfg.replicas,
    max_age: nanos(cfg.inboxMaxAgeSec * S),
    // Fan-out redeliveries are deduplicated by (stream, seq, user) for as long as a redelivery can happen.
    duplicate_window: nanos(Math.min(cfg.duplicateWindowSec, cfg.inboxMaxAgeSec) * S),
    discard: DiscardPolicy.Old,
    allow_direct: true,
    republish: { src: names.inboxRepublishSource(shard), dest: names.inboxRepublishDest(shard) },
  };
}

export function deadLetterStreamConfig(cfg: StreamsConfig): Partial<StreamConfig> & { name: string } {
  return {
    name: names.deadLetterStream,
    description: "natter: messages a worker gave up on (headers Natter-Dead-*: reason, source stream and sequence)",
    subjects: [names.deadLetterStreamSubjects],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    num_replicas: cfg.replicas,
    max_age: nanos(30 * 24 * 3600 * S),
    duplicate_window: nanos(cfg.duplicateWindowSec * S),
    allow_direct: true,
  };
}

/** Dead letters sent back to their worker (`natter dead replay`): removed once that worker acked them. */
function replayStreamConfig(cfg: StreamsConfig): Partial<StreamConfig> & { name: string } {
  return {
    name: names.replayStream,
    description: "natter: dead letters sent back to the worker that gave up on them (headers Natter-Replay-*: the original's stream, sequence, subject)",
    subjects: [names.replayStreamSubjects],
    retention: RetentionPolicy.Workqueue,
    storage: StorageType.File,
    num_replicas: cfg.replicas,
    max_age: nanos(30 * 24 * 3600 * S),
    duplicate_window: nanos(cfg.duplicateWindowSec * S),
  };
}

export function workerConsumerConfig(cfg: StreamsConfig, durable: string): Partial<ConsumerConfig> & { durable_name: string } {
  return {
    durable_name: durable,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: nanos(cfg.ackWaitSec * S),
    max_ack_pending: durable === names.persisterConsumer ? cfg.persisterMaxAckPending : cfg.maxAckPending,
    // Redelivered until acked: a worker acks only after the effect is durable.
    max_deliver: -1,
  };
}

export async function upsertStream(jsm: JetStreamManager, config: Partial<StreamConfig> & { name: string }): Promise<void> {
  try {
    await jsm.streams.info(config.name);
  } catch {
    await jsm.streams.add(config);
    return;
  }
  await jsm.streams.update(config.name, config);
}

export async function upsertConsumer(
  jsm: JetStreamManager,
  stream: string,
  config: Partial<ConsumerConfig> & { durable_name: string },
): Promise<void> {
  try {
    await jsm.consumers.info(stream, config.durable_name);
    await jsm.consumers.update(stream, config.durable_name, config);
  } catch {
    await jsm.consumers.add(stream, config);
  }
}

export interface KvBucketOptions {
  /** Values kept per key (1: the current value only). */
  history?: number;
  /**
   * Enables per-key TTLs (`Nats-TTL` on each write) and keeps the marker the server writes when
   * a key expires for this long, so watchers and consumers see the expiry (the server writes a marker
   * with `Nats-Marker-Reason: MaxAge` when a key's TTL runs out).
   */
  markerTtlMs?: number;
}

/**
 * The stream of a KV bucket, as `@nats-io/kv` and `nats kv` create it (stream `KV_<bucket>`,
 * subjects `$KV.<bucket>.>`), built here so an existing bucket is updated like every stream.
 */
export function kvBucketConfig(cfg: StreamsConfig, bucket: string, description: string, opts: KvBucketOptions = {}): Partial<StreamConfig> & { name: string } {
  return {
    name: names.kvStream(bucket),
    description,
    subjects: [names.kvStreamSubjects(bucket)],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    num_replicas: cfg.replicas,
    max_msgs_per_subject: opts.history ?? 1,
    max_msg_size: -1,
    discard: DiscardPolicy.New,
    allow_direct: true,
    allow_rollup_hdrs: true,
    deny_delete: true,
    deny_purge: false,
    ...(opts.markerTtlMs ? { allow_msg_ttl: true, subject_delete_marker_ttl: nanos(opts.markerTtlMs) } : {}),
  };
}

function contactsBucketConfig(cfg: StreamsConfig): Partial<StreamConfig> & { name: string } {
  return kvBucketConfig(cfg, names.contactsBucket, "natter: 1:1 contacts, key <user>.<peer> -> the conversation id");
}

function userConversationsBucketConfig(cfg: StreamsConfig): Partial<StreamConfig> & { name: string } {
  return kvBucketConfig(cfg, names.userConversationsBucket, "natter: each user's conversations, key <user>.<conversation> -> membership and read state");
}

/** Ensures every stream, consumer and bucket exists with the configured settings. */
export async function ensureTopology(jsm: JetStreamManager, cfg: StreamsConfig): Promise<void> {
  for (let shard = 0; shard < cfg.conversationShards; shard++) {
    const stream = names.conversationStream(shard);
    await upsertStream(jsm, conversationStreamConfig(cfg, shard));
    await upsertConsumer(jsm, stream, workerConsumerConfig(cfg, names.fanoutConsumer));
    await upsertConsumer(jsm, stream, workerConsumerConfig(cfg, names.persisterConsumer));
  }
  for (let shard = 0; shard < cfg.inboxShards; shard++) {
    await upsertStream(jsm, inboxStreamConfig(cfg, shard));
  }
  await upsertStream(jsm, deadLetterStreamConfig(cfg));
  await upsertStream(jsm, replayStreamConfig(cfg));
  for (const worker of REPLAYABLE_WORKERS) {
    await upsertConsumer(jsm, names.replayStream, { ...workerConsumerConfig(cfg, names.replayConsumer(worker)), filter_subject: names.replayConsumerFilter(worker) });
  }
  await upsertStream(jsm, contactsBucketConfig(cfg));
  await upsertStream(jsm, userConversationsBucketConfig(cfg));
}

/** Names of every stream natter needs: used by readiness checks. */
export function expectedStreams(cfg: StreamsConfig): string[] {
  const out: string[] = [];
  for (let s = 0; s < cfg.conversationShards; s++) out.push(names.conversationStream(s));
  for (let s = 0; s < cfg.inboxShards; s++) out.push(names.inboxStream(s));
  out.push(names.deadLetterStream);
  out.push(names.replayStream);
  out.push(names.kvStream(names.contactsBucket));
  out.push(names.kvStream(names.userConversationsBucket));
  return out;
}
