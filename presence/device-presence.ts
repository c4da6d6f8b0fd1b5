// The edge's side of presence: the devices connected to this process.
//
// Write rule — with heartbeats on time, one KV write per device per ttl/2 or more, plus its transitions:
//   - connect: write (a transition), the key to live `ttl`;
//   - a heartbeat (any frame) updates an in-memory time, and writes only if the last write is
//     ttl/2 old or older, or the key expires within ttl/4 (or has expired: the device is back, a
//     transition). With heartbeats every ttl/3 that is one write per 2·ttl/3: 90/ttl per device
//     per minute;
//   - a tick (every ttl/10, at most 1 s) rescues devices whose heartbeat came just too early to
//     write and whose next one is late: when a key expires within ttl/4 and a heartbeat arrived
//     since its last write, it is written to live until ttl after that heartbeat. So a heartbeat
//     late by up to about 2·ttl/3 causes no offline flicker; a late or jittery device costs at
//     most one write per heartbeat.
//   - a failed write is tried again after a second at the earliest (on a heartbeat or a tick).
//     Failures are counted and logged at warn once per 10 s: when NATS is slow (a reconnect storm)
//     every device's write can fail at once, each second.
// Every write makes the key live until ttl after the device's last heartbeat (in whole seconds,
// rounded down), so a device that stops heartbeating is offline within ttl of its last one.
//
// A device's operations run one after another (a chain per device), so a leave never overtakes
// the write before it. Several sockets of one device on this edge share one entry.
import { type Logger, MistakeLog } from "../core/index.ts";
import type { PresenceStore } from "./store.ts";

export interface DeviceHandle {
  /** Activity from the device (a heartbeat or any frame). */
  beat(): void;
  /**
   * The socket is gone. "leave": the device left (offline at once unless another socket of it
   * remains). "keep": the server asked it to reconnect (shutdown, slow consumer): the key stays and
   * expires within the TTL unless the device comes back, on this edge or another.
   */
  release(mode: "leave" | "keep"): void;
}

interface Entry {
  user: string;
  device: string;
  sockets: number;
  /** The last heartbeat (ms, this process's clock). */
  lastBeat: number;
  /** The heartbeat the key's expiry is counted from. */
  coveredBeat: number;
  /** When the last write was issued. */
  lastWrite: number;
  /** When the key expires, as far as this edge knows (a write's issue time + its TTL). */
  expiresAt: number;
  /** After a failed write: no new attempt before this time. */
  retryAt: number;
  writing: boolean;
  revision: number | undefined;
  chain: Promise<void>;
}

export interface DevicePresenceOptions {
  store: PresenceStore;
  log: Logger;
  /** Clock (ms); tests pass a fake one and call tick() themselves. */
  now?: () => number;
  /** Interval of the rescue tick (ms); 0: no timer (tests). Default: ttl/10, at most 1 s. */
  tickMs?: number;
}

export class DevicePresence {
  readonly #store: PresenceStore;
  readonly #failures: MistakeLog;
  readonly #now: () => number;
  readonly #ttl: number;
  readonly #interval: number;
  readonly #lead: number;
  readonly #retry: number;
  readonly #devices = new Map<string, Entry>();
  readonly #pending = new Set<Promise<void>>();
  readonly #timer: NodeJS.Timeout | undefined;
  /** KV writes issued (touches and leaves): for the bench and tests. */
  writes = 0;

  constructor(opts: DevicePresenceOptions) {
    this.#store = opts.store;
    this.#failures = new MistakeLog(opts.log, 10_000, "presence writes failed (a touch is retried within a second; a failed leave's key expires within the TTL)");
    this.#now = opts.now ?? Date.now;
    this.#ttl = opts.store.ttlMs;
    this.#interval = this.#ttl / 2;
    this.#lead = this.#ttl / 4;
    this.#retry = Math.min(1000, this.#ttl / 8);
    const tickMs = opts.tickMs ?? Math.min(1000, this.#ttl / 10);
    if (tickMs > 0) {
      this.#timer = setInterval(() => this.tick(), tickMs);
      this.#timer.unref();
    }
  }

  /** How often clients should heartbeat (ms): a third of the TTL. */
  get heartbeatMs(): number {
    return Math.floor(this.#ttl / 3);
  }

  get devices(): number {
    return this.#devices.size;
  }

  connect(user: string, device: string): DeviceHandle {
    const id = `${user}.${device}`;
    const now = this.#now();
    let e = this.#devices.get(id);
    if (e) {
      e.sockets++;
    } else {
      e = { user, device, sockets: 1, lastBeat: now, coveredBeat: -Infinity, lastWrite: -Infinity, expiresAt: -Infinity, retryAt: -Infinity, writing: false, revision: undefined, chain: Promise.resolve() };
      this.#devices.set(id, e);
    }
    const entry = e;
    this.#beat(entry);
    let released = false;
    return {
      beat: () => {
        if (!released) this.#beat(entry);
      },
      release: (mode) => {
        if (released) return;
        released = true;
        if (--entry.sockets > 0) return;
        if (this.#devices.get(id) === entry) this.#devices.delete(id);
        if (mode === "leave") this.#enqueue(entry, () => this.#leave(entry));
      },
    };
  }

  #beat(e: Entry): void {
    const now = this.#now();
    e.lastBeat = now;
    if (e.writing || now < e.retryAt) return;
    // Every ttl/2; or sooner when the key is about to expire (a heartbeat is the best moment to
    // write: the key then lives the whole ttl, where a rescue by the tick gets what is left of it).
    if (now - e.lastWrite >= this.#interval || e.expiresAt - now <= this.#lead) this.#write(e, now);
  }

  /**
   * One pass of the rescue rule over this edge's devices (the timer calls it; tests too): a key
   * about to expire whose device heartbeated since its last write is written again, however
   * recent that write (a rescue's TTL, rounded down to whole seconds, can be short). At most one
   * write per heartbeat.
   */
  tick(): void {
    const now = this.#now();
    for (const e of this.#devices.values()) {
      if (e.writing || now < e.retryAt || e.lastBeat <= e.coveredBeat) continue;
      if (e.expiresAt - now <= this.#lead) this.#write(e, now);
    }
  }

  #write(e: Entry, now: number): void {
    const before = { coveredBeat: e.coveredBeat, expiresAt: e.expiresAt, lastWrite: e.lastWrite };
    // Live until ttl after the last heartbeat, in whole seconds (what a per-message TTL counts),
    // rounded down: never later than that.
    const ttlMs = Math.max(1, Math.floor((e.lastBeat + this.#ttl - now) / 1000)) * 1000;
    e.writing = true;
    e.lastWrite = now;
    e.coveredBeat = e.lastBeat;
    e.expiresAt = now + ttlMs;
    this.#enqueue(e, async () => {
      try {
        this.writes++;
        const t = await this.#store.touch(e.user, e.device, e.revision, ttlMs);
        e.revision = t.revision;
      } catch (err) {
        this.#failures.note("touch", err);
        // Retry within a second (on the next heartbeat or tick), not after a whole interval.
        e.coveredBeat = before.coveredBeat;
        e.expiresAt = before.expiresAt;
        e.lastWrite = before.lastWrite;
        e.retryAt = now + this.#retry;
      } finally {
        e.writing = false;
      }
    });
  }

  async #leave(e: Entry): Promise<void> {
    if (e.revision === undefined) return;
    try {
      this.writes++;
      await this.#store.leave(e.user, e.device, e.revision);
    } catch (err) {
      this.#failures.note("leave", err);
    }
  }

  #enqueue(e: Entry, op: () => Promise<void>): void {
    const p = e.chain.then(op);
    e.chain = p;
    this.#pending.add(p);
    void p.finally(() => this.#pending.delete(p));
  }

  /** Resolves once every write issued so far has finished. */
  async settle(): Promise<void> {
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
  }

  /** Stops the tick and waits for writes in flight (graceful shutdown). Keys stay until they expire or are left. */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.settle();
    this.#failures.flush();
  }
}
