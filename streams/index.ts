export * from "./subjects.ts";
export * from "./messages.ts";
export { ConversationDirectory, dmConversationId, newGroupId, MAX_GROUP_MEMBERS, type Conversation } from "./conversations.ts";
export {
  ensureTopology,
  expectedStreams,
  topologyOf,
  conversationStreamConfig,
  inboxStreamConfig,
  kvBucketConfig,
  upsertStream,
  upsertConsumer,
  workerConsumerConfig,
  type KvBucketOptions,
} from "./topology.ts";
export { FanoutWorker, type FanoutDeps } from "./fanout.ts";
export { readInbox, inboxBounds, parseInboxEntry, type InboxItem, type InboxBounds } from "./inbox.ts";
export { publishMessage, type SendInput, type SendResult } from "./send.ts";
export { deadLetter, DEAD_HEADERS } from "./dead-letter.ts";
export { streamEvents, type StreamEvent } from "./history.ts";
export { ConversationIndex, mergeIndexEntry, type IndexEntry, type IndexUpdate } from "./conversation-index.ts";
export { Receipts, UNREAD_EXACT, type ConversationSummary, type MarkInput, type MarkResult, type ReceiptState } from "./receipts.ts";
export { MembershipTracker } from "./membership-tracker.ts";
export { isNotFound, kvOperation, scanFiltered, type KvOperation } from "./jetstream-util.ts";
