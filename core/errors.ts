// natter's one error catalogue. Every error a client can see has a stable code, an HTTP
// status, and a `temporary` flag telling the client whether retrying the same request can
// succeed. Infrastructure failures are wrapped with `{ cause }`: the cause is logged, never sent.

export const ERRORS = {
  // Frame and request shape
  BAD_JSON: { status: 400, temporary: false, message: "frame is not valid JSON" },
  BAD_FRAME: { status: 400, temporary: false, message: "frame does not match the protocol" },
  UNKNOWN_TYPE: { status: 400, temporary: false, message: "unknown frame type" },
  FRAME_TOO_LARGE: { status: 413, temporary: false, message: "frame exceeds the maximum size" },
  TEXT_TOO_LARGE: { status: 413, temporary: false, message: "text exceeds the maximum length" },
  INVALID_ID: { status: 400, temporary: false, message: "id is not valid" },
  BAD_CURSOR: { status: 400, temporary: false, message: "cursor is not valid" },
  // Auth
  UNAUTHENTICATED: { status: 401, temporary: false, message: "missing or invalid token" },
  NOT_HELLO: { status: 401, temporary: false, message: "the first frame must be hello" },
  ALREADY_HELLO: { status: 400, temporary: false, message: "hello was already received" },
  UNSUPPORTED_VERSION: { status: 400, temporary: false, message: "unsupported protocol version" },
  FORBIDDEN: { status: 403, temporary: false, message: "not allowed" },
  NOT_MEMBER: { status: 403, temporary: false, message: "not a member of this conversation" },
  ORIGIN_NOT_ALLOWED: { status: 403, temporary: false, message: "origin not allowed" },
  // Conversations
  CONVERSATION_NOT_FOUND: { status: 404, temporary: false, message: "conversation not found" },
  SELF_CONVERSATION: { status: 400, temporary: false, message: "cannot open a conversation with yourself" },
  GROUP_FULL: { status: 409, temporary: false, message: "the group has the maximum number of members" },
  TOO_MANY_CONVERSATIONS: { status: 409, temporary: false, message: "a user is in the maximum number of conversations" },
  NOT_A_GROUP: { status: 400, temporary: false, message: "members can be changed in groups only" },
  CONFLICT: { status: 409, temporary: true, message: "the conversation changed concurrently; retry" },
  RECEIPT_AHEAD: { status: 400, temporary: false, message: "a receipt cannot pass the conversation's last event" },
  // Blobs
  BLOB_NOT_FOUND: { status: 404, temporary: false, message: "blob not found" },
  BAD_BLOB: { status: 400, temporary: false, message: "blob content type or size is not valid" },
  // Images
  IMAGE_TYPE_REFUSED: { status: 415, temporary: false, message: "only JPEG, PNG, WebP and GIF images are accepted" },
  IMAGE_TYPE_MISMATCH: { status: 415, temporary: false, message: "the image's bytes are not of its declared content type" },
  IMAGE_TOO_LARGE: { status: 413, temporary: false, message: "the image file exceeds the maximum size" },
  IMAGE_DIMENSIONS: { status: 413, temporary: false, message: "the image decodes to more pixels than allowed" },
  IMAGE_CORRUPT: { status: 422, temporary: false, message: "the image cannot be decoded" },
  IMAGE_NOT_FOUND: { status: 404, temporary: false, message: "image not found" },
  TOO_MANY_IMAGES: { status: 400, temporary: false, message: "too many images in one message" },
  IMAGE_TIMEOUT: { status: 422, temporary: false, message: "the image took too long to process" },
  UPLOAD_TIMEOUT: { status: 408, temporary: true, message: "the upload arrived too slowly" },
  // Push notifications
  PUSH_TARGET_REFUSED: { status: 400, temporary: false, message: "the push endpoint or webhook URL is not allowed" },
  PUSH_SUBSCRIPTIONS_FULL: { status: 409, temporary: false, message: "the user has the maximum number of push subscriptions" },
  PUSH_DISABLED: { status: 404, temporary: false, message: "push notifications are not enabled on this server" },
  // Limits
  RATE_LIMITED: { status: 429, temporary: true, message: "too many requests" },
  QUOTA_EXCEEDED: { status: 429, temporary: false, message: "the daily quota is used up" },
  TOO_MANY_CONNECTIONS: { status: 429, temporary: true, message: "the user has the maximum number of connections" },
  // Infrastructure
  STORAGE_FULL: { status: 507, temporary: true, message: "the server's storage for messages is full; retry later with the same cid" },
  UNAVAILABLE: { status: 503, temporary: true, message: "service temporarily unavailable" },
  STORE_BEHIND: { status: 503, temporary: true, message: "messages are not being saved to the store right now; sending is paused, retry later with the same cid" },
  TIMEOUT: { status: 504, temporary: true, message: "timed out" },
  INTERNAL: { status: 500, temporary: true, message: "internal error" },
  // Configuration and tooling (never sent to clients)
  CONFIG_INVALID: { status: 500, temporary: false, message: "configuration is invalid" },
  TOOL_MISSING: { status: 500, temporary: false, message: "a required tool is missing" },
} as const satisfies Record<string, { status: number; temporary: boolean; message: string }>;

export type ErrorCode = keyof typeof ERRORS;

export class NatterError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly temporary: boolean;
  /** For a refusal under load: when the client may try again (ms; jittered by whoever refused). */
  readonly retryAfterMs: number | undefined;

  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown; retryAfterMs?: number }) {
    super(message ?? ERRORS[code].message, options);
    this.name = "NatterError";
    this.code = code;
    this.status = ERRORS[code].status;
    this.temporary = ERRORS[code].temporary;
    this.retryAfterMs = options?.retryAfterMs;
  }

  /** What a client may see: never the cause. */
  toClient(): { code: ErrorCode; message: string; temporary: boolean; retryAfterMs?: number } {
    const c = { code: this.code, message: this.message, temporary: this.temporary };
    return this.retryAfterMs === undefined ? c : { ...c, retryAfterMs: this.retryAfterMs };
  }
}

/** Anything thrown that is not a NatterError becomes INTERNAL, keeping the original as cause. */
export function asNatterError(err: unknown): NatterError {
  if (err instanceof NatterError) return err;
  return new NatterError("INTERNAL", undefined, { cause: err });
}

/**
 * WebSocket close codes (4000 + the HTTP status they mirror, as hocuspocus does).
 * A client reconnects after any code whose `reconnect` is true, resuming from its cursor.
 */
export const CLOSE = {
  NORMAL: { code: 1000, reconnect: false, reason: "bye" },
  GOING_AWAY: { code: 1001, reconnect: true, reason: "server shutting down" },
  BAD_HANDSHAKE: { code: 4400, reconnect: false, reason: "bad hello" },
  UNAUTHORIZED: { code: 4401, reconnect: false, reason: "unauthorized" },
  FORBIDDEN_ORIGIN: { code: 4403, reconnect: false, reason: "origin not allowed" },
  HELLO_TIMEOUT: { code: 4408, reconnect: true, reason: "no hello in time" },
  SLOW_CONSUMER: { code: 4409, reconnect: true, reason: "too slow: resume from your cursor" },
  UNSUPPORTED_VERSION: { code: 4426, reconnect: false, reason: "unsupported protocol version" },
  RATE_LIMITED: { code: 4429, reconnect: true, reason: "too many bad frames" },
  /** Also an edge full or busy, or a user with too many connections: the error frame before it says when to retry. */
  UNAVAILABLE: { code: 4503, reconnect: true, reason: "service unavailable" },
} as const;

export type CloseKind = keyof typeof CLOSE;

/**
 * Close codes the WebSocket library (ws) sends on its own for frames it refuses before natter
 * sees them. Documented with natter's own: a client meets them all the same.
 */
export const LIBRARY_CLOSE_CODES = {
  PROTOCOL_ERROR: 1002,
  INVALID_UTF8: 1007,
  MESSAGE_TOO_BIG: 1009,
} as const;
