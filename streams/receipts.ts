// Receipts and unread counts. A user's receipts in a conversation are events in the
// conversation's own stream, on `conv.<shard>.<id>.receipts.<user>`: each carries the user's whole
// state (delivered-up-to, read-up-to), shared by all of the user's devices, so the subject's last
// message is the current state (one direct get). A change is compare-and-set on that subject's
// last sequence, so the state never moves backwards whichever devices and edges race; the fan-out
// copies each receipt to every member's inbox like any event (devices replay them on catch-up, in
// order), and keeps the durable copy in the user-convs index (conversation-index.ts).
//
// Unread count of a conversation for a user = `msg` events with an id above the user's read-up-to
// (and above the membership event that added the user), not counting the user's own messages.
// It is computed from the conversation stream's per-subject state, never by reading the history:
// one direct-get batch from read-up-to + 1 on the conversation's message subject returns the first
// UNREAD_EXACT unread messages and, in `Nats-Num-Pending`, how many more follow (the server counts
// them from its per-subject index). The user's own messages are left out of the first
// UNREAD_EXACT; beyond those the count includes them (docs/protocol.md, `convs`).
import { JetStreamApiError, type JetStreamClient, type JetStreamManager, type StoredMsg } from "@nats-io/jetstream";
import { NatterError } from "../core/index.ts";
import { MULTI_LAST_CHUNK, noMessage, type ConversationIndex, type IndexEntry } from "./conversation-index.ts";
import { ConversationMessageSchema, MembershipEventSchema, ReceiptEventSchema, type MembershipEvent, type ReceiptEvent } from "./messages.ts";
import { compareAndSet, conversationStreamOf, conversationSubject, decodeJson, directBatch, encodeJson, membershipSubject, messageTtl, receiptSubject, type Topology } from "../nats/index.ts";

/** Unread messages read (with payloads) per conversation to leave out the user's own. */
const UNREAD_EXACT = 100;
/** Conversations whose unread messages are counted at once. */
const COUNT_CONCURRENCY = 16;

/** A user's receipts in one conversation. `read` ≤ `delivered`; 0: nothing yet. */
export interface ReceiptState {
  user: string;
  delivered: number;
  read: number;
}

export interface MarkInput {
  conv: string;
  user: string;
  device: string;
  delivered?: number | undefined;
  read?: number | undefined;
}

export interface MarkResult extends ReceiptState {
  conv: string;
  /** Id of the receipt event holding this state (0: the state is older than the stream's retention). */
  id: number;
  /** False when the state already covered the request (nothing was written). */
  changed: boolean;
}

/** One conversation in a user's list. */
export interface ConversationSummary {
  id: string;
  kind: "dm" | "group";
  members: string[];
  name?: string | undefined;
  owner?: string | undefined;
  /** The newest text message, if the stream still holds one. */
  last?: { id: number; from: string; text: string; ts: number } | undefined;
  delivered: number;
  read: number;
  unread: number;
}

function parse<T>(schema: { safeParse(v: unknown): { success: true; data: T } | { success: false } }, sm: StoredMsg | undefined): T | undefined {
  if (!sm) return undefined;
  try {
    const r = schema.safeParse(decodeJson(sm.data));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}

export class Receipts {
  readonly #js: JetStreamClient;
  readonly #jsm: JetStreamManager;
  readonly #t: Topology;
  readonly #index: ConversationIndex;

  constructor(js: JetStreamClient, jsm: JetStreamManager, topology: Topology, index: ConversationIndex) {
    this.#js = js;
    this.#jsm = jsm;
    this.#t = topology;
    this.#index = index;
  }

  /** The last message of each subject (one direct get per MULTI_LAST_CHUNK subjects), by subject. */
  async #lastOf(stream: string, subjects: readonly string[]): Promise<Map<string, StoredMsg>> {
    const out = new Map<string, StoredMsg>();
    for (let i = 0; i < subjects.length; i += MULTI_LAST_CHUNK) {
      try {
        const it = await directBatch(this.#jsm, stream, { multi_last: subjects.slice(i, i + MULTI_LAST_CHUNK) });
        for await (const sm of it) out.set(sm.subject, sm);
      } catch (err) {
        if (noMessage(err)) continue;
        throw new NatterError("UNAVAILABLE", "conversation stream unavailable", { cause: err });
      }
    }
    return out;
  }

  /** The last id of a conversation's messages and membership events, read from the stream leader. */
  async #lastIdOnLeader(stream: string, subjects: readonly string[]): Promise<number> {
    let last = 0;
    for (const subject of subjects) {
      try {
        const sm = await this.#jsm.streams.getMessage(stream, { last_by_subj: subject });
        if (sm) last = Math.max(last, sm.seq);
      } catch (err) {
        if (err instanceof JetStreamApiError && err.status === 404) continue;
        throw new NatterError("UNAVAILABLE", "conversation stream unavailable", { cause: err });
      }
    }
    return last;
  }

  /**
   * Raises `user`'s delivered and/or read state in `conv` (members only). Never lowers it: asking
   * for less than the current state changes nothing. Refused with RECEIPT_AHEAD beyond the
   * conversation's last message or membership event.
   */
  async mark(input: MarkInput): Promise<MarkResult> {
    const { conv, user } = input;
    const stream = conversationStreamOf(this.#t, conv);
    const msgSubject = conversationSubject(this.#t, conv);
    const memberSubject = membershipSubject(this.#t, conv);
    const subject = receiptSubject(this.#t, conv, user);
    const wantRead = input.read ?? 0;
    const wantDelivered = Math.max(input.delivered ?? 0, wantRead);
    let fallback: IndexEntry | undefined | null = null;
    return compareAndSet(async () => {
      const last = await this.#lastOf(stream, [msgSubject, memberSubject, subject]);
      const membership = parse(MembershipEventSchema, last.get(memberSubject));
      if (!membership?.members.includes(user)) throw new NatterError("NOT_MEMBER");
      const lastId = Math.max(last.get(msgSubject)?.seq ?? 0, last.get(memberSubject)?.seq ?? 0);
      // A replica answering direct gets may lag the leader: check there before refusing.
      if (wantDelivered > lastId && wantDelivered > (await this.#lastIdOnLeader(stream, [msgSubject, memberSubject]))) {
        throw new NatterError("RECEIPT_AHEAD", `id ${wantDelivered} is beyond the conversation's last event`);
      }
      const stored = last.get(subject);
      const event = parse(ReceiptEventSchema, stored);
      let current = { delivered: event?.delivered ?? 0, read: event?.read ?? 0, id: stored?.seq ?? 0 };
      if (!stored) {
        // Older than the stream's retention (or never): the index keeps the last state.
        fallback ??= (await this.#index.entriesFor(conv, [user])).get(user);
        if (fallback) current = { delivered: fallback.delivered, read: fallback.read, id: 0 };
      }
      const read = Math.max(current.read, wantRead);
      const delivered = Math.max(current.delivered, wantDelivered, read);
      if (read === current.read && delivered === current.delivered) {
        return { conv, user, delivered, read, id: current.id, changed: false };
      }
      const next: ReceiptEvent = { v: 1, type: "receipt", conv, user, device: input.device, delivered, read, ts: Date.now() };
      const ack = await this.#js.publish(subject, encodeJson(next), { expect: { lastSubjectSequence: stored?.seq ?? 0 }, timeout: 5000, ...messageTtl(this.#t) });
      return { conv, user, delivered, read, id: ack.seq, changed: true };
    }, { what: "the receipt" });
  }

  /** Every current member's receipts in `conv`, asked by `user` (members only). */
  async ofMembers(conv: string, user: string): Promise<ReceiptState[]> {
    const stream = conversationStreamOf(this.#t, conv);
    const memberSubject = membershipSubject(this.#t, conv);
    const membership = parse(MembershipEventSchema, (await this.#lastOf(stream, [memberSubject])).get(memberSubject));
    if (!membership?.members.includes(user)) throw new NatterError("NOT_MEMBER");
    // Current members' subjects by name (≤ 100), not the wildcard: former members' would count too.
    const [last, durable] = await Promise.all([
      this.#lastOf(stream, membership.members.map((m) => receiptSubject(this.#t, conv, m))),
      this.#index.entriesFor(conv, membership.members),
    ]);
    return membership.members.map((m) => {
      const e = parse(ReceiptEventSchema, last.get(receiptSubject(this.#t, conv, m)));
      const d = durable.get(m);
      const read = Math.max(e?.read ?? 0, d?.read ?? 0);
      return { user: m, read, delivered: Math.max(e?.delivered ?? 0, d?.delivered ?? 0, read) };
    });
  }

  /**
   * The conversations `user` is a member of, newest activity first, each with its members, last
   * message, the user's receipts and unread count.
   */
  async conversations(user: string): Promise<ConversationSummary[]> {
    const entries = [...(await this.#index.entriesOf(user))].filter(([, e]) => e.member);
    const byStream = new Map<string, string[]>();
    for (const [conv] of entries) {
      const s = conversationStreamOf(this.#t, conv);
      byStream.set(s, [...(byStream.get(s) ?? []), conv]);
    }
    const last = new Map<string, StoredMsg>();
    for (const [stream, convs] of byStream) {
      const subjects = convs.flatMap((c) => [conversationSubject(this.#t, c), membershipSubject(this.#t, c), receiptSubject(this.#t, c, user)]);
      for (const [k, v] of await this.#lastOf(stream, subjects)) last.set(k, v);
    }
    const out: (ConversationSummary & { active: number; base: number })[] = [];
    for (const [conv, entry] of entries) {
      const membership: MembershipEvent | undefined = parse(MembershipEventSchema, last.get(membershipSubject(this.#t, conv)));
      // Not (or no longer) a member as the stream says: the index follows within the fan-out's lag.
      if (!membership?.members.includes(user)) continue;
      const lastMsg = last.get(conversationSubject(this.#t, conv));
      const msg = parse(ConversationMessageSchema, lastMsg);
      const receipt = parse(ReceiptEventSchema, last.get(receiptSubject(this.#t, conv, user)));
      const read = Math.max(entry.read, receipt?.read ?? 0);
      const delivered = Math.max(entry.delivered, receipt?.delivered ?? 0, read);
      out.push({
        id: conv,
        kind: membership.kind,
        members: membership.members,
        name: membership.name,
        owner: membership.owner,
        last: lastMsg && msg ? { id: lastMsg.seq, from: msg.from, text: msg.text, ts: msg.ts } : undefined,
        delivered,
        read,
        unread: 0,
        active: Math.max(msg?.ts ?? 0, membership.ts),
        base: Math.max(read, entry.at),
      });
    }
    const pending = out.filter((c) => c.last !== undefined && c.last.id > c.base);
    for (let i = 0; i < pending.length; i += COUNT_CONCURRENCY) {
      await Promise.all(pending.slice(i, i + COUNT_CONCURRENCY).map(async (c) => (c.unread = await this.#unread(c.id, user, c.base))));
    }
    return out.sort((a, b) => b.active - a.active || a.id.localeCompare(b.id)).map(({ active: _a, base: _b, ...c }) => c);
  }

  /** Messages of `conv` after `after` not sent by `user`: exact for the first UNREAD_EXACT, then counted by the server. */
  async #unread(conv: string, user: string, after: number): Promise<number> {
    const stream = conversationStreamOf(this.#t, conv);
    let others = 0;
    let more = 0;
    try {
      const it = await directBatch(this.#jsm, stream, { seq: after + 1, next_by_subj: conversationSubject(this.#t, conv), batch: UNREAD_EXACT });
      for await (const sm of it) {
        const m = parse(ConversationMessageSchema, sm);
        if (m && m.from !== user) others++;
        more = Math.max(0, sm.pending);
      }
    } catch (err) {
      if (noMessage(err)) return 0;
      throw new NatterError("UNAVAILABLE", "conversation stream unavailable", { cause: err });
    }
    return others + more;
  }
}
