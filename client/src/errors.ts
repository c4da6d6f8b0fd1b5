// Typed errors. Requests reject with a NatterError carrying the server's code and `temporary`
// flag (docs/protocol.md, "Errors"); a few codes are the client's own (CLIENT_ERROR_CODES).

/** Every code the server sends (core/errors.ts; a unit test keeps the two lists equal). */
export const SERVER_ERROR_CODES = [
  "BAD_JSON",
  "BAD_FRAME",
  "UNKNOWN_TYPE",
  "FRAME_TOO_LARGE",
  "TEXT_TOO_LARGE",
  "INVALID_ID",
  "BAD_CURSOR",
  "UNAUTHENTICATED",
  "NOT_HELLO",
  "ALREADY_HELLO",
  "UNSUPPORTED_VERSION",
  "FORBIDDEN",
  "NOT_MEMBER",
  "ORIGIN_NOT_ALLOWED",
  "CONVERSATION_NOT_FOUND",
  "SELF_CONVERSATION",
  "GROUP_FULL",
  "TOO_MANY_CONVERSATIONS",
  "NOT_A_GROUP",
  "CONFLICT",
  "RECEIPT_AHEAD",
  "BLOB_NOT_FOUND",
  "BAD_BLOB",
  "IMAGE_TYPE_REFUSED",
  "IMAGE_TYPE_MISMATCH",
  "IMAGE_TOO_LARGE",
  "IMAGE_DIMENSIONS",
  "IMAGE_CORRUPT",
  "IMAGE_NOT_FOUND",
  "TOO_MANY_IMAGES",
  "IMAGE_TIMEOUT",
  "UPLOAD_TIMEOUT",
  "PUSH_TARGET_REFUSED",
  "PUSH_SUBSCRIPTIONS_FULL",
  "PUSH_DISABLED",
  "RATE_LIMITED",
  "QUOTA_EXCEEDED",
  "TOO_MANY_CONNECTIONS",
  "STORAGE_FULL",
  "UNAVAILABLE",
  "STORE_BEHIND",
  "TIMEOUT",
  "INTERNAL",
  "CONFIG_INVALID",
  "TOOL_MISSING",
] as const;

/**
 * The client's own codes: DISCONNECTED — the connection dropped while a request (not a send:
 * sends are resent) was in flight, retry it; CLOSED — `close()` was called or the connection
 * ended for good; CONNECTION_REFUSED — the server closed the socket with a code that forbids
 * reconnecting (bad handshake, origin, protocol version, frame too large).
 */
export const CLIENT_ERROR_CODES = ["DISCONNECTED", "CLOSED", "CONNECTION_REFUSED"] as const;

export type ServerErrorCode = (typeof SERVER_ERROR_CODES)[number];
export type ClientErrorCode = (typeof CLIENT_ERROR_CODES)[number];
/** Known codes; a newer server may send others, which arrive unchanged. */
export type ErrorCode = ServerErrorCode | ClientErrorCode | (string & {});

export class NatterError extends Error {
  override name = "NatterError";
  readonly code: ErrorCode;
  /** True when the same request may succeed later (retry with backoff; sends keep their cid). */
  readonly temporary: boolean;
  /** The WebSocket close code, for errors that ended a connection. */
  readonly closeCode: number | undefined;
  /** The server's hint, for refusals under load: try again after this long (ms). */
  readonly retryAfterMs: number | undefined;

  constructor(code: ErrorCode, message: string, opts: { temporary: boolean; closeCode?: number; cause?: unknown; retryAfterMs?: number | undefined }) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    this.temporary = opts.temporary;
    this.closeCode = opts.closeCode;
    this.retryAfterMs = opts.retryAfterMs;
  }
}

/** A server's error frame as the NatterError a caller gets. */
export function errorFromFrame(f: { code: string; message: string; temporary: boolean; retryAfterMs?: number }): NatterError {
  const retryAfterMs = typeof f.retryAfterMs === "number" && Number.isFinite(f.retryAfterMs) && f.retryAfterMs >= 0 ? f.retryAfterMs : undefined;
  return new NatterError(f.code, f.message, { temporary: f.temporary, retryAfterMs });
}

/** What anything asked of a closed client rejects with. */
export function closedError(): NatterError {
  return new NatterError("CLOSED", "the client is closed", { temporary: false });
}
