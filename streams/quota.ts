// Each user's sends per UTC day, counted across the cluster in the `quota` bucket (key
// `<user>.<yyyymmdd>`, value `{ messages, bytes }`): `quota.messagesPerDay` and
// `quota.storedBytesPerDay` (a message's text times its conversation's members).
//
// The send path never waits on the bucket after the first send: each process keeps a user's
// count as last read, adds its own sends since, and writes them to the bucket (compare-and-set)
// once a second; a count older than a few seconds is read again before the next check. So a
// user spread over several edges passes its quota by at most what the others sent in that time
// (its rate limit bounds it); on one edge the count is exact.
import { type Logger, NatterError } from "../core/index.ts";
import type { QuotaConfig } from "../config/index.ts";
import { compareAndSet, decodeJsonOrUndefined, encodeJson, type JetStreamRequests, kvKeySubject, names } from "../nats/index.ts";

/** How often this process writes its counts to the bucket. */
const FLUSH_MS = 1000;
/** A count read longer ago than this is read again before a check. */
const STALE_MS = 5000;

interface Count {
  messages: number;
  bytes: number;
}

interface Entry {
  day: string;
  /** The bucket's count at the last read or write. */
  stored: Count;
  readAt: number;
  /** Sends by this process not yet written to the bucket. */
  pending: Count;
  loading: Promise<void> | undefined;
}

/** `yyyymmdd` of `ms` in UTC. */
function dayOf(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10).replaceAll("-", "");
}

/** Milliseconds from `ms` to the next UTC midnight. */
function untilTomorrow(ms: number): number {
  const d = new Date(ms);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 1) - ms;
}

export class QuotaLedger {
  readonly #requests: JetStreamRequests;
  readonly #cfg: QuotaConfig;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #entries = new Map<string, Entry>();
  readonly #timer: NodeJS.Timeout;
  #flushing: Promise<void> | undefined;

  constructor(requests: JetStreamRequests, cfg: QuotaConfig, log: Logger, now: () => number = Date.now) {
    this.#requests = requests;
    this.#cfg = cfg;
    this.#log = log;
    this.#now = now;
    this.#timer = setInterval(() => void this.flush(), FLUSH_MS);
    this.#timer.unref();
  }

  get enabled(): boolean {
    return this.#cfg.messagesPerDay > 0 || this.#cfg.storedBytesPerDay > 0;
  }

  /** Refuses (QUOTA_EXCEEDED) a message that stores `bytes` when it would take `user` past a quota today. */
  async check(user: string, bytes: number): Promise<void> {
    if (!this.enabled) return;
    const e = await this.#entry(user);
    const messages = e.stored.messages + e.pending.messages + 1;
    const stored = e.stored.bytes + e.pending.bytes + bytes;
    const { messagesPerDay, storedBytesPerDay } = this.#cfg;
    const over =
      messagesPerDay > 0 && messages > messagesPerDay
        ? `${messagesPerDay} messages`
        : storedBytesPerDay > 0 && stored > storedBytesPerDay
          ? `${storedBytesPerDay} bytes stored (text × members)`
          : undefined;
    if (over) throw new NatterError("QUOTA_EXCEEDED", `the daily quota of ${over} is used up; it renews at 00:00 UTC`, { retryAfterMs: untilTomorrow(this.#now()) });
  }

  /** Counts a message `user` stored (not a repeat of one already stored). */
  add(user: string, bytes: number): void {
    if (!this.enabled) return;
    const day = dayOf(this.#now());
    let e = this.#entries.get(user);
    if (!e || e.day !== day) {
      e = { day, stored: { messages: 0, bytes: 0 }, readAt: 0, pending: { messages: 0, bytes: 0 }, loading: undefined };
      this.#entries.set(user, e);
    }
    e.pending.messages++;
    e.pending.bytes += bytes;
  }

  async #entry(user: string): Promise<Entry> {
    const now = this.#now();
    const day = dayOf(now);
    let e = this.#entries.get(user);
    if (!e || e.day !== day) {
      e = { day, stored: { messages: 0, bytes: 0 }, readAt: 0, pending: { messages: 0, bytes: 0 }, loading: undefined };
      this.#entries.set(user, e);
    }
    if (now - e.readAt > STALE_MS) {
      const entry = e;
      entry.loading ??= this.#read(user, day)
        .then((c) => {
          entry.stored = c.count;
          entry.readAt = this.#now();
        })
        .finally(() => (entry.loading = undefined));
      await entry.loading;
    }
    return e;
  }

  async #read(user: string, day: string): Promise<{ count: Count; seq: number }> {
    const sm = await this.#requests.directGet(names.kvStream(names.quotaBucket), { last_by_subj: kvKeySubject(names.quotaBucket, `${user}.${day}`) });
    const v = sm ? (decodeJsonOrUndefined(sm.data) as Partial<Count> | undefined) : undefined;
    return { count: { messages: Number(v?.messages) || 0, bytes: Number(v?.bytes) || 0 }, seq: sm?.seq ?? 0 };
  }

  /** Writes every count this process added to the bucket (also on a timer). */
  async flush(): Promise<void> {
    this.#flushing ??= this.#flush().finally(() => (this.#flushing = undefined));
    await this.#flushing;
  }

  async #flush(): Promise<void> {
    const today = dayOf(this.#now());
    let failed = 0;
    let error: unknown;
    for (const [user, e] of this.#entries) {
      if (e.pending.messages === 0 && e.pending.bytes === 0) {
        if (e.day !== today || this.#now() - e.readAt > 10 * STALE_MS) this.#entries.delete(user);
        continue;
      }
      const add = e.pending;
      e.pending = { messages: 0, bytes: 0 };
      try {
        const subject = kvKeySubject(names.quotaBucket, `${user}.${e.day}`);
        e.stored = await compareAndSet(
          async () => {
            const { count, seq } = await this.#read(user, e.day);
            const next = { messages: count.messages + add.messages, bytes: count.bytes + add.bytes };
            await this.#requests.publish(subject, encodeJson(next), { expectLastSubjectSequence: seq, timeoutMs: 5000 });
            return next;
          },
          { what: "a quota count" },
        );
        e.readAt = this.#now();
      } catch (err) {
        // Counted again on the next flush: a send is never lost from the count, only late.
        e.pending = { messages: e.pending.messages + add.messages, bytes: e.pending.bytes + add.bytes };
        failed++;
        error = err;
      }
    }
    if (failed > 0) this.#log.warn({ err: error, users: failed }, "could not write quota counts; retrying");
  }

  /** Writes what is pending and stops the timer. */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.flush();
  }
}
