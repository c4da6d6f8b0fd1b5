import path from "node:path";
import type { Config } from "../config/index.ts";
import { NatterError } from "../core/errors.ts";
import type { Logger } from "../core/logger.ts";
import { CassandraMessageStore, migrateCassandra } from "./cassandra-message-store.ts";
import type { MessageStore } from "./message-store.ts";
import { EmbeddedMessageStore } from "./sqlite-message-store.ts";

export type { MessageStore, StoredMessage, HistoryQuery } from "./message-store.ts";
export { MAX_HISTORY_LIMIT } from "./message-store.ts";
export { EmbeddedMessageStore } from "./sqlite-message-store.ts";
export { CassandraMessageStore, migrateCassandra } from "./cassandra-message-store.ts";
export { MIGRATIONS, bucketOf, BUCKET_MS } from "./cassandra-schema.ts";
export { Persister, type PersisterDeps, type PersisterStats } from "./persister.ts";

/** The one place a store implementation is chosen. */
export async function openMessageStore(cfg: Config, log: Logger): Promise<MessageStore> {
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
