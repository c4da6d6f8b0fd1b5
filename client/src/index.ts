// @natter/client: the whole public surface of the SDK.
export { NatterClient } from "./client.js";
export { closeAction } from "./connection.js";
export { movesOn, type DiscoveredEdge, type DiscoveryEvent, type DiscoveryOptions, type EdgeInfo } from "./discovery.js";
export type {
  ChatMessage,
  ConnectionState,
  Listener,
  MembershipChange,
  NatterEventName,
  NatterEvents,
  ReceiptEvent,
  ResetNotice,
  StateChange,
  TypingEvent,
} from "./events.js";
export type { NatterClientOptions, TokenProvider, WebSocketConstructor, WebSocketLike } from "./options.js";
export type { SendResult } from "./outbox.js";
export type { PushRegistration, WebPushSubscriptionLike } from "./push.js";
export { MemoryCursorStore, LocalStorageCursorStore, type CursorStore, type StorageLike } from "./cursor-store.js";
export { NatterError, SERVER_ERROR_CODES, CLIENT_ERROR_CODES, type ErrorCode, type ServerErrorCode, type ClientErrorCode } from "./errors.js";
export { backoffDelay, type BackoffOptions } from "./backoff.js";
export { devToken, toHttpUrl, toWebSocketUrl, newClientId } from "./util.js";
export {
  PROTOCOL_VERSION,
  CLOSE_CODES,
  CLIENT_FRAME_TYPES,
  type Conversation,
  type ConversationSummary,
  type HistoryItem,
  type ImageRef,
  type MembershipAction,
  type PresenceEntry,
  type PushTarget,
  type WebPushTarget,
  type WebhookTarget,
  type FcmTarget,
  type ApnsTarget,
  type ReceiptState,
  type ClientFrame,
  type ClientFrameType,
  type ServerFrame,
} from "./protocol.js";
