// Versioned, idempotent Cassandra migrations. `natter migrate` (and start, when configured)
// applies the ones not yet recorded in `schema_migrations`. Table layout and sizing: docs/storage.md.
import type { CassandraStoreConfig } from "../config/index.ts";

/** A message bucket spans 10 days of accept time (as Discord buckets its messages). */
export const BUCKET_MS = 10 * 24 * 3600 * 1000;

export function bucketOf(ts: number): number {
  return Math.floor(ts / BUCKET_MS);
}

export interface Migration {
  version: number;
  description: string;
  statements: string[];
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: "messages by conversation and bucket, newest first; bucket index per conversation",
    statements: [
      `CREATE TABLE IF NOT EXISTS messages (
         conv_id text,
         bucket int,
         msg_id bigint,
         sender text,
         device text,
         client_id text,
         body text,
         created_at timestamp,
         PRIMARY KEY ((conv_id, bucket), msg_id)
       ) WITH CLUSTERING ORDER BY (msg_id DESC)`,
      `CREATE TABLE IF NOT EXISTS message_buckets (
         conv_id text,
         bucket int,
         PRIMARY KEY ((conv_id), bucket)
       ) WITH CLUSTERING ORDER BY (bucket DESC)`,
    ],
  },
  {
    version: 2,
    description: "membership changes stored beside messages (kind)",
    statements: ["ALTER TABLE messages ADD kind text"],
  },
  {
    version: 3,
    description: "images: the images a message carries (JSON); which conversations each image was shared in",
    statements: [
      "ALTER TABLE messages ADD images text",
      `CREATE TABLE IF NOT EXISTS image_shares (
         image_id text,
         conv_id text,
         owner text static,
         image text static,
         PRIMARY KEY ((image_id), conv_id)
       )`,
    ],
  },
];

export function createKeyspaceCql(cfg: CassandraStoreConfig): string {
  const r = cfg.replication;
  const replication =
    r.class === "SimpleStrategy"
      ? `{'class': 'SimpleStrategy', 'replication_factor': ${r.replicationFactor}}`
      : `{'class': 'NetworkTopologyStrategy', ${Object.entries(r.dataCenters)
          .map(([dc, n]) => `'${dc.replaceAll("'", "''")}': ${n}`)
          .join(", ")}}`;
  return `CREATE KEYSPACE IF NOT EXISTS ${cfg.keyspace} WITH replication = ${replication}`;
}
