// The presence store: one small role interface, implemented on a NATS KV bucket with per-key TTL
// (NatsKvPresence) and in memory (MemoryPresence, for unit tests). Both pass one conformance suite
// (test/conformance/presence-store.ts), so they cannot drift.
//
// Device keys are the truth: a device is online while its key lives. A key lives `ttlMs` after its
// last write; an edge rewrites it about once per ttl/2 while the device heartbeats, sooner when the
// key is about to expire (the write rule is in device-presence.ts). Removing a key
// (a graceful disconnect) or its expiry is a device change; so is a write that starts a key anew.
// Refresh writes of a live key are not changes. User records hold what the presence worker last
// published for a user (online, since, last seen) and are changed only by compare-and-set.

/** The result of writing a device's key. */
export interface Touch {
  /** Revision of this write: pass it to the next touch or leave of this device. */
  revision: number;
  /** True when the key did not live before this write: the device came online. */
  started: boolean;
}

/** A device came online (a key started) or went offline (a key removed or expired). */
export interface DeviceChange {
  user: string;
  device: string;
  online: boolean;
  /** When it happened, ms since epoch (the store's clock: for NATS, the server's). */
  at: number;
}

/** What contacts see of a user. */
export interface UserPresence {
  online: boolean;
  /** Online since (ms), while online. */
  since?: number | undefined;
  /** When the user last went offline (ms): a disconnect's time, or the expiry of its last device key. */
  lastSeen?: number | undefined;
}

export interface UserRecord {
  state: UserPresence;
  /** Compare-and-set revision; increases with every change of this user's record. */
  revision: number;
}

/** A running subscription to device changes. */
export interface ChangeFeed {
  stop(): Promise<void>;
}

export interface PresenceStore {
  /** How long a device key lives after its last write (ms). */
  readonly ttlMs: number;
  /**
   * Writes the device's key, to live `ttlMs` (default: the store's TTL; whole seconds, at least
   * one, rounded up) from now. `prev` is the revision of this caller's last write of it: if the
   * key is still at `prev` this is a refresh (no change); otherwise the key is started (a change)
   * — or, when another writer's key lives, continued.
   */
  touch(user: string, device: string, prev?: number, ttlMs?: number): Promise<Touch>;
  /** Removes the device's key if it is still at `revision` (a newer write from elsewhere wins). True if removed. */
  leave(user: string, device: string, revision: number): Promise<boolean>;
  /** Devices of `user` whose keys live now. */
  onlineDevices(user: string): Promise<string[]>;
  /**
   * Calls `handler` for every device change from where the previous feed stopped (durable): in
   * order for each user, different users possibly at once. A change is delivered again until
   * `handler` resolves. With several feeds (several worker processes), each goes to one of them.
   */
  changes(handler: (change: DeviceChange) => Promise<void>): Promise<ChangeFeed>;
  /** The records of those `users` that have one. */
  users(users: readonly string[]): Promise<Map<string, UserRecord>>;
  /** Sets a user's record if its revision is still `prev` (0: no record yet). The new revision, or null if it changed meanwhile. */
  setUser(user: string, state: UserPresence, prev: number): Promise<number | null>;
}
