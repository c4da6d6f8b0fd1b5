// The embedded store (the run command's default): one SQLite file, no server.
import { mkdirSync } from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { NatterError } from "../core/index.ts";
import { ImageRefSchema, type ImageRef } from "../streams/index.ts";
import { MAX_IMAGE_SHARES, type ImageIndex, type SharedImage } from "./image-index.ts";
import { MAX_HISTORY_LIMIT, parseImages, type HistoryQuery, type MessageStore, type StoredMessage } from "./message-store.ts";

const MIGRATIONS: readonly string[] = [
  `CREATE TABLE messages (
     conv TEXT NOT NULL,
     id INTEGER NOT NULL,
     sender TEXT NOT NULL,
     device TEXT NOT NULL,
     cid TEXT NOT NULL,
     text TEXT NOT NULL,
     ts INTEGER NOT NULL,
     PRIMARY KEY (conv, id)
   ) WITHOUT ROWID`,
  `ALTER TABLE messages ADD COLUMN kind TEXT NOT NULL DEFAULT 'msg'`,
  // The images a message carries, as JSON (NULL: none).
  `ALTER TABLE messages ADD COLUMN images TEXT`,
  `CREATE TABLE images (
     id TEXT NOT NULL PRIMARY KEY,
     owner TEXT NOT NULL,
     ref TEXT NOT NULL
   ) WITHOUT ROWID;
   CREATE TABLE image_shares (
     image_id TEXT NOT NULL,
     conv TEXT NOT NULL,
     PRIMARY KEY (image_id, conv)
   ) WITHOUT ROWID`,
];

interface Row {
  conv: string;
  kind: "msg" | "members";
  id: number;
  sender: string;
  device: string;
  cid: string;
  text: string;
  ts: number;
  images: string | null;
}

export class EmbeddedMessageStore implements MessageStore, ImageIndex {
  readonly #db: Database.Database;
  readonly #write: (rows: readonly StoredMessage[]) => void;
  #queued: { rows: readonly StoredMessage[]; resolve: () => void; reject: (err: unknown) => void }[] = [];
  readonly #insert: Database.Statement;
  readonly #newest: Database.Statement;
  readonly #before: Database.Statement;
  readonly #insertImage: Database.Statement;
  readonly #insertShare: Database.Statement;
  readonly #image: Database.Statement;
  readonly #shares: Database.Statement;

  constructor(file: string) {
    if (file !== ":memory:") mkdirSync(path.dirname(file), { recursive: true });
    this.#db = new Database(file);
    this.#db.pragma("journal_mode = WAL");
    this.#db.pragma("synchronous = NORMAL");
    this.#migrate();
    this.#insert = this.#db.prepare(
      "INSERT OR IGNORE INTO messages (conv, id, kind, sender, device, cid, text, ts, images) VALUES (@conv, @id, @kind, @from, @device, @cid, @text, @ts, @images)",
    );
    this.#insertImage = this.#db.prepare("INSERT OR IGNORE INTO images (id, owner, ref) VALUES (?, ?, ?)");
    this.#insertShare = this.#db.prepare("INSERT OR IGNORE INTO image_shares (image_id, conv) VALUES (?, ?)");
    this.#image = this.#db.prepare("SELECT owner, ref FROM images WHERE id = ?");
    this.#shares = this.#db.prepare("SELECT conv FROM image_shares WHERE image_id = ? LIMIT ?");
    this.#write = this.#db.transaction((rows: readonly StoredMessage[]) => {
      for (const m of rows) this.#insert.run({ ...m, images: m.images !== undefined && m.images.length > 0 ? JSON.stringify(m.images) : null });
    });
    this.#newest = this.#db.prepare("SELECT * FROM messages WHERE conv = ? ORDER BY id DESC LIMIT ?");
    this.#before = this.#db.prepare("SELECT * FROM messages WHERE conv = ? AND id < ? ORDER BY id DESC LIMIT ?");
  }

  #migrate(): void {
    const version = this.#db.pragma("user_version", { simple: true }) as number;
    const apply = this.#db.transaction(() => {
      for (let v = version; v < MIGRATIONS.length; v++) this.#db.exec(MIGRATIONS[v]!);
      this.#db.pragma(`user_version = ${MIGRATIONS.length}`);
    });
    apply();
  }

  /**
   * Writes wait for the end of the current turn of the event loop and go in one transaction with
   * every other write made meanwhile: SQLite's cost is per commit, and the persister asks for one
   * write per conversation (one row each when 1:1 chats keep up). If that transaction fails, each
   * caller's rows are tried in a transaction of their own, so one bad write fails alone.
   */
  putMessages(messages: readonly StoredMessage[]): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#queued.push({ rows: messages, resolve, reject });
      if (this.#queued.length === 1) setImmediate(() => this.#commit());
    });
  }

  #commit(): void {
    const waiting = this.#queued;
    this.#queued = [];
    try {
      this.#write(waiting.flatMap((w) => w.rows));
      for (const w of waiting) w.resolve();
      return;
    } catch {
      // One of them is the problem: each alone below.
    }
    for (const w of waiting) {
      try {
        this.#write(w.rows);
        w.resolve();
      } catch (err) {
        w.reject(new NatterError("UNAVAILABLE", "embedded store write failed", { cause: err }));
      }
    }
  }

  async history(conv: string, q: HistoryQuery): Promise<StoredMessage[]> {
    const limit = Math.min(Math.max(1, q.limit), MAX_HISTORY_LIMIT);
    const rows = (q.before === undefined ? this.#newest.all(conv, limit) : this.#before.all(conv, q.before, limit)) as Row[];
    return rows.map((r) => {
      const images = parseImages(r.images);
      return { conv: r.conv, id: r.id, kind: r.kind, from: r.sender, device: r.device, cid: r.cid, text: r.text, ts: r.ts, ...(images ? { images } : {}) };
    });
  }

  async shareImage(owner: string, image: ImageRef, conv: string): Promise<void> {
    const write = this.#db.transaction(() => {
      this.#insertImage.run(image.id, owner, JSON.stringify(image));
      this.#insertShare.run(image.id, conv);
    });
    try {
      write();
    } catch (err) {
      throw new NatterError("UNAVAILABLE", "embedded store write failed", { cause: err });
    }
  }

  async sharedImage(id: string): Promise<SharedImage | null> {
    const row = this.#image.get(id) as { owner: string; ref: string } | undefined;
    if (row === undefined) return null;
    const image = ImageRefSchema.parse(JSON.parse(row.ref));
    const convs = (this.#shares.all(id, MAX_IMAGE_SHARES) as { conv: string }[]).map((r) => r.conv);
    return { owner: row.owner, image, convs };
  }

  async ping(): Promise<void> {
    this.#db.prepare("SELECT 1").get();
  }

  async close(): Promise<void> {
    if (this.#queued.length > 0) this.#commit();
    this.#db.close();
  }
}
