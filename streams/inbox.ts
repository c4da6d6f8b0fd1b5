// Reading a user's inbox: the catch-up a device gets on reconnect, and gap fills while live.
import type { JetStreamManager, StoredMsg } from "@nats-io/jetstream";
import { NatterError } from "../core/index.ts";
import { decodeJson, directBatch, inboxStreamOf, inboxSubject, isNotFound, type JetStreamRequests, type Topology } from "../nats/index.ts";
import { CHAIN_LENGTH, decodePrev, PREV_HEADER, type PrevList } from "./inbox-chain.ts";
import { InboxEntrySchema, type InboxEntry } from "./messages.ts";

export interface InboxItem {
  /** Inbox stream sequence: the device cursor after this item. */
  seq: number;
  /** The stored entry's bytes (JSON of an InboxEntry, written by the fan-out from a validated event). */
  data: Uint8Array;
}

export interface InboxBounds {
  /** Oldest sequence the user's inbox stream still holds (older ones expired); 0 when empty. */
  firstSeq: number;
  /** Sequence of the user's newest inbox item; 0 when the user has none. */
  lastSeq: number;
}


/**
 * Two direct gets (served by any replica, no stream info call per connecting device): the user's
 * newest item, and the stream's oldest retained message.
 */
export async function inboxBounds(jsm: JetStreamManager, t: Topology, userId: string): Promise<InboxBounds> {
  const stream = inboxStreamOf(t, userId);
  const get = async (q: Parameters<JetStreamManager["direct"]["getMessage"]>[1]) => {
    try {
      return (await jsm.direct.getMessage(stream, q))?.seq ?? 0;
    } catch (err) {
      if (isNotFound(err)) return 0;
      throw new NatterError("UNAVAILABLE", "inbox unavailable", { cause: err });
    }
  };
  const [lastSeq, firstSeq] = await Promise.all([
    get({ last_by_subj: inboxSubject(t, userId) }),
    // The stream's oldest message: every message of the stream matches ">", which the server
    // answers at once; the stream's own wildcard made it walk every user's subject (2.3 ms at
    // 100,000 users, measured) for the same answer.
    get({ seq: 1, next_by_subj: ">" }),
  ]);
  return { firstSeq, lastSeq };
}

export function parseInboxEntry(data: Uint8Array): InboxEntry {
  return InboxEntrySchema.parse(decodeJson(data));
}

/** What reading an inbox needs: exact reads by sequence, and the batch reads of the fallback scan. */
export interface InboxIo {
  requests: JetStreamRequests;
  jsm: JetStreamManager;
}

/** Exact reads in flight at once while catching a device up. */
const READS_IN_FLIGHT = 32;
/** Entries read per direct-get batch of a scan by subject. */
const SCAN_BATCH = 256;
/** Past this many items a catch-up reads by scanning (items are gathered in memory before they are sent). */
const MAX_CHAINED_ITEMS = 5000;

/**
 * Yields the user's inbox items with afterSeq < seq ≤ untilSeq, in order. The user's entries are
 * found through the chain their headers form (streams/inbox-chain.ts) and read by sequence, so the
 * cost follows how many items there are, not how many other users' entries lie between them: a
 * read of the newest, one per CHAIN_LENGTH items, and the items themselves; plus a scan of the
 * short stretch before an entry that was sent while others to the user were in flight, and of the
 * part of the inbox written before chains. `next`: the list carried by the user's entry right after
 * `untilSeq` (a live item), when known; otherwise the entry at `untilSeq` is read first.
 */
export async function* readInbox(
  io: InboxIo,
  t: Topology,
  userId: string,
  afterSeq: number,
  untilSeq: number,
  next?: PrevList | undefined,
): AsyncGenerator<InboxItem> {
  if (untilSeq <= afterSeq) return;
  const stream = inboxStreamOf(t, userId);
  const subject = inboxSubject(t, userId);
  const inRange = (s: number) => s > afterSeq && s <= untilSeq;
  const got = new Map<number, StoredMsg>();
  const wanted = new Set<number>();
  /**
   * Stretches (lo, hi] to scan by subject, with how many of the user's entries each holds at most:
   * the `pending` count of the list that left the gap, or Infinity (before chains, a broken link).
   */
  const scans: [lo: number, hi: number, most: number][] = [];
  const read = async (seq: number): Promise<StoredMsg | null> => {
    const sm = await exact(io.requests, stream, seq);
    if (sm === null || sm.subject !== subject) return null;
    got.set(seq, sm);
    return sm;
  };

  // Walk the lists back to the cursor.
  let list = next;
  let owner = untilSeq + 1; // the entry whose list `list` is
  if (list === undefined) {
    const newest = await read(untilSeq);
    if (newest === null) {
      yield* scanInbox(io.jsm, stream, subject, afterSeq, untilSeq);
      return;
    }
    wanted.add(untilSeq);
    list = decodePrev(newest.header.get(PREV_HEADER) || undefined);
    owner = untilSeq;
  }
  for (;;) {
    if (list === undefined) {
      scans.push([afterSeq, owner - 1, Number.POSITIVE_INFINITY]); // an entry from before chains: scan below it
      break;
    }
    if (list.pending > 0) scans.push([list.seqs[0] ?? afterSeq, owner - 1, list.pending]);
    let reached = false;
    for (const s of list.seqs) {
      if (s <= afterSeq) {
        reached = true;
        break;
      }
      if (s <= untilSeq) wanted.add(s);
    }
    const oldest = list.seqs[list.seqs.length - 1];
    if (reached || (!list.open && list.seqs.length < CHAIN_LENGTH)) break; // the cursor, or the user's first entry
    if (list.open || oldest === undefined) {
      scans.push([afterSeq, (oldest ?? owner) - 1, Number.POSITIVE_INFINITY]);
      break;
    }
    if (wanted.size > MAX_CHAINED_ITEMS) {
      yield* scanInbox(io.jsm, stream, subject, afterSeq, untilSeq);
      return;
    }
    const entry = await read(oldest);
    if (entry === null) {
      scans.push([afterSeq, oldest - 1, Number.POSITIVE_INFINITY]);
      break;
    }
    list = decodePrev(entry.header.get(PREV_HEADER) || undefined);
    owner = oldest;
  }

  // Read the listed items by sequence (their headers may point at stretches to scan).
  const toRead = [...wanted].filter((s) => !got.has(s));
  for (let i = 0; i < toRead.length; i += READS_IN_FLIGHT) {
    const window = toRead.slice(i, i + READS_IN_FLIGHT);
    const msgs = await Promise.all(window.map(read));
    // Never another user's entry, whatever a header says: a chain that leads elsewhere is a bug.
    if (msgs.some((m) => m === null)) throw new NatterError("INTERNAL", `the inbox chain of ${subject} is broken`);
  }
  const gapOf = (sm: StoredMsg) => {
    const l = decodePrev(sm.header.get(PREV_HEADER) || undefined);
    if (l !== undefined && l.pending > 0) scans.push([l.seqs[0] ?? afterSeq, sm.seq - 1, l.pending]);
  };
  for (const s of wanted) gapOf(got.get(s)!);
  // Entries sent close together (a group's burst, pipelined by the fan-out) each leave a gap that
  // a later entry's list usually covers: a stretch is scanned only when it may hold an entry that
  // is not known yet, and only for as many entries as it can hold.
  let known: number[] = [];
  const knownIn = (from: number, to: number) => {
    if (known.length !== wanted.size) known = [...wanted].sort((a, b) => a - b);
    return firstAbove(known, to) - firstAbove(known, from);
  };
  for (let k = 0; k < scans.length; k++) {
    const [lo, hi, most] = scans[k]!;
    const from = Math.max(lo, afterSeq);
    const to = Math.min(hi, untilSeq);
    if (to <= from || knownIn(from, to) >= most) continue;
    for await (const sm of scanStored(io.jsm, stream, subject, from, to, most)) {
      if (wanted.has(sm.seq)) continue;
      wanted.add(sm.seq);
      got.set(sm.seq, sm);
      gapOf(sm);
    }
  }
  for (const seq of [...wanted].filter(inRange).sort((a, b) => a - b)) {
    yield { seq, data: got.get(seq)!.data };
  }
}

/** The index of the first element of ascending `xs` above `x`. */
function firstAbove(xs: readonly number[], x: number): number {
  let [lo, hi] = [0, xs.length];
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (xs[mid]! <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

async function exact(requests: JetStreamRequests, stream: string, seq: number): Promise<StoredMsg | null> {
  try {
    return await requests.directGet(stream, { seq });
  } catch (err) {
    throw new NatterError("UNAVAILABLE", "inbox unavailable", { cause: err });
  }
}

/**
 * Items with afterSeq < seq ≤ untilSeq found by subject, in direct-get batches: for entries
 * written before chains. The server scans the other users' entries in between.
 */
async function* scanInbox(jsm: JetStreamManager, stream: string, subject: string, afterSeq: number, untilSeq: number): AsyncGenerator<InboxItem> {
  for await (const sm of scanStored(jsm, stream, subject, afterSeq, untilSeq)) yield { seq: sm.seq, data: sm.data };
}

/** Stored messages on `subject` with afterSeq < seq ≤ untilSeq, in order; at most `most` of them. */
async function* scanStored(
  jsm: JetStreamManager,
  stream: string,
  subject: string,
  afterSeq: number,
  untilSeq: number,
  most = Number.POSITIVE_INFINITY,
): AsyncGenerator<StoredMsg> {
  const batch = Math.min(SCAN_BATCH, most);
  let next = afterSeq + 1;
  let left = most;
  while (next <= untilSeq && left > 0) {
    let got = 0;
    let it: AsyncIterable<StoredMsg>;
    try {
      it = await directBatch(jsm, stream, { seq: next, next_by_subj: subject, batch });
    } catch (err) {
      throw new NatterError("UNAVAILABLE", "inbox unavailable", { cause: err });
    }
    try {
      for await (const sm of it) {
        got++;
        if (sm.seq > untilSeq) return;
        next = sm.seq + 1;
        left--;
        yield sm;
        if (left <= 0) return;
      }
    } catch (err) {
      // No item of this user after `next` (only other users' items follow in the shard): the
      // batch answers 404 "message not found" rather than an empty batch.
      if (got === 0 && (err as { code?: unknown }).code === 404) return;
      // A batch that stopped coming (the server busy past the request's deadline) is temporary:
      // the device is told so and resumes from its cursor.
      throw err instanceof NatterError ? err : new NatterError("UNAVAILABLE", "inbox unavailable", { cause: err });
    }
    if (got < batch) return;
  }
}
