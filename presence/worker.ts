// The presence worker: turns device changes (a key started, removed, or expired — the expiry seen
// through the bucket's limit marker) into user presence, and tells the user's contacts.
//
// For each change it reads the user's live device keys (the truth) and the user's record (what
// contacts were last told). Only when they disagree does it compare-and-set the record and
// publish the new state, with the record's revision, to every contact's presence subject. So
// a second device coming or going changes nothing, and several worker processes sharing the
// durable feed never publish one transition twice; receivers drop an older `rev` than they hold.
// Every change also tells the edges of the user's own devices how many are online now: they share
// the user's rate budget by it (edge/limits.ts).
import { type Logger, NatterError } from "../core/index.ts";
import type { ChangeFeed, DeviceChange, PresenceStore, UserPresence } from "./store.ts";

/** A user's presence as clients receive it (live frames and query replies). */
export interface PresenceEntry {
  user: string;
  online: boolean;
  /** ms since epoch; absent while online and for users never seen. */
  lastSeen?: number | undefined;
  /** Increases with every change of this user's presence; 0: never seen. */
  rev: number;
}

export interface PresenceWorkerDeps {
  store: PresenceStore;
  /** The users who hear of `user`'s changes: its contacts (the peer of each 1:1 conversation). */
  contactsOf(user: string): Promise<string[]>;
  /** Delivers `entry` to the connected devices of each recipient (ephemeral: not stored). */
  notify(recipients: readonly string[], entry: PresenceEntry): void;
  /** Tells the edges of `user`'s devices how many of its devices are online (they share its budget by it). */
  devices?(user: string, count: number): void;
  log: Logger;
}

const CAS_ATTEMPTS = 20;

function entryOf(user: string, state: UserPresence | undefined, rev: number): PresenceEntry {
  const online = state?.online ?? false;
  return { user, online, ...(!online && state?.lastSeen !== undefined ? { lastSeen: state.lastSeen } : {}), rev };
}

/** The presence of `users` as the store's records say (absent: offline, never seen). */
export async function presenceOf(store: PresenceStore, users: readonly string[]): Promise<PresenceEntry[]> {
  if (users.length === 0) return [];
  const records = await store.users(users);
  return [...new Set(users)].map((u) => {
    const r = records.get(u);
    return entryOf(u, r?.state, r?.revision ?? 0);
  });
}

export class PresenceWorker {
  readonly #deps: PresenceWorkerDeps;
  #feed: ChangeFeed | undefined;
  /** Transitions published (tests, logs). */
  published = 0;

  constructor(deps: PresenceWorkerDeps) {
    this.#deps = deps;
  }

  async start(): Promise<void> {
    this.#feed = await this.#deps.store.changes((c) => this.apply(c));
  }

  async stop(): Promise<void> {
    await this.#feed?.stop();
    this.#feed = undefined;
  }

  /** Applies one device change (exported for tests). */
  async apply(c: DeviceChange): Promise<void> {
    const { store } = this.#deps;
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const [devices, records] = await Promise.all([store.onlineDevices(c.user), store.users([c.user])]);
      if (attempt === 0) this.#deps.devices?.(c.user, devices.length);
      const online = devices.length > 0;
      const cur = records.get(c.user);
      const was = cur?.state;
      let next: UserPresence;
      if (online && !was?.online) {
        next = { online: true, since: c.at, lastSeen: was?.lastSeen };
      } else if (!online && (was?.online || (!c.online && (was?.lastSeen ?? 0) < c.at))) {
        // Offline now; or still offline and this removal is later than the recorded last seen
        // (several devices that expired together, or a backlog after a worker restart).
        next = { online: false, lastSeen: Math.max(c.at, was?.lastSeen ?? 0) };
      } else {
        return; // no change for the user's contacts
      }
      const rev = await store.setUser(c.user, next, cur?.revision ?? 0);
      if (rev === null) continue; // another worker changed it meanwhile: read again
      const contacts = await this.#deps.contactsOf(c.user);
      this.published++;
      this.#deps.log.debug({ user: c.user, online: next.online, contacts: contacts.length, rev }, "presence changed");
      if (contacts.length > 0) this.#deps.notify(contacts, entryOf(c.user, next, rev));
      return;
    }
    throw new NatterError("CONFLICT", `presence of ${c.user} kept changing`);
  }
}
