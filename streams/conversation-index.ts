// Each user's conversations: the KV bucket `user-convs`, key `<user>.<conversation>`. The fan-out
// keeps it (streams/fanout.ts): a membership event adds or removes entries, a receipt event
// raises the user's read state. It is the list behind the `convs` frame and the durable copy of
// read state (the conversation stream drops events after its max age; the bucket keeps the last
// value of every key). Writes merge — membership by event id, read state by maximum — with
// compare-and-set on the key, so redeliveries and concurrent writers converge to the same value.
import { compareAndSet, decodeJson, directBatch, encodeJson, kvKeySubject, names, scanFiltered, userConversationKey, userConversationsFilter } from "../nats/index.ts";
import { JetStreamApiError, JetStreamError, type JetStreamClient, type JetStreamManager, type StoredMsg } from "@nats-io/jetstream";
import { z } from "zod";
import { NatterError } from "../core/index.ts";

/** Entries read per direct-get batch when listing a user's conversations. */
const PAGE = 1000;
/** Bound on a listing: 10,000 conversations per user. */
const MAX_PAGES = 10;
/** Subjects per multi-last request (the server answers at most 1,024 messages per request). */
export const MULTI_LAST_CHUNK = 256;

const IndexEntrySchema = z.object({
  v: z.literal(1),
  /** Whether the user is a member now. */
  member: z.boolean(),
  /** Id of the membership event that set `member` (the later event wins). */
  at: z.number().int().min(0),
  delivered: z.number().int().min(0),
  read: z.number().int().min(0),
});
export type IndexEntry = z.infer<typeof IndexEntrySchema>;

/** What one conversation event changes in one user's entry. */
export interface IndexUpdate {
  user: string;
  conv: string;
  membership?: { member: boolean; at: number } | undefined;
  receipt?: { delivered: number; read: number } | undefined;
}

const EMPTY: IndexEntry = { v: 1, member: false, at: 0, delivered: 0, read: 0 };

/** `current` with `u` applied; commutative and idempotent, so order and redelivery do not matter. */
export function mergeIndexEntry(current: IndexEntry | null, u: Pick<IndexUpdate, "membership" | "receipt">): IndexEntry {
  const c = current ?? EMPTY;
  const next: IndexEntry = { ...c };
  if (u.membership && u.membership.at > c.at) {
    next.member = u.membership.member;
    next.at = u.membership.at;
  }
  if (u.receipt) {
    next.read = Math.max(c.read, u.receipt.read);
    next.delivered = Math.max(c.delivered, u.receipt.delivered, next.read);
  }
  return next;
}

function sameEntry(a: IndexEntry, b: IndexEntry): boolean {
  return a.member === b.member && a.at === b.at && a.read === b.read && a.delivered === b.delivered;
}

function parseEntry(sm: StoredMsg): IndexEntry | null {
  try {
    const r = IndexEntrySchema.safeParse(decodeJson(sm.data));
    return r.success ? r.data : null;
  } catch {
    return null;
  }
}

/** A direct get that found nothing (the server answers 404 "no message found" / "no results"). */
export function noMessage(err: unknown): boolean {
  const e = err as { code?: unknown; status?: unknown; message?: unknown };
  if (!(err instanceof JetStreamError)) return false;
  return e.code === 404 || /no message found|no results|message not found/i.test(String(e.message));
}

export class ConversationIndex {
  readonly #js: JetStreamClient;
  readonly #jsm: JetStreamManager;

  constructor(js: JetStreamClient, jsm: JetStreamManager) {
    this.#js = js;
    this.#jsm = jsm;
  }

  #stream(): string {
    return names.kvStream(names.userConversationsBucket);
  }

  /** One user's entry for one conversation, with the key's sequence (0 when absent). */
  async #read(subject: string): Promise<{ entry: IndexEntry | null; seq: number }> {
    try {
      const sm = await this.#jsm.direct.getMessage(this.#stream(), { last_by_subj: subject });
      return sm ? { entry: parseEntry(sm), seq: sm.seq } : { entry: null, seq: 0 };
    } catch (err) {
      if ((err instanceof JetStreamApiError && err.status === 404) || noMessage(err)) return { entry: null, seq: 0 };
      throw new NatterError("UNAVAILABLE", "conversation index unavailable", { cause: err });
    }
  }

  /** Applies one update with compare-and-set; writes nothing when the entry already holds it. */
  async apply(u: IndexUpdate): Promise<void> {
    const subject = kvKeySubject(names.userConversationsBucket, userConversationKey(u.user, u.conv));
    await compareAndSet(
      async () => {
        const { entry, seq } = await this.#read(subject);
        const next = mergeIndexEntry(entry, u);
        if (entry && sameEntry(entry, next)) return;
        await this.#js.publish(subject, encodeJson(next), { expect: { lastSubjectSequence: seq }, timeout: 5000 });
      },
      { what: "the conversation index" },
    );
  }

  /** Every entry of `userId` (members or not), by conversation id. */
  async entriesOf(userId: string): Promise<Map<string, IndexEntry>> {
    const filter = userConversationsFilter(userId);
    const prefix = filter.slice(0, -1);
    const out = new Map<string, IndexEntry>();
    try {
      for await (const sm of scanFiltered(this.#jsm, this.#stream(), filter, { page: PAGE, maxPages: MAX_PAGES })) {
        const entry = parseEntry(sm);
        if (entry && sm.subject.startsWith(prefix)) out.set(sm.subject.slice(prefix.length), entry);
      }
    } catch (err) {
      throw new NatterError("UNAVAILABLE", "conversation index unavailable", { cause: err });
    }
    return out;
  }

  /**
   * How many conversations `userId` is a member of, as far as the index knows (it trails the
   * membership events by the fan-out's lag); at most MAX_LISTED_CONVERSATIONS.
   */
  async memberCount(userId: string): Promise<number> {
    let n = 0;
    for (const e of (await this.entriesOf(userId)).values()) if (e.member) n++;
    return n;
  }

  /** The entries of `users` for one conversation (users without one are left out). */
  async entriesFor(convId: string, users: readonly string[]): Promise<Map<string, IndexEntry>> {
    const out = new Map<string, IndexEntry>();
    const bySubject = new Map(users.map((u) => [kvKeySubject(names.userConversationsBucket, userConversationKey(u, convId)), u]));
    const subjects = [...bySubject.keys()];
    for (let i = 0; i < subjects.length; i += MULTI_LAST_CHUNK) {
      try {
        const it = await directBatch(this.#jsm, this.#stream(), { multi_last: subjects.slice(i, i + MULTI_LAST_CHUNK) });
        for await (const sm of it) {
          const user = bySubject.get(sm.subject);
          const entry = parseEntry(sm);
          if (user !== undefined && entry) out.set(user, entry);
        }
      } catch (err) {
        if (noMessage(err)) continue;
        throw new NatterError("UNAVAILABLE", "conversation index unavailable", { cause: err });
      }
    }
    return out;
  }
}
