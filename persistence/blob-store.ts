// The blob store: attachment and avatar bytes, addressed by key. Keys are checked here, once, for
// every implementation, before anything touches a disk or a bucket: a key is never a path.
import type { Readable } from "node:stream";
import { NatterError } from "../core/index.ts";

export interface BlobMeta {
  /** A MIME type, e.g. `image/png`; returned by `stat`. */
  contentType: string;
  /** The exact length in bytes, when known; a body of another length is refused with BAD_BLOB. */
  size?: number;
}

export interface BlobInfo {
  size: number;
  contentType: string;
}

export interface BlobStore {
  /** Stores the whole blob or nothing: readers see the previous blob until the new one is complete. */
  put(key: string, data: Buffer | Readable, meta: BlobMeta): Promise<void>;
  /** The blob's bytes; BLOB_NOT_FOUND when there is none. Read the stream to its end or destroy it. */
  get(key: string): Promise<Readable>;
  /** Size and content type, or null when there is no blob. */
  stat(key: string): Promise<BlobInfo | null>;
  /** Removes the blob; removing a missing blob is not an error. */
  delete(key: string): Promise<void>;
  /**
   * A URL that GETs the blob without credentials for `expiresSec` (S3: a presigned GET), or null
   * when this store cannot make one (the caller streams the blob itself, after its own checks).
   * Says nothing about whether the blob exists.
   */
  signedUrl(key: string, expiresSec: number): Promise<string | null>;
  /** Throws when the store cannot serve requests. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export const BLOB_KEY_MAX_LENGTH = 256;
/** Longest part between slashes: MinIO (like most file systems) refuses longer path segments. */
export const BLOB_KEY_MAX_SEGMENT = 255;
const SEGMENT = /^[A-Za-z0-9_-]+$/;
// type "/" subtype, then optional parameters; printable ASCII only, so it is always a safe header.
const CONTENT_TYPE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*(?:\s*;[\x20-\x7e]*)?$/;
const CONTENT_TYPE_MAX_LENGTH = 255;

/**
 * Throws INVALID_ID unless `key` is 1..256 characters of `[A-Za-z0-9_-]` segments (each at most
 * 255) separated by single `/`: no `.`, `..`, leading, trailing or doubled `/`, backslash, space
 * or control character.
 */
export function checkBlobKey(key: string): void {
  const valid =
    typeof key === "string" &&
    key.length <= BLOB_KEY_MAX_LENGTH &&
    key.split("/").every((s) => s.length <= BLOB_KEY_MAX_SEGMENT && SEGMENT.test(s));
  if (!valid) {
    throw new NatterError(
      "INVALID_ID",
      `blob key must be 1..${BLOB_KEY_MAX_LENGTH} characters: [A-Za-z0-9_-] segments of at most ${BLOB_KEY_MAX_SEGMENT}, separated by "/"`,
    );
  }
}

/** Throws BAD_BLOB for a content type that is not a plain MIME type or a size that cannot be one. */
export function checkBlobMeta(meta: BlobMeta, data: Buffer | Readable): void {
  const ct = meta.contentType;
  if (typeof ct !== "string" || ct.length > CONTENT_TYPE_MAX_LENGTH || !CONTENT_TYPE.test(ct)) {
    throw new NatterError("BAD_BLOB", "blob content type is not a valid MIME type");
  }
  if (meta.size !== undefined && !(Number.isSafeInteger(meta.size) && meta.size >= 0)) {
    throw new NatterError("BAD_BLOB", "blob size must be a non-negative integer");
  }
  if (Buffer.isBuffer(data) && meta.size !== undefined && data.length !== meta.size) {
    throw sizeMismatch(meta.size);
  }
}

function sizeMismatch(expected: number): NatterError {
  return new NatterError("BAD_BLOB", `blob body does not have the declared size of ${expected} bytes`);
}

/**
 * The chunks of a blob body as Buffers. Ends with BAD_BLOB when a declared size is exceeded (as
 * soon as it is) or not reached. An error of the source itself is rethrown as it is, recorded in
 * `failure.source` so callers can tell it from their own infrastructure errors.
 */
export async function* blobChunks(
  data: Buffer | Readable,
  expected: number | undefined,
  failure: { source?: unknown },
): AsyncGenerator<Buffer> {
  if (Buffer.isBuffer(data)) {
    if (data.length > 0) yield data;
    return;
  }
  let total = 0;
  const it = (data as AsyncIterable<unknown>)[Symbol.asyncIterator]();
  try {
    for (;;) {
      let next: IteratorResult<unknown>;
      try {
        next = await it.next();
      } catch (err) {
        failure.source = err;
        throw err;
      }
      if (next.done === true) break;
      const chunk = toBuffer(next.value);
      total += chunk.length;
      if (expected !== undefined && total > expected) throw sizeMismatch(expected);
      if (chunk.length > 0) yield chunk;
    }
  } finally {
    // Stops (and destroys) the source when we stop early.
    if (failure.source === undefined) await it.return?.();
  }
  if (expected !== undefined && total !== expected) throw sizeMismatch(expected);
}

function toBuffer(chunk: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (typeof chunk === "string") return Buffer.from(chunk, "utf8");
  throw new NatterError("BAD_BLOB", "blob stream must yield bytes");
}

/** What a failed put throws: the source's own error, a NatterError as is, else `infra(err)`. */
export function putFailure(err: unknown, failure: { source?: unknown }, infra: (err: unknown) => NatterError): unknown {
  if (failure.source !== undefined && err === failure.source) return err;
  if (err instanceof NatterError) return err;
  return infra(err);
}
