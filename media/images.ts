// Images: upload, attach to a message, fetch. The rules:
//   - An upload is read with a size cap and a pace (a minimum rate and a deadline: a trickling
//     body is cut with UPLOAD_TIMEOUT and frees its place), at most images.maxUploadsPerUser at
//     once per user, then checked and re-encoded in a child process with a deadline
//     (processor.ts, process.ts) before anything is stored; then its record goes to the `uploads` KV bucket with a per-key TTL of
//     images.orphanAfterSec, then its two blobs (full size and thumbnail) are written. Only then
//     does the uploader learn its id: a failed or half-finished upload leaves nothing anyone
//     can name, and whatever it wrote is swept when its record expires.
//   - Only the uploader may attach an upload, and only while its record lives: attaching renews
//     the record with compare-and-set (so it cannot expire under us), then records the share in
//     the store's image index, then the message is published. An image recorded in the index is
//     never swept.
//   - A user may fetch an image they uploaded, or one sent to a conversation they are a member
//     of (the index lists an image's conversations; membership is read from the directory). S3
//     answers with a short-lived presigned GET; the filesystem store is streamed by the edge.
//     Anyone else — and any unknown id — gets the same IMAGE_NOT_FOUND: ids do not leak.
import { randomBytes } from "node:crypto";
import type { Readable } from "node:stream";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import { z } from "zod";
import type { ImagesConfig } from "../config/index.ts";
import { type Logger, NatterError, Semaphore } from "../core/index.ts";
import { type BlobStore, type ImageIndex, MAX_IMAGE_SHARES } from "../persistence/index.ts";
import { type ConversationDirectory, type ImageRef, ImageRefSchema } from "../streams/index.ts";
import { decodeJson, encodeJson, isNotFound, isWrongLastSequence, names, uploadKeySubject } from "../nats/index.ts";
import { ImageProcessor } from "./processor.ts";

export type ImageVariant = "full" | "thumb";
export const IMAGE_VARIANTS: readonly ImageVariant[] = ["full", "thumb"];

/** `img_` and 22 characters of base64url: 128 random bits, never guessed. */
const IMAGE_ID = /^img_[A-Za-z0-9_-]{22}$/;
const TIMEOUT_MS = 5000;
/** Attempts of an attach racing another attach of the same upload. */
const ATTACH_ATTEMPTS = 3;
/** Conversations checked at once when looking for one the user is a member of. */
const MEMBERSHIP_BATCH = 8;
/** Processing times kept for benchmarks and debugging. */
const TIMINGS_KEPT = 1000;

export function newImageId(): string {
  return `img_${randomBytes(16).toString("base64url")}`;
}

export function isImageId(id: unknown): id is string {
  return typeof id === "string" && IMAGE_ID.test(id);
}

/** Where an image's bytes live in the blob store. */
export function imageBlobKey(id: string, variant: ImageVariant): string {
  if (!isImageId(id)) throw new NatterError("IMAGE_NOT_FOUND");
  return `images/${id}/${variant}`;
}

const UploadRecord = z.object({ v: z.literal(1), owner: z.string(), image: ImageRefSchema, ts: z.number() });
type UploadRecord = z.infer<typeof UploadRecord>;

/** What a fetch answers: a URL to redirect to (S3), or the bytes to stream (filesystem). */
export type ImageBody =
  | { kind: "url"; url: string }
  | { kind: "stream"; stream: Readable; contentType: string; size: number };

export interface ImageServiceDeps {
  js: JetStreamClient;
  jsm: JetStreamManager;
  blobs: BlobStore;
  index: ImageIndex;
  directory: ConversationDirectory;
  config: ImagesConfig;
  log: Logger;
}

/** How fast an upload's body must arrive (images.uploadMinBytesPerSec, images.uploadTimeoutSec). */
export interface BodyPace {
  /** The average rate the body must keep, counted from `graceMs` after it began. */
  minBytesPerSec: number;
  /** The whole body within this. */
  timeoutMs: number;
}

/** A body's first seconds are not held to the rate (a connection warming up, a phone waking its radio). */
const PACE_GRACE_MS = 5000;

/**
 * Reads a body to its end, keeping at most `max` bytes: IMAGE_TOO_LARGE when it is longer. Past
 * `max` the rest is read and dropped (so an HTTP client still gets the answer rather than a reset
 * connection) up to `discardUpTo` bytes in all; a body longer than that is abandoned at once.
 * With a `pace`, a body that falls below its rate or passes its deadline is abandoned (no more is
 * read) with UPLOAD_TIMEOUT.
 */
export async function readCapped(body: AsyncIterable<unknown>, max: number, opts: { discardUpTo?: number; pace?: BodyPace } = {}): Promise<Buffer> {
  const discardUpTo = opts.discardUpTo ?? max * 4;
  const chunks: Buffer[] = [];
  let total = 0;
  const it = body[Symbol.asyncIterator]();
  const watch = opts.pace === undefined ? undefined : paceWatch(opts.pace, () => total);
  try {
    for (;;) {
      const next = it.next();
      const r = watch === undefined ? await next : await Promise.race([next, watch.late]);
      if (r === "late") {
        // Left unread: the caller answers and closes the connection. The pending read ends with it.
        next.catch(() => undefined);
        throw new NatterError("UPLOAD_TIMEOUT", watch!.why());
      }
      if (r.done) break;
      const chunk = r.value;
      const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array);
      total += b.length;
      if (total <= max) chunks.push(b);
      else if (total > discardUpTo) {
        await it.return?.();
        break;
      }
    }
  } finally {
    watch?.stop();
  }
  if (total > max) throw new NatterError("IMAGE_TOO_LARGE", `the file exceeds ${max} bytes`);
  return Buffer.concat(chunks, total);
}

/**
 * Watches a body's progress: `late` resolves once the bytes so far fall below the pace's rate
 * (after the grace) or the deadline passes. Checked when the rate would next be missed, not on
 * every chunk.
 */
function paceWatch(pace: BodyPace, received: () => number): { late: Promise<"late">; why(): string; stop(): void } {
  const start = Date.now();
  let timer: NodeJS.Timeout | undefined;
  let reason = "";
  const late = new Promise<"late">((resolve) => {
    const check = () => {
      const elapsed = Date.now() - start;
      if (elapsed >= pace.timeoutMs) {
        reason = `the upload did not arrive within ${pace.timeoutMs / 1000} s`;
        return resolve("late");
      }
      // The time at which the bytes so far stop meeting the rate.
      const dueAt = Math.max(PACE_GRACE_MS, (received() / pace.minBytesPerSec) * 1000);
      if (elapsed >= PACE_GRACE_MS && elapsed > dueAt) {
        reason = `the upload arrived slower than ${pace.minBytesPerSec} bytes/s`;
        return resolve("late");
      }
      timer = setTimeout(check, Math.max(10, Math.min(dueAt, pace.timeoutMs) - elapsed + 1));
    };
    timer = setTimeout(check, Math.min(PACE_GRACE_MS, pace.timeoutMs));
  });
  return { late, why: () => reason, stop: () => clearTimeout(timer) };
}

export class ImageService {
  readonly #d: ImageServiceDeps;
  readonly #slots: Semaphore;
  readonly #processor: ImageProcessor;
  /** Uploads being read, waiting or processed; at most 9 × maxConcurrent (each holds ≤ maxBytes). */
  #admitted = 0;
  readonly #maxAdmitted: number;
  /** Uploads in progress by user (at most images.maxUploadsPerUser each). */
  readonly #byUser = new Map<string, number>();
  readonly #ttl: string;
  /** Milliseconds of the most recent uploads' steps (newest last, at most 1000). */
  readonly timings: { fullMs: number; thumbMs: number; bytes: number }[] = [];

  constructor(deps: ImageServiceDeps) {
    this.#d = deps;
    this.#slots = new Semaphore(deps.config.maxConcurrent);
    this.#maxAdmitted = deps.config.maxConcurrent * 9;
    this.#ttl = `${deps.config.orphanAfterSec}s`;
    this.#processor = new ImageProcessor({
      size: deps.config.maxConcurrent,
      timeoutMs: deps.config.processTimeoutSec * 1000,
      limits: { maxPixels: deps.config.maxPixels, thumbSize: deps.config.thumbSize },
      log: deps.log,
    });
  }

  /** Stops the image processes. */
  close(): Promise<void> {
    return this.#processor.close();
  }

  get config(): ImagesConfig {
    return this.#d.config;
  }

  /**
   * Reads, checks, re-encodes and stores one upload of `user` (at most maxBytes). Up to
   * maxConcurrent uploads are decoded at once and 8× that many more are read or wait; beyond
   * that RATE_LIMITED at once, as for a user's upload past maxUploadsPerUser. A slow uploader
   * holds no processing slot while its body arrives, and one slower than the pace is cut
   * (UPLOAD_TIMEOUT), freeing its place.
   */
  async upload(user: string, contentType: string | undefined, body: AsyncIterable<unknown>): Promise<ImageRef> {
    const mine = this.#byUser.get(user) ?? 0;
    const perUser = this.#d.config.maxUploadsPerUser;
    if (mine >= perUser) throw new NatterError("RATE_LIMITED", `at most ${perUser} uploads of one user at once; retry when one is done`);
    if (this.#admitted >= this.#maxAdmitted) throw new NatterError("RATE_LIMITED", "too many images are being uploaded; retry later");
    this.#admitted++;
    this.#byUser.set(user, mine + 1);
    try {
      return await this.#upload(user, contentType, body);
    } finally {
      this.#admitted--;
      const left = (this.#byUser.get(user) ?? 1) - 1;
      if (left > 0) this.#byUser.set(user, left);
      else this.#byUser.delete(user);
    }
  }

  async #upload(user: string, contentType: string | undefined, body: AsyncIterable<unknown>): Promise<ImageRef> {
    const { config, blobs, js, log } = this.#d;
    const bytes = await readCapped(body, config.maxBytes, { pace: { minBytesPerSec: config.uploadMinBytesPerSec, timeoutMs: config.uploadTimeoutSec * 1000 } });
    await this.#slots.acquire();
    let image: ImageRef;
    let full: Buffer;
    let thumb: Buffer;
    try {
      const p = await this.#processor.process(bytes, contentType);
      this.timings.push({ fullMs: p.ms.full, thumbMs: p.ms.thumb, bytes: bytes.length });
      if (this.timings.length > TIMINGS_KEPT) this.timings.shift();
      full = p.full.data;
      thumb = p.thumb.data;
      image = {
        id: newImageId(),
        type: p.full.type,
        width: p.full.width,
        height: p.full.height,
        bytes: full.length,
        thumb: { type: p.thumb.type, width: p.thumb.width, height: p.thumb.height, bytes: thumb.length },
      };
    } finally {
      this.#slots.release();
    }
    // The record first: if anything below fails (or this process dies), its expiry sweeps the blobs.
    const record: UploadRecord = { v: 1, owner: user, image, ts: Date.now() };
    try {
      await js.publish(uploadKeySubject(image.id), encodeJson(record), { ttl: this.#ttl, expect: { lastSubjectSequence: 0 }, timeout: TIMEOUT_MS });
    } catch (err) {
      throw new NatterError("UNAVAILABLE", "could not record the upload", { cause: err });
    }
    try {
      await Promise.all([
        blobs.put(imageBlobKey(image.id, "full"), full, { contentType: image.type, size: full.length }),
        blobs.put(imageBlobKey(image.id, "thumb"), thumb, { contentType: image.thumb.type, size: thumb.length }),
      ]);
    } catch (err) {
      for (const v of IMAGE_VARIANTS) await blobs.delete(imageBlobKey(image.id, v)).catch(() => undefined);
      log.warn({ err, image: image.id }, "storing an upload failed");
      throw err instanceof NatterError ? err : new NatterError("UNAVAILABLE", "could not store the image", { cause: err });
    }
    return image;
  }

  /**
   * Attaches images to a message `user` is sending to `conv` (membership already checked):
   * each must be the user's own upload, still pending or already shared. Idempotent, so a send
   * retried with the same cid attaches again without harm. Returns the references in order.
   */
  async attach(user: string, conv: string, ids: readonly string[]): Promise<ImageRef[]> {
    const max = this.#d.config.maxPerMessage;
    if (ids.length > max) throw new NatterError("TOO_MANY_IMAGES", `a message carries at most ${max} images`);
    if (new Set(ids).size !== ids.length) throw new NatterError("BAD_FRAME", "images: an image appears twice");
    return Promise.all(ids.map((id) => this.#attachOne(user, conv, id)));
  }

  async #attachOne(user: string, conv: string, id: string): Promise<ImageRef> {
    if (!isImageId(id)) throw new NatterError("IMAGE_NOT_FOUND", `image ${String(id).slice(0, 40)} not found`);
    const { index, js } = this.#d;
    for (let attempt = 0; attempt < ATTACH_ATTEMPTS; attempt++) {
      const shared = await index.sharedImage(id);
      if (shared !== null) {
        if (shared.owner !== user) break;
        if (!shared.convs.includes(conv)) {
          if (shared.convs.length >= MAX_IMAGE_SHARES) {
            throw new NatterError("FORBIDDEN", `an image can be sent to at most ${MAX_IMAGE_SHARES} conversations; upload it again`);
          }
          await index.shareImage(user, shared.image, conv);
        }
        return shared.image;
      }
      const pending = await this.#pending(id);
      if (pending === null || pending.record.owner !== user) break;
      try {
        // Renew the record (compare-and-set: fails once it has expired) so it cannot expire between
        // here and the index write; an expired upload may already be swept.
        await js.publish(uploadKeySubject(id), encodeJson(pending.record), {
          ttl: this.#ttl,
          expect: { lastSubjectSequence: pending.seq },
          timeout: TIMEOUT_MS,
        });
      } catch (err) {
        if (isWrongLastSequence(err)) continue; // expired, or attached concurrently: look again
        throw new NatterError("UNAVAILABLE", "could not attach the image", { cause: err });
      }
      await index.shareImage(user, pending.record.image, conv);
      return pending.record.image;
    }
    throw new NatterError("IMAGE_NOT_FOUND", `image ${id} not found (unknown, expired, or not uploaded by you)`);
  }

  /** The image's bytes (or a URL to them) if `user` may see it; IMAGE_NOT_FOUND otherwise. */
  async open(user: string, id: string, variant: ImageVariant): Promise<ImageBody> {
    if (!isImageId(id) || !IMAGE_VARIANTS.includes(variant)) throw new NatterError("IMAGE_NOT_FOUND");
    const image = await this.#visible(user, id);
    if (image === null) throw new NatterError("IMAGE_NOT_FOUND");
    const key = imageBlobKey(id, variant);
    const url = await this.#d.blobs.signedUrl(key, this.#d.config.urlTtlSec);
    if (url !== null) return { kind: "url", url };
    try {
      const stream = await this.#d.blobs.get(key);
      return { kind: "stream", stream, contentType: variant === "thumb" ? image.thumb.type : image.type, size: variant === "thumb" ? image.thumb.bytes : image.bytes };
    } catch (err) {
      if (err instanceof NatterError && err.code === "BLOB_NOT_FOUND") throw new NatterError("IMAGE_NOT_FOUND", undefined, { cause: err });
      throw err;
    }
  }

  /** The image if `user` uploaded it or is a member of a conversation it was sent to. */
  async #visible(user: string, id: string): Promise<ImageRef | null> {
    const shared = await this.#d.index.sharedImage(id);
    if (shared === null) {
      const pending = await this.#pending(id);
      return pending !== null && pending.record.owner === user ? pending.record.image : null;
    }
    if (shared.owner === user) return shared.image;
    for (let i = 0; i < shared.convs.length; i += MEMBERSHIP_BATCH) {
      const convs = await Promise.all(shared.convs.slice(i, i + MEMBERSHIP_BATCH).map((c) => this.#d.directory.get(c)));
      if (convs.some((c) => c?.members.includes(user))) return shared.image;
    }
    return null;
  }

  /** The upload's live record and its revision, or null (none, expired, or unreadable). */
  async #pending(id: string): Promise<{ record: UploadRecord; seq: number } | null> {
    try {
      const sm = await this.#d.jsm.direct.getMessage(names.kvStream(names.uploadsBucket), { last_by_subj: uploadKeySubject(id) });
      if (sm === null || sm.header?.has("Nats-Marker-Reason") || (sm.header?.get("KV-Operation") ?? "") !== "") return null;
      let value: unknown;
      try {
        value = decodeJson(sm.data);
      } catch {
        return null;
      }
      const parsed = UploadRecord.safeParse(value);
      return parsed.success ? { record: parsed.data, seq: sm.seq } : null;
    } catch (err) {
      if (isNotFound(err)) return null;
      throw new NatterError("UNAVAILABLE", "the uploads bucket is unavailable", { cause: err });
    }
  }
}


