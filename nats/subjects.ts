// Every NATS subject, stream, consumer and bucket name natter uses is built here and
// nowhere else. Ids are validated before they become a token (core/ids.ts).
import { checkId, NatterError } from "../core/index.ts";

export interface Topology {
  /** Number of conversation streams (CONV_0..n-1); a conversation lives in one, by hash. */
  conversationShards: number;
  /** Number of inbox streams (INBOX_0..n-1); a user's inbox lives in one, by hash. */
  inboxShards: number;
  /**
   * How long messages and receipts stay in a conversation stream (a per-message TTL; the store
   * keeps them beyond). Membership events carry none: the current membership never expires.
   * Unset: kept until the stream's limits.
   */
  messageTtlSec?: number;
}

/** The per-message TTL header value for a conversation's messages and receipts, if any. */
export function messageTtl(t: Topology): { ttl?: string } {
  return t.messageTtlSec ? { ttl: `${t.messageTtlSec}s` } : {};
}

/** FNV-1a 32-bit: a stable, dependency-free hash so every process agrees on the shard. */
export function stableHash(value: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < value.length; i++) {
    h ^= value.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

function conversationShard(t: Topology, convId: string): number {
  return stableHash(convId) % t.conversationShards;
}

function inboxShard(t: Topology, userId: string): number {
  return stableHash(userId) % t.inboxShards;
}

export const names = {
  conversationStream: (shard: number) => `CONV_${shard}`,
  conversationStreamSubjects: (shard: number) => [`conv.${shard}.*`, `conv.${shard}.*.members`, `conv.${shard}.*.receipts.*`],
  inboxStream: (shard: number) => `INBOX_${shard}`,
  inboxStreamSubjects: (shard: number) => `inbox.${shard}.*`,
  inboxRepublishSource: (shard: number) => `inbox.${shard}.>`,
  inboxRepublishDest: (shard: number) => `deliver.${shard}.>`,
  /** Messages a worker gave up on, with the reason in headers. */
  deadLetterStream: "DEAD",
  deadLetterStreamSubjects: "dead.>",
  /** Dead letters sent back to the worker that gave up on them (`natter dead replay`): a work queue. */
  replayStream: "REPLAY",
  replayStreamSubjects: "replay.>",
  /** Durable consumer on REPLAY of one worker's replays (subjects `replay.<worker>.>`). */
  replayConsumer: (worker: string) => `replay-${worker}`,
  replayConsumerFilter: (worker: string) => `replay.${worker}.>`,
  /** Durable consumer on each conversation stream that copies messages to inboxes. */
  fanoutConsumer: "fanout",
  /** Durable consumer on each conversation stream that writes messages to the store. */
  persisterConsumer: "persister",
  /** The push dispatcher's own consumer on conversation streams in earlier versions; removed at start (push/topology.ts). */
  legacyPushConsumer: "push",
  /** KV bucket of device presence: key `<user>.<device>`, per-key TTL (presence/). */
  presenceBucket: "presence",
  /** KV bucket of each user's published presence state and last seen: key `<user>`. */
  presenceUsersBucket: "presence-users",
  /** KV bucket of the edges serving clients: key `<edge id>`, per-key TTL (discovery). */
  edgesBucket: "edges",
  /** KV bucket of 1:1 contacts: key `<user>.<peer>`, value the conversation id. */
  contactsBucket: "contacts",
  /** KV bucket of each user's conversations: key `<user>.<conversation>`, membership and read state (streams/conversation-index.ts). */
  userConversationsBucket: "user-convs",
  /** Durable consumer on the presence bucket's stream that turns device changes into user presence. */
  presenceConsumer: "presence",
  /** KV bucket of token revocations: key `<user>`, the time before which the user's tokens are refused (edge/revocations.ts). */
  revocationsBucket: "revocations",
  /** KV bucket of image uploads not yet attached: key `<image id>`, per-key TTL (images.orphanAfterSec). */
  uploadsBucket: "uploads",
  /** Durable consumer on the uploads bucket's stream: an expiry marker is an orphan whose blobs go. */
  uploadsSweeperConsumer: "uploads-sweeper",
  /** Push requests for offline recipients, per inbox shard (push/): subjects `push.<shard>.<user>`. */
  pushStream: (shard: number) => `PUSH_${shard}`,
  pushStreamSubjects: (shard: number) => `push.${shard}.*`,
  /** Durable consumer on each push stream that sends the pushes. */
  pushSenderConsumer: "push-sender",
  /** KV bucket of push subscriptions: key `<user>.<subscription id>`. */
  pushSubscriptionsBucket: "push-subs",
  /** KV bucket of send markers, one per (message, subscription): key `<user>.<subscription id>.<stream>.<seq>`. */
  pushSentBucket: "push-sent",
  /** KV bucket of each user's sends per day (streams/quota.ts): key `<user>.<yyyymmdd>`, kept 2 days. */
  quotaBucket: "quota",
  /** The stream behind a KV bucket. */
  kvStream: (bucket: string) => `KV_${bucket}`,
  kvStreamSubjects: (bucket: string) => `$KV.${bucket}.>`,
} as const;

/**
 * Every subject of a kind, as a wildcard (one `*` per token: a shard, an id), for NATS
 * permissions (nats/permissions.ts). A unit test checks each against the builders below.
 */
export const subjectPatterns = {
  /** A conversation's messages (`conversationSubject`). */
  messages: "conv.*.*",
  /** Membership events (`membershipSubject`). */
  membership: "conv.*.*.members",
  /** Receipts (`receiptSubject`). */
  receipts: "conv.*.*.receipts.*",
  /** Inbox entries (`inboxSubject`): written by the fan-out only. */
  inboxes: "inbox.*.*",
  /** Republished inbox entries (`deliverySubject`). */
  deliveries: "deliver.*.*",
  /** Typing signals (`typingSubject`). */
  typing: "typing.*.*",
  /** Contacts' presence changes (`presenceSubject`). */
  presence: "presence.*.*",
  /** Push requests (`pushSubject`). */
  push: "push.*.*",
  /** Dead letters (`deadLetterSubject`). */
  deadLetters: "dead.*.*",
} as const;

export function conversationSubject(t: Topology, convId: string): string {
  checkId("conversation id", convId);
  return `conv.${conversationShard(t, convId)}.${convId}`;
}

/** Subject of a conversation's membership events; its last message is the current membership. */
export function membershipSubject(t: Topology, convId: string): string {
  return `${conversationSubject(t, convId)}.members`;
}

export function conversationStreamOf(t: Topology, convId: string): string {
  return names.conversationStream(conversationShard(t, convId));
}

export function inboxSubject(t: Topology, userId: string): string {
  checkId("user id", userId);
  return `inbox.${inboxShard(t, userId)}.${userId}`;
}

export function inboxStreamOf(t: Topology, userId: string): string {
  return names.inboxStream(inboxShard(t, userId));
}

/** Core subject on which the inbox stream republishes each stored message of a user. */
export function deliverySubject(t: Topology, userId: string): string {
  checkId("user id", userId);
  return `deliver.${inboxShard(t, userId)}.${userId}`;
}

/**
 * Subject of one user's receipts in a conversation (a `receipt` event carrying the user's whole
 * delivered/read state); its last message is the current state.
 */
export function receiptSubject(t: Topology, convId: string, userId: string): string {
  return `${conversationSubject(t, convId)}.receipts.${checkId("user id", userId)}`;
}

/** The conversation id of a conversation, membership or receipt subject. */
export function convIdFromSubject(subject: string): string {
  const parts = subject.split(".");
  const id = parts[2];
  const shape = parts.length === 3 || (parts.length === 4 && parts[3] === "members") || (parts.length === 5 && parts[3] === "receipts");
  if (!shape || parts[0] !== "conv" || id === undefined) {
    throw new NatterError("INTERNAL", `not a conversation subject: ${subject}`);
  }
  return checkId("conversation id", id);
}

/** Where `worker` puts a message of `stream` it gave up on. */
export function deadLetterSubject(worker: string, stream: string): string {
  return `dead.${worker}.${checkId("stream name", stream)}`;
}

/** Where a dead letter of `worker` from `stream` is replayed to (that worker's REPLAY consumer). */
export function replaySubject(worker: string, stream: string): string {
  return `replay.${worker}.${checkId("stream name", stream)}`;
}

/** Nats-Msg-Id for a client's send: stable across retries, edges and reconnects. */
export function sendMsgId(senderId: string, clientMsgId: string): string {
  return `s:${checkId("user id", senderId)}:${checkId("client message id", clientMsgId)}`;
}

/** Nats-Msg-Id of a membership change: one per (conversation, previous membership revision, change). */
export function membershipMsgId(convId: string, prevRevision: number, action: string, userId: string): string {
  return `m:${checkId("conversation id", convId)}:${prevRevision}:${action}:${checkId("user id", userId)}`;
}

/** Nats-Msg-Id for the copy of conversation message (stream, seq) in one user's inbox. */
export function fanoutMsgId(stream: string, seq: number, userId: string): string {
  return `f:${stream}:${seq}:${checkId("user id", userId)}`;
}

/** Subject of a push request for one user (its inbox shard). */
export function pushSubject(t: Topology, userId: string): string {
  checkId("user id", userId);
  return `push.${inboxShard(t, userId)}.${userId}`;
}

/** Nats-Msg-Id of the push request for conversation message (stream, seq) to one user. */
export function pushMsgId(stream: string, seq: number, userId: string): string {
  return `p:${stream}:${seq}:${checkId("user id", userId)}`;
}

/** Key of a push subscription in the push-subs bucket. */
export function pushSubscriptionKey(userId: string, subscriptionId: string): string {
  return `${checkId("user id", userId)}.${checkId("subscription id", subscriptionId)}`;
}

/** Subject filter of every push subscription of a user in the push-subs bucket's stream. */
export function pushSubscriptionsFilter(userId: string): string {
  return kvKeySubject(names.pushSubscriptionsBucket, `${checkId("user id", userId)}.*`);
}

/** Key of the send marker of conversation message (stream, seq) to one subscription. */
export function pushSentKey(userId: string, subscriptionId: string, stream: string, seq: number): string {
  if (!Number.isSafeInteger(seq) || seq < 1) throw new NatterError("INTERNAL", `not a stream sequence: ${seq}`);
  return `${pushSubscriptionKey(userId, subscriptionId)}.${checkId("stream name", stream)}.${seq}`;
}

/** The stream subject of a KV key (`$KV.<bucket>.<key>`), for direct reads and publishes with headers. */
export function kvKeySubject(bucket: string, key: string): string {
  return `$KV.${bucket}.${key}`;
}

/** Key of one device in the presence bucket. */
export function presenceDeviceKey(userId: string, deviceId: string): string {
  return `${checkId("user id", userId)}.${checkId("device id", deviceId)}`;
}

/** Subject filter of every device key of a user in the presence bucket's stream. */
export function presenceDevicesFilter(userId: string): string {
  return kvKeySubject(names.presenceBucket, `${checkId("user id", userId)}.*`);
}

/** The user and device of a presence bucket key. */
export function presenceKeyParts(key: string): { user: string; device: string } {
  const [user, device, ...rest] = key.split(".");
  if (rest.length > 0 || user === undefined || device === undefined) throw new NatterError("INTERNAL", `not a presence key: ${key}`);
  return { user: checkId("user id", user), device: checkId("device id", device) };
}

/** Key of a contact (the peer of a 1:1 conversation) in the contacts bucket. */
export function contactKey(userId: string, peerId: string): string {
  return `${checkId("user id", userId)}.${checkId("user id", peerId)}`;
}

/** Subject filter of every contact of a user in the contacts bucket's stream. */
export function contactsFilter(userId: string): string {
  return kvKeySubject(names.contactsBucket, `${checkId("user id", userId)}.*`);
}

/** Key of one of a user's conversations in the user-convs bucket. */
export function userConversationKey(userId: string, convId: string): string {
  return `${checkId("user id", userId)}.${checkId("conversation id", convId)}`;
}

/** Subject filter of every conversation of a user in the user-convs bucket's stream. */
export function userConversationsFilter(userId: string): string {
  return kvKeySubject(names.userConversationsBucket, `${checkId("user id", userId)}.*`);
}

/** Core subject on which a user's connected devices receive typing signals (never stored). */
export function typingSubject(t: Topology, userId: string): string {
  checkId("user id", userId);
  return `typing.${inboxShard(t, userId)}.${userId}`;
}

/** Core subject on which a user's connected devices receive their contacts' presence changes. */
export function presenceSubject(t: Topology, userId: string): string {
  checkId("user id", userId);
  return `presence.${inboxShard(t, userId)}.${userId}`;
}

/** Subject of an upload's key in the uploads bucket (`$KV.uploads.<image id>`). */
export function uploadKeySubject(imageId: string): string {
  return kvKeySubject(names.uploadsBucket, checkId("image id", imageId));
}

/** Subject of a user's key in the revocations bucket (`$KV.revocations.<user>`); edges also subscribe to it with core NATS. */
export function revocationKeySubject(userId: string): string {
  return kvKeySubject(names.revocationsBucket, checkId("user id", userId));
}

/** Every key of the revocations bucket: what edges subscribe to, to learn of revocations live. */
export function revocationsFilter(): string {
  return kvKeySubject(names.revocationsBucket, "*");
}

/** Key of an edge in the edges bucket: its id (an id, see core/ids.ts). */
export function edgeKey(edgeId: string): string {
  return checkId("edge id", edgeId);
}
