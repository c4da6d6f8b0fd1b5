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
import { NatterError } from "../core/index.ts";
import { isStorageExhausted } from "./errors.ts";
import { REPLAYABLE_WORKERS } from "./dead-letter.ts";
import { names, type Topology } from "./subjects.ts";

export function topologyOf(cfg: StreamsConfig): Topology {
  return { conversationShards: cfg.conversationShards, inboxShards: cfg.inboxShards, messageTtlSec: cfg.conversationMaxAgeSec };
}

const S = 1000;

/**
 * The parts of `streams.storageBytes` each kind of stream may fill (docs/operations.md, "Storage
 * bounds"); a sharded kind splits its part between its shards. Every KV bucket gets `bucket`
 * (natter has ten), and so does the REPLAY stream; the rest is slack.
 */
const STORAGE_SHARES = { conversations: 0.35, inboxes: 0.4, deadLetters: 0.05, push: 0.05, bucket: 0.01 } as const;

/** The byte limit of one stream of `kind` (of one shard, for the sharded kinds). */
export function streamMaxBytes(cfg: StreamsConfig, kind: keyof typeof STORAGE_SHARES): number {
  const shards = kind === "conversations" ? cfg.conversationShards : kind === "inboxes" || kind === "push" ? cfg.inboxShards : 1;
  return Math.floor((cfg.storageBytes * STORAGE_SHARES[kind]) / shards);
}

/**
 * What a conversation stream keeps free for membership events and receipts: chat sends are
 * refused (STORAGE_FULL) once the rest is used, so a stream full of messages never stops a
 * member from being added, removed or reading.
 */
export const CONVERSATION_RESERVE = 0.1;

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
    // Full means full: a message the persister may not have written yet is never pushed out.
    max_bytes: streamMaxBytes(cfg, "conversations"),
    discard: DiscardPolicy.New,
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
    // Inbox items are copies: when full, the oldest go (a device behind them gets a reset).
    max_bytes: streamMaxBytes(cfg, "inboxes"),
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
    // When full the oldest dead letters go: the dead-letter alert fires long before.
    max_bytes: streamMaxBytes(cfg, "deadLetters"),
    discard: DiscardPolicy.Old,
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
    // Few and short-lived: the share of a bucket; when full a replay is refused (and says so).
    max_bytes: streamMaxBytes(cfg, "bucket"),
    discard: DiscardPolicy.New,
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
    let exists = true;
    await jsm.streams.info(config.name).catch(() => (exists = false));
    if (exists) await jsm.streams.update(config.name, config);
    else await jsm.streams.add(config);
  } catch (err) {
    if (isStorageExhausted(err)) {
      throw new NatterError(
        "CONFIG_INVALID",
        `stream ${config.name} needs ${config.max_bytes} bytes of JetStream file storage and the server has no more to reserve: lower streams.storageBytes or raise the nats-server's max_file_store`,
        { cause: err },
      );
    }
    throw err;
  }
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
    // Full: new keys are refused (values are state, not history), in this bucket only.
    max_bytes: streamMaxBytes(cfg, "bucket"),
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

/** A day's count per user; a key lives two days after its last write, so yesterday's is gone by tomorrow. */
function quotaBucketConfig(cfg: StreamsConfig): Partial<StreamConfig> & { name: string } {
  return { ...kvBucketConfig(cfg, names.quotaBucket, "natter: each user's sends per UTC day, key <user>.<yyyymmdd>"), max_age: nanos(2 * 24 * 3600 * S) };
}

function revocationsBucketConfig(cfg: StreamsConfig): Partial<StreamConfig> & { name: string } {
  return kvBucketConfig(cfg, names.revocationsBucket, "natter: token revocations, key <user> -> tokens of the user issued before notBefore are refused");
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
  await upsertStream(jsm, quotaBucketConfig(cfg));
  await upsertStream(jsm, revocationsBucketConfig(cfg));
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
  out.push(names.kvStream(names.quotaBucket));
  out.push(names.kvStream(names.revocationsBucket));
  return out;
}
