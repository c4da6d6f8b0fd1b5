// The embedded blob store (the run command's default): one folder, no server.
//
// A blob is one file, `objects/<2 hex>/<sha256 of key>`: a key never becomes a path (no traversal,
// no clash between `a` and `a/b`, none on case-insensitive disks, no file name too long). The file
// starts with a small header (magic, length, JSON with key and content type), then the bytes.
// A put writes `tmp/<uuid>`, syncs it and renames it over the old file, so a reader (or a crash)
// sees the old blob or the new one, never part of one; an open reader keeps reading the old one.
import { createHash, randomUUID } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import type { Readable } from "node:stream";
import { NatterError } from "../core/index.ts";
import { blobChunks, checkBlobKey, checkBlobMeta, putFailure, type BlobInfo, type BlobMeta, type BlobStore } from "./blob-store.ts";

const MAGIC = Buffer.from("NBLOB1\n", "latin1");
const PREFIX = MAGIC.length + 4;
const MAX_HEADER = 4096;
/** Temp files older than this are left over from a crash and removed by `open`. */
const STALE_TMP_MS = 3600_000;

interface Header {
  key: string;
  contentType: string;
}

function unavailable(what: string, err: unknown): NatterError {
  return new NatterError("UNAVAILABLE", `blob folder: ${what} failed`, { cause: err });
}

function isMissing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === "ENOENT";
}

function encodeHeader(h: Header): Buffer {
  const json = Buffer.from(JSON.stringify({ key: h.key, contentType: h.contentType }), "utf8");
  const len = Buffer.alloc(4);
  len.writeUInt32BE(json.length);
  return Buffer.concat([MAGIC, len, json]);
}

/** Reads and checks the header; returns it with the offset of the first byte of the blob. */
async function readHeader(fh: fs.FileHandle, key: string): Promise<Header & { offset: number }> {
  const prefix = Buffer.alloc(PREFIX);
  const { bytesRead } = await fh.read(prefix, 0, PREFIX, 0);
  const len = bytesRead === PREFIX ? prefix.readUInt32BE(MAGIC.length) : -1;
  if (!prefix.subarray(0, MAGIC.length).equals(MAGIC) || len < 0 || len > MAX_HEADER) {
    throw new NatterError("INTERNAL", "blob folder: a blob file has no valid header");
  }
  const json = Buffer.alloc(len);
  const read = await fh.read(json, 0, len, PREFIX);
  let header: Partial<Header> = {};
  try {
    header = JSON.parse(json.subarray(0, read.bytesRead).toString("utf8")) as Partial<Header>;
  } catch {
    // Reported below.
  }
  if (header.key !== key || typeof header.contentType !== "string") {
    throw new NatterError("INTERNAL", "blob folder: a blob file's header does not match its key");
  }
  return { key, contentType: header.contentType, offset: PREFIX + len };
}

export class FsBlobStore implements BlobStore {
  readonly #objects: string;
  readonly #tmp: string;

  private constructor(dir: string) {
    this.#objects = path.join(dir, "objects");
    this.#tmp = path.join(dir, "tmp");
  }

  /** Creates the folder if needed and removes temp files a crash left behind. */
  static async open(dir: string): Promise<FsBlobStore> {
    const store = new FsBlobStore(path.resolve(dir));
    try {
      await fs.mkdir(store.#objects, { recursive: true });
      await fs.mkdir(store.#tmp, { recursive: true });
      const now = Date.now();
      for (const name of await fs.readdir(store.#tmp)) {
        const file = path.join(store.#tmp, name);
        const st = await fs.stat(file).catch(() => undefined);
        if (st !== undefined && now - st.mtimeMs > STALE_TMP_MS) await fs.rm(file, { force: true });
      }
    } catch (err) {
      throw unavailable(`opening ${dir}`, err);
    }
    return store;
  }

  #fileOf(key: string): string {
    const hash = createHash("sha256").update(key, "utf8").digest("hex");
    return path.join(this.#objects, hash.slice(0, 2), hash);
  }

  async put(key: string, data: Buffer | Readable, meta: BlobMeta): Promise<void> {
    checkBlobKey(key);
    checkBlobMeta(meta, data);
    const file = this.#fileOf(key);
    const tmp = path.join(this.#tmp, randomUUID());
    const failure: { source?: unknown } = {};
    let fh: fs.FileHandle | undefined;
    try {
      fh = await fs.open(tmp, "wx");
      await fh.write(encodeHeader({ key, contentType: meta.contentType }));
      for await (const chunk of blobChunks(data, meta.size, failure)) await fh.write(chunk);
      await fh.sync();
      await fh.close();
      fh = undefined;
      await fs.mkdir(path.dirname(file), { recursive: true });
      await fs.rename(tmp, file);
    } catch (err) {
      await fh?.close().catch(() => undefined);
      await fs.rm(tmp, { force: true }).catch(() => undefined);
      throw putFailure(err, failure, (e) => unavailable("write", e));
    }
    await syncDir(path.dirname(file));
  }

  async get(key: string): Promise<Readable> {
    checkBlobKey(key);
    const fh = await this.#open(key);
    if (fh === undefined) throw new NatterError("BLOB_NOT_FOUND");
    try {
      const { offset } = await readHeader(fh, key);
      return fh.createReadStream({ start: offset });
    } catch (err) {
      await fh.close().catch(() => undefined);
      throw err instanceof NatterError ? err : unavailable("read", err);
    }
  }

  async stat(key: string): Promise<BlobInfo | null> {
    checkBlobKey(key);
    const fh = await this.#open(key);
    if (fh === undefined) return null;
    try {
      const { contentType, offset } = await readHeader(fh, key);
      const { size } = await fh.stat();
      return { size: size - offset, contentType };
    } catch (err) {
      throw err instanceof NatterError ? err : unavailable("stat", err);
    } finally {
      await fh.close().catch(() => undefined);
    }
  }

  async delete(key: string): Promise<void> {
    checkBlobKey(key);
    try {
      await fs.rm(this.#fileOf(key), { force: true });
    } catch (err) {
      throw unavailable("delete", err);
    }
  }

  async signedUrl(key: string, _expiresSec: number): Promise<string | null> {
    checkBlobKey(key);
    return null; // no server of its own: the edge streams the blob
  }

  async ping(): Promise<void> {
    try {
      await fs.access(this.#objects, fs.constants.R_OK | fs.constants.W_OK);
      await fs.access(this.#tmp, fs.constants.R_OK | fs.constants.W_OK);
    } catch (err) {
      throw unavailable("ping", err);
    }
  }

  async close(): Promise<void> {
    // Nothing held open: each call opens and closes its own files.
  }

  /** The blob's file opened for reading, or undefined when there is none. */
  async #open(key: string): Promise<fs.FileHandle | undefined> {
    try {
      return await fs.open(this.#fileOf(key), "r");
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw unavailable("open", err);
    }
  }
}

/** Makes a rename durable (best effort: not every platform can sync a folder). */
async function syncDir(dir: string): Promise<void> {
  let fh: fs.FileHandle | undefined;
  try {
    fh = await fs.open(dir, "r");
    await fh.sync();
  } catch {
    // The rename itself succeeded; only its durability across a power cut is in doubt.
  } finally {
    await fh?.close().catch(() => undefined);
  }
}
