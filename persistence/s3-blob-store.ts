// The production blob store: one S3 bucket (MinIO, AWS S3, versitygw…) through the minio client.
// A key is the object name as it is (checked by checkBlobKey first).
//
// Streams are uploaded by this module, not by the client's putObject: for a stream of unknown size
// putObject buffers up to ~550 MB per part, resumes any earlier unfinished upload of the same name
// (with that upload's content type), and never settles when the source stream fails. Here a body
// (stream or buffer) that fits in one part is one PUT; a larger one is a multipart upload of
// `partSize` parts, aborted on any failure. Either way the object appears whole or not at all.
//
// The S3 actions this store uses, all on its one bucket (deploy/minio/natter-policy.json grants
// exactly these; test/minio-policy.int.test.ts runs the conformance suite with that policy):
//   s3:HeadBucket             bucketExists (open, ping); AWS S3 has no such action: s3:ListBucket there
//   s3:GetObject              get, stat (HEAD), and the GETs of signedUrl's presigned URLs
//   s3:PutObject              put: a PUT, or the multipart upload's initiate, parts and complete
//   s3:AbortMultipartUpload   put: a failed multipart upload is aborted
//   s3:DeleteObject           delete
//   s3:CreateBucket           open, only when the bucket is missing (compose's minio-setup makes it)
// With the client's region set (blobs.region), none of them asks GetBucketLocation.
import { createHash } from "node:crypto";
import type { Readable } from "node:stream";
import { Client, S3Error } from "minio";
import type { BlobsConfig } from "../config/index.ts";
import { type Logger, NatterError } from "../core/index.ts";
import { blobChunks, checkBlobKey, checkBlobMeta, putFailure, type BlobInfo, type BlobMeta, type BlobStore } from "./blob-store.ts";

export type S3BlobsConfig = Extract<BlobsConfig, { kind: "s3" }>;

export interface S3BlobStoreOptions {
  /** Bytes buffered per upload part: at least 5 MiB (S3's minimum), 8 MiB by default. */
  partSize?: number;
  log?: Logger;
}

const MIN_PART_SIZE = 5 * 1024 * 1024;
const DEFAULT_PART_SIZE = 8 * 1024 * 1024;

function unavailable(what: string, err: unknown): NatterError {
  return new NatterError("UNAVAILABLE", `s3: ${what} failed`, { cause: err });
}

function s3Code(err: unknown): string | undefined {
  return err instanceof S3Error ? err.code : undefined;
}

function isMissing(err: unknown): boolean {
  const code = s3Code(err);
  return code === "NoSuchKey" || code === "NotFound";
}

/** A buffer as `size`-byte views (the last one shorter); nothing is copied. */
function* slices(buf: Buffer, size: number): Generator<Buffer> {
  for (let at = 0; at < buf.length; at += size) yield buf.subarray(at, at + size);
}

/** Presigned URLs are valid for at most 7 days (S3's limit for SigV4). */
const MAX_PRESIGN_SEC = 7 * 24 * 3600;

export class S3BlobStore implements BlobStore {
  readonly #client: Client;
  /** Signs URLs for the host clients reach (blobs.publicUrl); signing makes no request. */
  readonly #presigner: Client;
  readonly #bucket: string;
  readonly #partSize: number;

  private constructor(client: Client, presigner: Client, bucket: string, partSize: number) {
    this.#client = client;
    this.#presigner = presigner;
    this.#bucket = bucket;
    this.#partSize = partSize;
  }

  /** Connects and creates the bucket when it does not exist. */
  static async open(cfg: S3BlobsConfig, opts: S3BlobStoreOptions = {}): Promise<S3BlobStore> {
    const partSize = opts.partSize ?? DEFAULT_PART_SIZE;
    if (!Number.isSafeInteger(partSize) || partSize < MIN_PART_SIZE) {
      throw new NatterError("CONFIG_INVALID", `s3: partSize must be at least ${MIN_PART_SIZE} bytes`);
    }
    const client = new Client({
      endPoint: cfg.endPoint,
      port: cfg.port,
      useSSL: cfg.useSSL,
      accessKey: cfg.accessKey,
      secretKey: cfg.secretKey,
      region: cfg.region,
    });
    let step = "opening";
    try {
      if (!(await client.bucketExists(cfg.bucket))) {
        step = "creating";
        try {
          await client.makeBucket(cfg.bucket, cfg.region);
          opts.log?.info({ bucket: cfg.bucket, region: cfg.region }, "created s3 bucket for blobs");
        } catch (err) {
          // Another process made it first.
          if (s3Code(err) !== "BucketAlreadyOwnedByYou") throw err;
        }
      }
    } catch (err) {
      if (step === "creating" && s3Code(err) === "AccessDenied") {
        throw new NatterError(
          "UNAVAILABLE",
          `s3: bucket ${cfg.bucket} does not exist, and blobs.accessKey may not create it: create it (compose's minio-setup does)`,
          { cause: err },
        );
      }
      throw unavailable(`${step} bucket ${cfg.bucket}`, err);
    }
    let presigner = client;
    if (cfg.publicUrl !== undefined) {
      const pub = new URL(cfg.publicUrl);
      const useSSL = pub.protocol === "https:";
      presigner = new Client({
        endPoint: pub.hostname,
        port: pub.port === "" ? (useSSL ? 443 : 80) : Number(pub.port),
        useSSL,
        accessKey: cfg.accessKey,
        secretKey: cfg.secretKey,
        region: cfg.region,
      });
    }
    return new S3BlobStore(client, presigner, cfg.bucket, partSize);
  }

  async put(key: string, data: Buffer | Readable, meta: BlobMeta): Promise<void> {
    checkBlobKey(key);
    checkBlobMeta(meta, data);
    const headers = { "Content-Type": meta.contentType };
    const failure: { source?: unknown } = {};
    let uploadId: string | undefined;
    try {
      if (Buffer.isBuffer(data) && data.length <= this.#partSize) {
        await this.#client.putObject(this.#bucket, key, data, data.length, headers);
        return;
      }
      const parts: { part: number; etag: string }[] = [];
      let pending: Buffer[] = [];
      let pendingBytes = 0;
      const flushPart = async (): Promise<void> => {
        const body = Buffer.concat(pending, pendingBytes);
        pending = [];
        pendingBytes = 0;
        uploadId ??= await this.#client.initiateNewMultipartUpload(this.#bucket, key, headers);
        parts.push({ part: parts.length + 1, etag: await this.#uploadPart(key, uploadId, parts.length + 1, body) });
      };
      // A larger buffer goes in parts too: the client's putObject would upload it by its own
      // multipart path, which lists the bucket's unfinished uploads first (more S3 actions).
      const chunks = Buffer.isBuffer(data) ? slices(data, this.#partSize) : blobChunks(data, meta.size, failure);
      for await (const chunk of chunks) {
        pending.push(chunk);
        pendingBytes += chunk.length;
        if (pendingBytes >= this.#partSize) await flushPart();
      }
      if (uploadId === undefined) {
        // It all fitted in one part: one plain PUT.
        await this.#client.putObject(this.#bucket, key, Buffer.concat(pending, pendingBytes), pendingBytes, headers);
        return;
      }
      if (pendingBytes > 0) await flushPart();
      await this.#client.completeMultipartUpload(this.#bucket, key, uploadId, parts);
    } catch (err) {
      if (uploadId !== undefined) {
        await this.#client.abortMultipartUpload(this.#bucket, key, uploadId).catch(() => undefined);
      }
      throw putFailure(err, failure, (e) => unavailable("put", e));
    }
  }

  async #uploadPart(key: string, uploadId: string, partNumber: number, body: Buffer): Promise<string> {
    const res = await this.#client.makeRequestAsyncOmit(
      {
        method: "PUT",
        bucketName: this.#bucket,
        objectName: key,
        query: `partNumber=${partNumber}&uploadId=${encodeURIComponent(uploadId)}`,
        headers: {
          "Content-Length": String(body.length),
          "Content-MD5": createHash("md5").update(body).digest("base64"),
        },
      },
      body,
    );
    const etag = res.headers.etag;
    return typeof etag === "string" ? etag.replace(/^"|"$/g, "") : "";
  }

  async get(key: string): Promise<Readable> {
    checkBlobKey(key);
    try {
      return await this.#client.getObject(this.#bucket, key);
    } catch (err) {
      if (isMissing(err)) throw new NatterError("BLOB_NOT_FOUND", undefined, { cause: err });
      throw unavailable("get", err);
    }
  }

  async stat(key: string): Promise<BlobInfo | null> {
    checkBlobKey(key);
    try {
      const st = await this.#client.statObject(this.#bucket, key);
      const contentType: unknown = st.metaData["content-type"];
      return { size: st.size, contentType: typeof contentType === "string" ? contentType : "application/octet-stream" };
    } catch (err) {
      if (isMissing(err)) return null;
      throw unavailable("stat", err);
    }
  }

  async delete(key: string): Promise<void> {
    checkBlobKey(key);
    try {
      await this.#client.removeObject(this.#bucket, key);
    } catch (err) {
      if (isMissing(err)) return;
      throw unavailable("delete", err);
    }
  }

  async signedUrl(key: string, expiresSec: number): Promise<string> {
    checkBlobKey(key);
    if (!Number.isSafeInteger(expiresSec) || expiresSec < 1 || expiresSec > MAX_PRESIGN_SEC) {
      throw new NatterError("BAD_BLOB", `a signed URL lasts 1..${MAX_PRESIGN_SEC} seconds`);
    }
    try {
      return await this.#presigner.presignedGetObject(this.#bucket, key, expiresSec);
    } catch (err) {
      throw unavailable("presign", err);
    }
  }

  async ping(): Promise<void> {
    let exists: boolean;
    try {
      exists = await this.#client.bucketExists(this.#bucket);
    } catch (err) {
      throw unavailable("ping", err);
    }
    if (!exists) throw new NatterError("UNAVAILABLE", `s3: bucket ${this.#bucket} does not exist`);
  }

  async close(): Promise<void> {
    // The client keeps no connection of its own beyond the shared keep-alive agent.
  }
}
