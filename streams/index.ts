// The chat domain on JetStream: conversations and their membership, messages and their envelopes,
// receipts and the per-user conversation index, sending, the fan-out into inboxes, inbox reads and
// the events history merges. Plumbing (names, codecs, topology, workers) is in nats/.
export * from "./messages.ts";
export { ConversationDirectory, type Conversation } from "./conversations.ts";
export { FanoutWorker, type FannedOutMessage } from "./fanout.ts";
export { readInbox, inboxBounds, parseInboxEntry, type InboxItem, type InboxBounds } from "./inbox.ts";
export { decodePrev, PREV_HEADER, type PrevList } from "./inbox-chain.ts";
export { publishMessage, type SendInput, type SendResult } from "./send.ts";
export { StorageGuard } from "./storage-guard.ts";
export { QuotaLedger } from "./quota.ts";
export { SendGate } from "./send-gate.ts";
export { streamEvents, type StreamEvent } from "./history.ts";
export { ConversationIndex } from "./conversation-index.ts";
export { Receipts } from "./receipts.ts";
