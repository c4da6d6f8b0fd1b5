// The production store: Apache Cassandra. Messages are partitioned by (conversation, 10-day
// bucket) so a busy group never grows one partition without bound; `message_buckets` lists a
// conversation's non-empty buckets, newest first, so paging skips empty ones.
import cassandra from "cassandra-driver";
import type { CassandraStoreConfig } from "../config/index.ts";
import { NatterError } from "../core/errors.ts";
import type { Logger } from "../core/logger.ts";
import { ImageRefSchema, type ImageRef } from "../streams/messages.ts";
import { MIGRATIONS, bucketOf, createKeyspaceCql } from "./cassandra-schema.ts";
import { MAX_IMAGE_SHARES, type ImageIndex, type SharedImage } from "./image-index.ts";
import { MAX_HISTORY_LIMIT, parseImages, type HistoryQuery, type MessageStore, type StoredMessage } from "./message-store.ts";


const INSERT_MESSAGE =
  "INSERT INTO messages (conv_id, bucket, msg_id, kind, sender, device, client_id, body, created_at, images) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
const INSERT_SHARE = "INSERT INTO image_shares (image_id, conv_id, owner, image) VALUES (?, ?, ?, ?)";
const SELECT_SHARES = "SELECT owner, image, conv_id FROM image_shares WHERE image_id = ? LIMIT ?";
const INSERT_BUCKET = "INSERT INTO message_buckets (conv_id, bucket) VALUES (?, ?)";
const SELECT_BUCKETS = "SELECT bucket FROM message_buckets WHERE conv_id = ?";
const SELECT_NEWEST = "SELECT * FROM messages WHERE conv_id = ? AND bucket = ? LIMIT ?";
const SELECT_BEFORE = "SELECT * FROM messages WHERE conv_id = ? AND bucket = ? AND msg_id < ? LIMIT ?";

function clientOptions(cfg: CassandraStoreConfig, keyspace?: string): cassandra.ClientOptions {
  return {
    contactPoints: cfg.contactPoints,
    localDataCenter: cfg.localDataCenter,
    ...(keyspace ? { keyspace } : {}),
    ...(cfg.username ? { credentials: { username: cfg.username, password: cfg.password ?? "" } } : {}),
    // Reconnect to a node that was down within 10 s, not the driver's default of up to 10 minutes.
    policies: { reconnection: new cassandra.policies.reconnection.ExponentialReconnectionPolicy(500, 10_000, false) },
    // Every statement natter runs (plain inserts and reads) is idempotent, so the driver may retry.
    queryOptions: { prepare: true, isIdempotent: true, consistency: cassandra.types.consistencies[lowerFirst(cfg.consistency)] },
  };
}

function lowerFirst(c: CassandraStoreConfig["consistency"]): keyof typeof cassandra.types.consistencies {
  const map = { ONE: "one", LOCAL_ONE: "localOne", QUORUM: "quorum", LOCAL_QUORUM: "localQuorum", ALL: "all" } as const;
  return map[c];
}

function unavailable(what: string, err: unknown): NatterError {
  return new NatterError("UNAVAILABLE", `cassandra: ${what} failed`, { cause: err });
}

/** Creates the keyspace and applies pending migrations. Safe to run from several processes. */
export async function migrateCassandra(cfg: CassandraStoreConfig, log: Logger): Promise<number[]> {
  const admin = new cassandra.Client(clientOptions(cfg));
  try {
    await admin.connect();
    await admin.execute(createKeyspaceCql(cfg), [], { prepare: false });
    await admin.execute(
      `CREATE TABLE IF NOT EXISTS ${cfg.keyspace}.schema_migrations (version int PRIMARY KEY, description text, applied_at timestamp)`,
      [], { prepare: false },
    );
    const done = new Set(
      (await admin.execute(`SELECT version FROM ${cfg.keyspace}.schema_migrations`, [], { prepare: false })).rows.map((r) => r.get("version") as number),
    );
    const applied: number[] = [];
    for (const m of MIGRATIONS) {
      if (done.has(m.version)) continue;
      log.info({ version: m.version, description: m.description }, "applying cassandra migration");
      for (const stmt of m.statements) {
        await admin.execute(stmt.replace(/^(CREATE TABLE IF NOT EXISTS |ALTER TABLE )(\w+)/, `$1${cfg.keyspace}.$2`), [], { prepare: false }).catch((err: unknown) => {
          // A column added by a migration that crashed before recording itself: already done.
          if (/conflicts with an existing column|already exists/i.test(String((err as Error).message))) return;
          throw err;
        });
      }
      await admin.execute(
        `INSERT INTO ${cfg.keyspace}.schema_migrations (version, description, applied_at) VALUES (?, ?, ?)`,
        [m.version, m.description, new Date()], { prepare: true },
      );
      applied.push(m.version);
    }
    return applied;
  } catch (err) {
    throw unavailable("migration", err);
  } finally {
    await admin.shutdown();
  }
}

interface Options {
  /** Concurrent writes in flight (the driver's executeConcurrent). */
  concurrency?: number;
}

/** (conversation, bucket) index rows this process already wrote; losing one only costs a rewrite. */
const KNOWN_BUCKETS_MAX = 200_000;

export class CassandraMessageStore implements MessageStore, ImageIndex {
  readonly #client: cassandra.Client;
  readonly #concurrency: number;
  readonly #knownBuckets = new Set<string>();

  private constructor(client: cassandra.Client, opts: Options) {
    this.#client = client;
    this.#concurrency = opts.concurrency ?? 256;
  }

  static async open(cfg: CassandraStoreConfig, opts: Options = {}): Promise<CassandraMessageStore> {
    const client = new cassandra.Client(clientOptions(cfg, cfg.keyspace));
    try {
      await client.connect();
    } catch (err) {
      await client.shutdown().catch(() => undefined);
      throw unavailable("connect", err);
    }
    return new CassandraMessageStore(client, opts);
  }

  async putMessages(messages: readonly StoredMessage[]): Promise<void> {
    if (messages.length === 0) return;
    const queries: { query: string; params: unknown[] }[] = [];
    const newBuckets = new Set<string>();
    for (const m of messages) {
      const bucket = bucketOf(m.ts);
      const key = `${m.conv}\n${bucket}`;
      if (!this.#knownBuckets.has(key) && !newBuckets.has(key)) {
        newBuckets.add(key);
        queries.push({ query: INSERT_BUCKET, params: [m.conv, bucket] });
      }
      queries.push({
        query: INSERT_MESSAGE,
        params: [
          m.conv,
          bucket,
          cassandra.types.Long.fromNumber(m.id),
          m.kind,
          m.from,
          m.device,
          m.cid,
          m.text,
          new Date(m.ts),
          m.images !== undefined && m.images.length > 0 ? JSON.stringify(m.images) : null,
        ],
      });
    }
    try {
      await cassandra.concurrent.executeConcurrent(this.#client, queries as { query: string; params: any[] }[], {
        concurrencyLevel: this.#concurrency,
        raiseOnFirstError: true,
      });
    } catch (err) {
      throw unavailable("write", err);
    }
    if (this.#knownBuckets.size + newBuckets.size > KNOWN_BUCKETS_MAX) this.#knownBuckets.clear();
    for (const k of newBuckets) this.#knownBuckets.add(k);
  }

  async history(conv: string, q: HistoryQuery): Promise<StoredMessage[]> {
    const limit = Math.min(Math.max(1, q.limit), MAX_HISTORY_LIMIT);
    try {
      const out: StoredMessage[] = [];
      const buckets = (await this.#client.execute(SELECT_BUCKETS, [conv])).rows.map((r) => r.get("bucket") as number);
      // Read buckets newest first until the page is full, then one more bucket: accept times of
      // neighbouring messages may straddle a bucket edge by clock skew, and ids decide the order.
      let extra = 1;
      for (const bucket of buckets) {
        if (out.length >= limit && extra-- <= 0) break;
        const rs =
          q.before === undefined
            ? await this.#client.execute(SELECT_NEWEST, [conv, bucket, limit])
            : await this.#client.execute(SELECT_BEFORE, [conv, bucket, cassandra.types.Long.fromNumber(q.before), limit]);
        for (const r of rs.rows) out.push(rowToMessage(r));
      }
      out.sort((a, b) => b.id - a.id);
      return out.slice(0, limit);
    } catch (err) {
      throw unavailable("read", err);
    }
  }

  async shareImage(owner: string, image: ImageRef, conv: string): Promise<void> {
    try {
      await this.#client.execute(INSERT_SHARE, [image.id, conv, owner, JSON.stringify(image)]);
    } catch (err) {
      throw unavailable("image share write", err);
    }
  }

  async sharedImage(id: string): Promise<SharedImage | null> {
    let rows: cassandra.types.Row[];
    try {
      rows = (await this.#client.execute(SELECT_SHARES, [id, MAX_IMAGE_SHARES])).rows;
    } catch (err) {
      throw unavailable("image share read", err);
    }
    const first = rows[0];
    if (first === undefined) return null;
    return {
      owner: first.get("owner") as string,
      image: ImageRefSchema.parse(JSON.parse(first.get("image") as string)),
      convs: rows.map((r) => r.get("conv_id") as string),
    };
  }

  async ping(): Promise<void> {
    try {
      await this.#client.execute("SELECT release_version FROM system.local");
    } catch (err) {
      throw unavailable("ping", err);
    }
  }

  async close(): Promise<void> {
    await this.#client.shutdown();
  }
}

function rowToMessage(r: cassandra.types.Row): StoredMessage {
  return {
    conv: r.get("conv_id") as string,
    id: (r.get("msg_id") as cassandra.types.Long).toNumber(),
    kind: ((r.get("kind") as string | null) ?? "msg") as StoredMessage["kind"],
    from: r.get("sender") as string,
    device: r.get("device") as string,
    cid: r.get("client_id") as string,
    text: r.get("body") as string,
    ts: (r.get("created_at") as Date).getTime(),
    ...imagesOf(r),
  };
}

function imagesOf(r: cassandra.types.Row): { images?: ImageRef[] } {
  const images = parseImages((r.get("images") as string | null | undefined) ?? null);
  return images ? { images } : {};
}
