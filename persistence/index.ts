import path from "node:path";
import type { Config } from "../config/index.ts";
import { type Logger, NatterError } from "../core/index.ts";
import { CassandraMessageStore, migrateCassandra } from "./cassandra-message-store.ts";
import type { BlobStore } from "./blob-store.ts";
import { FsBlobStore } from "./fs-blob-store.ts";
import type { ImageIndex } from "./image-index.ts";
import type { MessageStore } from "./message-store.ts";
import { S3BlobStore } from "./s3-blob-store.ts";
import { EmbeddedMessageStore } from "./sqlite-message-store.ts";

export type { MessageStore, StoredMessage } from "./message-store.ts";
export { MAX_IMAGE_SHARES, type ImageIndex } from "./image-index.ts";
export { CassandraMessageStore, migrateCassandra } from "./cassandra-message-store.ts";
export { bucketOf, BUCKET_MS } from "./cassandra-schema.ts";
export { Persister } from "./persister.ts";
export { historyReader } from "./history.ts";
export type { BlobStore } from "./blob-store.ts";

/** Both stores keep messages and the image index, on one connection. */
export type Store = MessageStore & ImageIndex;

/** The one place a store implementation is chosen. */
export async function openMessageStore(cfg: Config, log: Logger): Promise<Store> {
  const store = cfg.store;
  switch (store.kind) {
    case "sqlite":
      return new EmbeddedMessageStore(path.resolve(store.path ?? path.join(cfg.dataDir, "natter.sqlite")));
    case "cassandra":
      if (store.migrateOnStart) await migrateCassandra(store, log);
      return CassandraMessageStore.open(store, { concurrency: cfg.workers.persistConcurrency });
    default: {
      const never: never = store;
      throw new NatterError("CONFIG_INVALID", `unknown store kind ${JSON.stringify(never)}`);
    }
  }
}

/** The one place a blob store implementation is chosen. */
export async function openBlobStore(cfg: Config, log: Logger): Promise<BlobStore> {
  const blobs = cfg.blobs;
  switch (blobs.kind) {
    case "fs":
      return FsBlobStore.open(path.resolve(blobs.dir ?? path.join(cfg.dataDir, "blobs")));
    case "s3":
      return S3BlobStore.open(blobs, { log });
    default: {
      const never: never = blobs;
      throw new NatterError("CONFIG_INVALID", `unknown blobs kind ${JSON.stringify(never)}`);
    }
  }
}
