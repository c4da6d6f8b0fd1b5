// The production store: Apache Cassandra. Messages are partitioned by (conversation, 10-day
// bucket) so a busy group never grows one partition without bound; `message_buckets` lists a
// conversation's non-empty buckets, newest first, so paging skips empty ones.
import cassandra from "cassandra-driver";
import type { CassandraStoreConfig } from "../config/index.ts";
import { type Logger, NatterError } from "../core/index.ts";
import { ImageRefSchema, type ImageRef } from "../streams/index.ts";
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

/** A batch's size as Cassandra counts it, estimated: the text plus the other columns. */
const BATCH_BYTES = 4096;
const BATCH_ROWS = 32;
const ROW_OVERHEAD_BYTES = 96;

/** Splits one partition's rows (in order) into batches under BATCH_BYTES and BATCH_ROWS. */
function batchesOf(rows: unknown[][]): unknown[][][] {
  const out: unknown[][][] = [];
  let cur: unknown[][] = [];
  let bytes = 0;
  for (const r of rows) {
    const size = ROW_OVERHEAD_BYTES + Buffer.byteLength(r[7] as string) + (typeof r[9] === "string" ? r[9].length : 0);
    if (cur.length > 0 && (bytes + size > BATCH_BYTES || cur.length >= BATCH_ROWS)) {
      out.push(cur);
      cur = [];
      bytes = 0;
    }
    cur.push(r);
    bytes += size;
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

/** Runs `tasks` with at most `limit` at once; rejects with the first failure (the rest still settle). */
async function runBounded(tasks: readonly (() => Promise<unknown>)[], limit: number): Promise<void> {
  let next = 0;
  let failed: { err: unknown } | undefined;
  const lane = async (): Promise<void> => {
    while (next < tasks.length && !failed) {
      const task = tasks[next++]!;
      await task().catch((err: unknown) => {
        failed ??= { err };
      });
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, lane));
  if (failed) throw failed.err;
}

interface Options {
  /** Write requests in flight at once (single rows or one partition's batch). */
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

  /**
   * Writes rows with at most `concurrency` requests in flight. Rows of one partition (conversation,
   * bucket) go together as an unlogged batch: one mutation for Cassandra instead of one per row,
   * atomic and isolated within the partition, and one request for the driver. A batch stays under
   * Cassandra's default batch_size_warn_threshold (5 KiB); a lone row is a plain insert.
   */
  async putMessages(messages: readonly StoredMessage[]): Promise<void> {
    if (messages.length === 0) return;
    const newBuckets = new Map<string, [string, number]>();
    const partitions = new Map<string, unknown[][]>();
    for (const m of messages) {
      const bucket = bucketOf(m.ts);
      const key = `${m.conv}\n${bucket}`;
      if (!this.#knownBuckets.has(key)) newBuckets.set(key, [m.conv, bucket]);
      let rows = partitions.get(key);
      if (!rows) {
        rows = [];
        partitions.set(key, rows);
      }
      rows.push([
        m.conv,
        bucket,
        cassandra.types.Long.fromNumber(m.id),
        m.kind,
        m.from,
        m.device,
        m.cid,
        m.text,
        new Date(m.ts),
        // Unset, not null: a null would write a tombstone into every text message row.
        m.images !== undefined && m.images.length > 0 ? JSON.stringify(m.images) : cassandra.types.unset,
      ]);
    }
    const writes: (() => Promise<unknown>)[] = [];
    for (const params of newBuckets.values()) writes.push(() => this.#client.execute(INSERT_BUCKET, params));
    for (const rows of partitions.values()) {
      for (const chunk of batchesOf(rows)) {
        writes.push(
          chunk.length === 1
            ? () => this.#client.execute(INSERT_MESSAGE, chunk[0])
            : () => this.#client.batch(chunk.map((params) => ({ query: INSERT_MESSAGE, params })), { logged: false }),
        );
      }
    }
    try {
      await runBounded(writes, this.#concurrency);
    } catch (err) {
      throw unavailable("write", err);
    }
    if (this.#knownBuckets.size + newBuckets.size > KNOWN_BUCKETS_MAX) this.#knownBuckets.clear();
    for (const k of newBuckets.keys()) this.#knownBuckets.add(k);
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
