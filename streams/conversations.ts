// The conversation directory. A conversation's membership lives in its own stream, on the
// subject `conv.<shard>.<id>.members`: every change is an event there carrying the full member
// list, and the last event is the current membership. Changes are compare-and-set on that
// subject's last sequence (`Nats-Expected-Last-Subject-Sequence`), so concurrent changes from
// any number of edges serialize without a lock, a read-then-write race, or an owner node.
import { compareAndSet, contactKey, contactsFilter, conversationStreamOf, decodeJson, directBatch, encodeJson, isWrongLastSequence, type JetStreamRequests, kvKeySubject, membershipMsgId, membershipSubject, names, scanFiltered, type Topology } from "../nats/index.ts";
import { randomBytes, createHash } from "node:crypto";
import { JetStreamApiError, JetStreamError, type JetStreamClient, type JetStreamManager, type StoredMsg } from "@nats-io/jetstream";
import { checkId, NatterError } from "../core/index.ts";
import type { ConversationIndex } from "./conversation-index.ts";
import { MembershipEventSchema, type MembershipEvent } from "./messages.ts";

const MAX_GROUP_MEMBERS = 100;
/** Contacts read per direct-get batch; a user's whole list is read in pages of this size. */
const CONTACTS_PAGE = 1000;
/** Bound on pages read for one user's contacts (100,000 contacts). */
const CONTACTS_MAX_PAGES = 100;

export interface Conversation {
  id: string;
  kind: "dm" | "group";
  members: string[];
  name?: string | undefined;
  owner?: string | undefined;
  /** Stream sequence of the membership event this state comes from. */
  revision: number;
}

/** The one 1:1 conversation of a pair: the same id whichever side opens it. */
export function dmConversationId(a: string, b: string): string {
  const [x, y] = [checkId("user id", a), checkId("user id", b)].sort();
  return `dm_${createHash("sha256").update(`${x}\n${y}`).digest("hex").slice(0, 40)}`;
}

function newGroupId(): string {
  return `g_${randomBytes(16).toString("base64url")}`;
}

function fromEvent(sm: StoredMsg): Conversation {
  const e = MembershipEventSchema.parse(decodeJson(sm.data));
  return { id: e.conv, kind: e.kind, members: e.members, name: e.name, owner: e.owner, revision: sm.seq };
}

type Change = (current: Conversation | null) => Omit<MembershipEvent, "v" | "type" | "conv" | "ts"> | Conversation;

/**
 * The limit of conversations per user, counted in the user-convs index. The index trails the
 * membership events by the fan-out's lag, so conversations joined at the same moment can take a
 * user a few past the limit; it guards resources, it is not an invariant like a group's 100.
 */
export interface ConversationQuota {
  maxPerUser: number;
  index: Pick<ConversationIndex, "memberCount">;
}

export class ConversationDirectory {
  readonly #js: JetStreamClient;
  readonly #jsm: JetStreamManager;
  readonly #t: Topology;
  readonly #quota: ConversationQuota | undefined;
  /** Membership reads on every send: the lean path. */
  readonly #requests: JetStreamRequests;

  constructor(opts: { js: JetStreamClient; jsm: JetStreamManager; requests: JetStreamRequests; topology: Topology; quota?: ConversationQuota | undefined }) {
    this.#js = opts.js;
    this.#jsm = opts.jsm;
    this.#requests = opts.requests;
    this.#t = opts.topology;
    this.#quota = opts.quota;
  }

  /** TOO_MANY_CONVERSATIONS unless each of `users` may join one more conversation. */
  async #checkRoom(users: readonly string[]): Promise<void> {
    if (!this.#quota || users.length === 0) return;
    const { maxPerUser, index } = this.#quota;
    const counts = await Promise.all(users.map((u) => index.memberCount(u)));
    const full = users.filter((_, i) => counts[i]! >= maxPerUser);
    if (full.length > 0) {
      throw new NatterError("TOO_MANY_CONVERSATIONS", `${full.join(", ")} ${full.length === 1 ? "is" : "are"} in ${maxPerUser} conversations, the most one user may be in`);
    }
  }

  /** The current membership, or null when the conversation does not exist. */
  async get(id: string): Promise<Conversation | null> {
    const subject = membershipSubject(this.#t, id);
    let sm: StoredMsg | null;
    try {
      sm = await this.#requests.directGet(conversationStreamOf(this.#t, id), { last_by_subj: subject });
    } catch (err) {
      throw new NatterError("UNAVAILABLE", "conversation directory unavailable", { cause: err });
    }
    return sm ? fromEvent(sm) : null;
  }

  /** The membership in force at stream sequence `seq` (the last change at or before it). */
  async getAsOf(id: string, seq: number): Promise<Conversation | null> {
    const subject = membershipSubject(this.#t, id);
    try {
      const it = await directBatch(this.#jsm, conversationStreamOf(this.#t, id), { multi_last: [subject], up_to_seq: seq });
      let found: Conversation | null = null;
      for await (const sm of it) found = fromEvent(sm);
      return found;
    } catch (err) {
      if (err instanceof JetStreamApiError && err.status === 404) return null;
      throw new NatterError("UNAVAILABLE", "conversation directory unavailable", { cause: err });
    }
  }

  /** The conversation, if `userId` is a member; otherwise NOT_MEMBER (also when it does not exist). */
  async requireMember(id: string, userId: string): Promise<Conversation> {
    const conv = await this.get(id);
    if (!conv?.members.includes(userId)) throw new NatterError("NOT_MEMBER");
    return conv;
  }

  /** Applies `change` to the current state with compare-and-set, retrying on a concurrent change. */
  async #change(id: string, change: Change): Promise<Conversation> {
    const subject = membershipSubject(this.#t, id);
    return compareAndSet(
      async () => {
        const current = await this.get(id);
        const next = change(current);
        if ("revision" in next) return next; // nothing to change
        const event: MembershipEvent = { v: 1, type: "members", conv: id, ts: Date.now(), ...next };
        const prev = current?.revision ?? 0;
        const ack = await this.#js.publish(subject, encodeJson(event), {
          expect: { lastSubjectSequence: prev },
          msgID: membershipMsgId(id, prev, event.action, event.user ?? event.by),
          timeout: 5000,
        });
        return { id, kind: event.kind, members: event.members, name: event.name, owner: event.owner, revision: ack.seq };
      },
      { what: "the conversation" },
    );
  }

  /** Opens (or returns) the 1:1 conversation between two users. */
  async openDm(userId: string, peerId: string): Promise<Conversation> {
    checkId("user id", userId);
    checkId("user id", peerId);
    if (userId === peerId) throw new NatterError("SELF_CONVERSATION");
    const id = dmConversationId(userId, peerId);
    if (!(await this.get(id))) await this.#checkRoom([userId, peerId]);
    const conv = await this.#change(id, (current) => current ?? { kind: "dm", action: "create", by: userId, members: [userId, peerId].sort() });
    // The contacts index (presence goes to contacts): written on every dm.open until both keys
    // exist, so a dm.open that failed half-way is completed by the next one.
    await Promise.all([this.#indexContact(userId, peerId, id), this.#indexContact(peerId, userId, id)]);
    return conv;
  }

  /** Adds `peer` to `user`'s contacts unless it is there already (create-only: no rewrite). */
  async #indexContact(user: string, peer: string, convId: string): Promise<void> {
    const subject = kvKeySubject(names.contactsBucket, contactKey(user, peer));
    try {
      await this.#js.publish(subject, convId, { expect: { lastSubjectSequence: 0 }, timeout: 5000 });
    } catch (err) {
      if (isWrongLastSequence(err)) return; // already indexed
      throw new NatterError("UNAVAILABLE", "could not index the contact", { cause: err });
    }
  }

  /** Every contact of `userId`: the other member of each of its 1:1 conversations. */
  async contactsOf(userId: string): Promise<string[]> {
    const filter = contactsFilter(userId);
    const prefix = filter.slice(0, -1);
    const out: string[] = [];
    try {
      for await (const sm of scanFiltered(this.#jsm, names.kvStream(names.contactsBucket), filter, { page: CONTACTS_PAGE, maxPages: CONTACTS_MAX_PAGES })) {
        if (sm.subject.startsWith(prefix)) out.push(sm.subject.slice(prefix.length));
      }
    } catch (err) {
      throw new NatterError("UNAVAILABLE", "contacts unavailable", { cause: err });
    }
    return out;
  }

  /** Those of `candidates` that are contacts of `userId` (at most 1,000 candidates). */
  async contactsAmong(userId: string, candidates: readonly string[]): Promise<Set<string>> {
    const unique = [...new Set(candidates)].filter((c) => c !== userId);
    const found = new Set<string>();
    if (unique.length === 0) return found;
    if (unique.length > 1000) throw new NatterError("BAD_FRAME", "at most 1000 users at once");
    const bySubject = new Map(unique.map((c) => [kvKeySubject(names.contactsBucket, contactKey(userId, c)), c]));
    try {
      const it = await directBatch(this.#jsm, names.kvStream(names.contactsBucket), { multi_last: [...bySubject.keys()] });
      for await (const sm of it) {
        const peer = bySubject.get(sm.subject);
        if (peer !== undefined) found.add(peer);
      }
    } catch (err) {
      if (err instanceof JetStreamError && (err as { code?: unknown }).code === 404) return found;
      throw new NatterError("UNAVAILABLE", "contacts unavailable", { cause: err });
    }
    return found;
  }

  /** Creates a group owned by `owner` with the given members (the owner is always one). */
  async createGroup(owner: string, name: string, members: readonly string[]): Promise<Conversation> {
    const all = [...new Set([checkId("user id", owner), ...members.map((m) => checkId("member id", m))])];
    if (all.length > MAX_GROUP_MEMBERS) throw new NatterError("GROUP_FULL", `a group holds at most ${MAX_GROUP_MEMBERS} members`);
    await this.#checkRoom(all);
    const id = newGroupId();
    return this.#change(id, (current) => current ?? { kind: "group", action: "create", by: owner, members: all, name, owner });
  }

  /** Adds `userId` to a group; any member may add. Idempotent. */
  async addMember(id: string, by: string, userId: string): Promise<Conversation> {
    checkId("user id", userId);
    // Only a member adding a newcomer learns of the newcomer's limit; the change below decides the rest.
    const now = await this.get(id);
    if (now?.kind === "group" && now.members.includes(by) && !now.members.includes(userId)) await this.#checkRoom([userId]);
    return this.#change(id, (c) => {
      if (!c?.members.includes(by)) throw new NatterError("NOT_MEMBER");
      if (c.kind !== "group") throw new NatterError("NOT_A_GROUP");
      if (c.members.includes(userId)) return c;
      if (c.members.length >= MAX_GROUP_MEMBERS) throw new NatterError("GROUP_FULL", `a group holds at most ${MAX_GROUP_MEMBERS} members`);
      return { kind: "group", action: "add", user: userId, by, members: [...c.members, userId], name: c.name, owner: c.owner };
    });
  }

  /** Removes `userId` from a group: the owner may remove anyone, anyone may remove themselves. */
  async removeMember(id: string, by: string, userId: string): Promise<Conversation> {
    checkId("user id", userId);
    return this.#change(id, (c) => {
      if (!c?.members.includes(by)) throw new NatterError("NOT_MEMBER");
      if (c.kind !== "group") throw new NatterError("NOT_A_GROUP");
      if (by !== userId && c.owner !== by) throw new NatterError("FORBIDDEN", "only the owner removes other members");
      if (!c.members.includes(userId)) return c;
      const members = c.members.filter((m) => m !== userId);
      // The owner leaving hands the group to the longest-standing member.
      const owner = c.owner === userId ? members[0] : c.owner;
      return { kind: "group", action: by === userId ? "leave" : "remove", user: userId, by, members, name: c.name, owner };
    });
  }
}
