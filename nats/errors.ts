// The JetStream API error codes natter acts on, in one place (the server's own names, as in
// nats-server's server/errors.json), and the readings of errors several modules need.
import { JetStreamApiError } from "@nats-io/jetstream";

const JsErrorCode = {
  /** A consumer that does not exist. */
  ConsumerNotFound: 10014,
  /** A direct or API get found no message. */
  NoMessageFound: 10037,
  /** A stream that does not exist. */
  StreamNotFound: 10059,
  /** `Nats-Expected-Last-Msg-Id` did not match. */
  StreamWrongLastMsgId: 10070,
  /** `Nats-Expected-Last-Sequence` / `-Last-Subject-Sequence` did not match: the compare in compare-and-set failed. */
  StreamWrongLastSequence: 10071,
  /** The stream's or account's storage is full (max bytes, discard new). */
  StreamStoreFailed: 10077,
  /** A message over the stream's `max_msg_size`. */
  StreamMessageExceedsMaximum: 10054,
  /** Creating or growing a stream would reserve more storage than the server or account has. */
  StorageResourcesExceeded: 10047,
  /** A per-message TTL on a stream that does not allow them. */
  StreamMessageTtlDisabled: 10166,
} as const;

/** The JetStream API error code of `err`, if it is one. */
function jsErrorCode(err: unknown): number | undefined {
  return err instanceof JetStreamApiError ? err.code : undefined;
}

/** A compare-and-set refused because the subject moved on (someone else wrote first). */
export function isWrongLastSequence(err: unknown): boolean {
  return jsErrorCode(err) === JsErrorCode.StreamWrongLastSequence;
}

/** A "not found" from JetStream: a missing message, key or subject (API status or direct-get 404). */
export function isNotFound(err: unknown): boolean {
  const e = err as { status?: unknown; code?: unknown; message?: unknown } | undefined;
  return e?.status === 404 || e?.code === 404 || jsErrorCode(err) === JsErrorCode.NoMessageFound || /no message found/i.test(String(e?.message));
}

/** A publish refused because the stream is at its byte limit (discard new). */
export function isStreamFull(err: unknown): boolean {
  return jsErrorCode(err) === JsErrorCode.StreamStoreFailed;
}

/** A stream's byte limit cannot be reserved: the server's (or account's) storage is promised away. */
export function isStorageExhausted(err: unknown): boolean {
  return jsErrorCode(err) === JsErrorCode.StorageResourcesExceeded;
}
