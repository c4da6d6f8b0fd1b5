// PresenceStore in one process's memory, with the semantics of the KV implementation (per-key TTL,
// compare-and-set revisions, a durable ordered change feed). For unit tests of the presence logic;
// it passes the same conformance suite as NatsKvPresence.
import { checkId } from "../core/index.ts";
import type { ChangeFeed, DeviceChange, PresenceStore, Touch, UserPresence, UserRecord } from "./store.ts";

interface DeviceKey {
  revision: number;
  /** Live (a PUT) or gone (removed or expired: a tombstone that keeps the revision). */
  live: boolean;
  timer: NodeJS.Timeout | undefined;
}

export class MemoryPresence implements PresenceStore {
  readonly ttlMs: number;
  #revision = 0;
  readonly #devices = new Map<string, DeviceKey>();
  readonly #users = new Map<string, UserRecord>();
  /** Changes not yet handled, in order (the durable feed's backlog). */
  readonly #backlog: DeviceChange[] = [];
  #handler: ((c: DeviceChange) => Promise<void>) | undefined;
  #draining: Promise<void> | undefined;
  #stopped = false;

  constructor(opts: { ttlMs: number }) {
    this.ttlMs = opts.ttlMs;
  }

  #key(user: string, device: string): string {
    return `${checkId("user id", user)}.${checkId("device id", device)}`;
  }

  #emit(change: DeviceChange): void {
    this.#backlog.push(change);
    this.#drain();
  }

  #drain(): void {
    if (this.#draining || !this.#handler) return;
    const handler = this.#handler;
    this.#draining = (async () => {
      while (this.#backlog.length > 0 && this.#handler === handler) {
        const next = this.#backlog[0]!;
        try {
          await handler(next);
          this.#backlog.shift();
        } catch {
          await new Promise((r) => setTimeout(r, 50)); // delivered again
        }
      }
    })().finally(() => {
      this.#draining = undefined;
      if (this.#backlog.length > 0 && this.#handler) this.#drain();
    });
  }

  async touch(user: string, device: string, prev?: number, ttlMs?: number): Promise<Touch> {
    const k = this.#key(user, device);
    const cur = this.#devices.get(k);
    const started = !cur?.live;
    clearTimeout(cur?.timer);
    const revision = ++this.#revision;
    const entry: DeviceKey = { revision, live: true, timer: undefined };
    entry.timer = setTimeout(() => {
      entry.live = false;
      entry.revision = ++this.#revision; // the expiry marker
      this.#emit({ user, device, online: false, at: Date.now() });
    }, ttlMs === undefined ? this.ttlMs : Math.max(1, Math.ceil(ttlMs / 1000)) * 1000);
    entry.timer.unref();
    this.#devices.set(k, entry);
    void prev; // a refresh and a continuation differ only in who wrote last: same effect here
    if (started) this.#emit({ user, device, online: true, at: Date.now() });
    return { revision, started };
  }

  async leave(user: string, device: string, revision: number): Promise<boolean> {
    const k = this.#key(user, device);
    const cur = this.#devices.get(k);
    if (!cur || cur.revision !== revision) return false;
    clearTimeout(cur.timer);
    this.#devices.set(k, { revision: ++this.#revision, live: false, timer: undefined });
    if (cur.live) this.#emit({ user, device, online: false, at: Date.now() });
    return true;
  }

  async onlineDevices(user: string): Promise<string[]> {
    const prefix = `${checkId("user id", user)}.`;
    return [...this.#devices].filter(([k, v]) => v.live && k.startsWith(prefix)).map(([k]) => k.slice(prefix.length));
  }

  async changes(handler: (change: DeviceChange) => Promise<void>): Promise<ChangeFeed> {
    if (this.#stopped) throw new Error("MemoryPresence: closed");
    this.#handler = handler;
    this.#drain();
    return {
      stop: async () => {
        if (this.#handler === handler) this.#handler = undefined;
        await this.#draining;
      },
    };
  }

  async users(users: readonly string[]): Promise<Map<string, UserRecord>> {
    const out = new Map<string, UserRecord>();
    for (const u of users) {
      const r = this.#users.get(checkId("user id", u));
      if (r) out.set(u, { state: { ...r.state }, revision: r.revision });
    }
    return out;
  }

  async setUser(user: string, state: UserPresence, prev: number): Promise<number | null> {
    const cur = this.#users.get(checkId("user id", user));
    if ((cur?.revision ?? 0) !== prev) return null;
    const revision = ++this.#revision;
    this.#users.set(user, { state: { ...state }, revision });
    return revision;
  }

  /** Clears every TTL timer (tests). */
  close(): void {
    this.#stopped = true;
    this.#handler = undefined;
    for (const d of this.#devices.values()) clearTimeout(d.timer);
  }
}
