// The newest presence entry seen per user on this connection. Live frames and replies to
// presence() cross on the wire; of two entries about one user the one with the higher `rev` is
// current, so a stale one is neither emitted nor returned. Cleared at every welcome: the app asks
// again after `open`, and a server whose presence bucket was recreated counts revs from 1 again.
import type { PresenceEntry } from "./protocol.js";

export class PresenceCache {
  readonly #seen = new Map<string, PresenceEntry>();

  /** Keeps `e` if it is not older than the entry held for its user: the entry, or undefined when stale. */
  note(e: PresenceEntry): PresenceEntry | undefined {
    const held = this.#seen.get(e.user);
    if (held !== undefined && e.rev < held.rev) return undefined;
    const entry: PresenceEntry = { user: e.user, online: e.online, ...(e.lastSeen !== undefined ? { lastSeen: e.lastSeen } : {}), rev: e.rev };
    this.#seen.set(e.user, entry);
    return entry;
  }

  /** The newer of `e` and the entry held for its user (a reply that a live change crossed). */
  newest(e: PresenceEntry): PresenceEntry {
    return this.note(e) ?? this.#seen.get(e.user)!;
  }

  clear(): void {
    this.#seen.clear();
  }
}
