// The events a NatterClient emits, their payloads, and the emitter behind `on`/`off`. A listener
// that throws is reported (reportError, or an uncaught error on a timer) and stops neither the
// client nor the other listeners of the event.
import type { DiscoveryEvent } from "./discovery.js";
import type { NatterError } from "./errors.js";
import type { ImageRef, MembershipAction, PresenceEntry } from "./protocol.js";

export type ConnectionState = "idle" | "connecting" | "open" | "reconnecting" | "closed";

/** A chat message in a conversation (also the ones this user sent, from any of their devices). */
export interface ChatMessage {
  conv: string;
  /** Increasing within the conversation. */
  id: number;
  from: string;
  /** The sending device. */
  device: string;
  /** The sender's client message id (matches SendResult.cid on the sending device). */
  cid: string;
  text: string;
  /** When the server accepted it (ms since the epoch). */
  ts: number;
  /** This item's position in the user's inbox. */
  cursor: number;
  /** The images it carries, in the sender's order (absent when none): lay them out from their dimensions, fetch with `fetchImage`. */
  images?: ImageRef[] | undefined;
}

/** A conversation's membership changed; `members` is the whole list after the change. */
export interface MembershipChange {
  conv: string;
  id: number;
  action: MembershipAction;
  user?: string | undefined;
  by: string;
  members: string[];
  name?: string | undefined;
  owner?: string | undefined;
  ts: number;
  cursor: number;
}

/**
 * The server could not resume from the stored cursor (it is older than the inbox's retention, or
 * unknown to the server): items may have been missed. Reload conversations with `history`.
 */
export interface ResetNotice {
  cursor: number;
  reason: string;
}

export interface StateChange {
  state: ConnectionState;
  previous: ConnectionState;
  /** Reconnect attempts since the last welcome. */
  attempt: number;
  /** Set on `reconnecting`: the wait before the next attempt. */
  delayMs?: number | undefined;
  /** The close code that ended the last connection, if any. */
  closeCode?: number | undefined;
  /**
   * The edge (its URL, as `url` or discovery gave it) this state is about: on `open` the one the
   * client is on now; on `reconnecting` and `closed` the one it was on or tried last.
   */
  edge?: string | undefined;
  /** Set on `closed` when the client stopped for an error (not by `close()`). */
  error?: NatterError | undefined;
}

/**
 * A member's receipts moved (any member, this user included: a read on one device reaches the
 * others). The state only grows; `read` ≤ `delivered`. An inbox item, replayed on catch-up.
 */
export interface ReceiptEvent {
  conv: string;
  /** The receipt event's own id in the conversation. */
  id: number;
  user: string;
  /** The device that moved it. */
  device: string;
  delivered: number;
  read: number;
  ts: number;
  cursor: number;
}

/** Another member is typing in `conv`: show it until `expiresAt` (now + ttlMs) unless it is repeated. Never replayed. */
export interface TypingEvent {
  conv: string;
  user: string;
  ttlMs: number;
  /** Local time (ms) after which to stop showing it. */
  expiresAt: number;
}

/**
 * Events by name. New kinds arrive as new keys here, which does not break existing listeners;
 * frames of kinds this version does not know are ignored.
 */
export interface NatterEvents {
  message: ChatMessage;
  membership: MembershipChange;
  receipt: ReceiptEvent;
  typing: TypingEvent;
  /**
   * A contact's presence changed (the other member of a 1:1 conversation; group members are never
   * pushed: ask with `presence({ conv })`). Only transitions, only while connected: ask with
   * `presence()` after each `open`. An entry older (lower `rev`) than one already seen for that
   * user on this connection is dropped.
   */
  presence: PresenceEntry;
  reset: ResetNotice;
  state: StateChange;
  /** A discovery answer (with the `discovery` option): the edges the next attempts go through, best first. */
  discovery: DiscoveryEvent;
  /** Connection-level problems: a refused token, an unreachable edge, an error frame without a request. */
  error: NatterError;
}
export type NatterEventName = keyof NatterEvents;
export type Listener<K extends NatterEventName> = (event: NatterEvents[K]) => void;

function reportListenerError(err: unknown): void {
  const report = (globalThis as { reportError?: (e: unknown) => void }).reportError;
  if (report !== undefined) report(err);
  else
    setTimeout(() => {
      throw err;
    });
}

/** The listeners of one client, by event. */
export class Emitter {
  readonly #listeners = new Map<NatterEventName, Set<(e: never) => void>>();

  on<K extends NatterEventName>(type: K, listener: Listener<K>): void {
    let set = this.#listeners.get(type);
    if (set === undefined) {
      set = new Set();
      this.#listeners.set(type, set);
    }
    set.add(listener as (e: never) => void);
  }

  off<K extends NatterEventName>(type: K, listener: Listener<K>): void {
    this.#listeners.get(type)?.delete(listener as (e: never) => void);
  }

  /** Calls every listener of `type` (those added when it starts), each in its own try. */
  emit<K extends NatterEventName>(type: K, event: NatterEvents[K]): void {
    const set = this.#listeners.get(type);
    if (set === undefined) return;
    for (const l of [...set]) {
      try {
        (l as Listener<K>)(event);
      } catch (err) {
        reportListenerError(err);
      }
    }
  }
}
