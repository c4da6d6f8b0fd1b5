// @natter/client: the whole public surface of the SDK.
export {
  NatterClient,
  closeAction,
  type ChatMessage,
  type ConnectionState,
  type Listener,
  type MembershipChange,
  type NatterClientOptions,
  type NatterEventName,
  type NatterEvents,
  type ResetNotice,
  type SendResult,
  type StateChange,
  type TokenProvider,
  type WebSocketConstructor,
  type WebSocketLike,
} from "./client.js";
export { MemoryCursorStore, LocalStorageCursorStore, type CursorStore, type StorageLike } from "./cursor-store.js";
export { NatterError, SERVER_ERROR_CODES, CLIENT_ERROR_CODES, type ErrorCode, type ServerErrorCode, type ClientErrorCode } from "./errors.js";
export { backoffDelay, type BackoffOptions } from "./backoff.js";
export { devToken, toWebSocketUrl, newClientId } from "./util.js";
export { PROTOCOL_VERSION, CLOSE_CODES, type Conversation, type HistoryItem, type MembershipAction, type ClientFrame, type ServerFrame } from "./protocol.js";
