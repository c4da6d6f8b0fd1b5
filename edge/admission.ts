// Who an edge lets in, before any per-user work: a cap on its sockets (under the process's open
// file limit, so /readyz and /metrics always have room), a cap on sockets per remote address that
// have not said hello yet, and a bound on hellos being handled at once (each verifies a token,
// subscribes, reads the inbox and replays). Past a cap a socket is told when to try again — a
// jittered delay, so a crowd does not come back at once — and closed 4503.
//
// Hellos past the bound wait for a slot, in order, rather than being turned away: a socket that
// waits costs the edge nothing more (it holds its descriptor either way), one that is turned away
// comes back through a new TCP, HTTP and WebSocket handshake. A hello waits at most HELLO_WAIT_MS
// (well within the SDK's 10 s to a welcome); one that would wait longer at the rate hellos are
// finishing is told to come back at a time reserved for it: refusals are spaced at that rate, so
// a crowd comes back about as fast as the edge serves it, instead of all at once to be refused
// again.
import { readFileSync } from "node:fs";
import type { EdgeConfig } from "../config/index.ts";
import { type Logger, MistakeLog } from "../core/index.ts";

/** File descriptors kept free of sockets for everything else the process opens. */
const RESERVED_FDS = 512;
/** The longest a hello waits for a slot before it is told when to come back. */
const HELLO_WAIT_MS = 4000;
/** Hellos finished while others waited that the rate is measured over. */
const RATE_SAMPLES = 256;
/** Rate samples older than this are stale (the crowd is gone). */
const RATE_MAX_AGE_MS = 2000;
/** Bounds of a busy edge's retry hint (ms). */
const MIN_RETRY_MS = 500;
const MAX_RETRY_MS = 60_000;

/** The process's open-file limit (soft), or undefined where /proc does not say. */
function openFileLimit(): number | undefined {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync("/proc/self/limits", "utf8"));
    if (!m || m[1] === "unlimited") return undefined;
    return Number(m[1]);
  } catch {
    return undefined;
  }
}

/** A refusal: what the client is told before the close. */
export interface Refusal {
  message: string;
  /** Try again after this long (ms), jittered. */
  retryAfterMs: number;
}

/** A hello slot: the hello may be handled; end() it once handled. */
export interface HelloSlot {
  end(): void;
}

/** Admission as a session uses it: the bound on hellos in progress, and the count of refusals. */
export interface HelloSlots {
  /**
   * Waits for a slot to handle a hello: resolves to the slot, or to a refusal when the hello would
   * wait too long. `gone`: true once the socket closed (its place in line is given up).
   */
  startHello(gone?: () => boolean): Promise<HelloSlot | Refusal>;
  /** Counts a refusal by `reason` (logged at warn at most once per 10 s, with the counts). */
  refused(reason: string): void;
}

export class EdgeAdmission implements HelloSlots {
  /** The most sockets this edge holds. */
  readonly maxSockets: number;
  readonly #maxPendingPerAddress: number;
  readonly #maxHellos: number;
  readonly #pending = new Map<string, number>();
  #sockets = 0;
  #hellos = 0;
  /** Hellos waiting for a slot, oldest first. */
  #waiting: Waiter[] = [];
  /** When hellos finished while others waited (the last RATE_SAMPLES, oldest first). */
  readonly #finished: number[] = [];
  /** The time reserved for the last hello told to come back. */
  #reservedAt = 0;
  readonly #sweep: NodeJS.Timeout | undefined;
  readonly #random: () => number;
  readonly #now: () => number;
  readonly #refusals: MistakeLog;

  /** `sweepMs`: how often waiting hellos are checked against HELLO_WAIT_MS (0: never; tests call sweep()). */
  constructor(
    edge: Pick<EdgeConfig, "maxConnections" | "maxPendingPerAddress" | "maxHellosInProgress">,
    log: Logger,
    opts: { fileLimit?: number | undefined; random?: () => number; now?: () => number; sweepMs?: number } = {},
  ) {
    const files = opts.fileLimit ?? openFileLimit();
    const byFiles = files === undefined ? Number.POSITIVE_INFINITY : Math.max(1, files - RESERVED_FDS);
    this.maxSockets = Math.min(edge.maxConnections > 0 ? edge.maxConnections : Number.POSITIVE_INFINITY, byFiles);
    if (!Number.isFinite(this.maxSockets)) this.maxSockets = 1_000_000;
    this.#maxPendingPerAddress = edge.maxPendingPerAddress;
    this.#maxHellos = edge.maxHellosInProgress;
    this.#random = opts.random ?? Math.random;
    this.#now = opts.now ?? Date.now;
    const sweepMs = opts.sweepMs ?? 250;
    if (sweepMs > 0) {
      this.#sweep = setInterval(() => this.sweep(), sweepMs);
      this.#sweep.unref();
    }
    this.#refusals = new MistakeLog(log, 10_000, "connections refused under load (told to retry later)");
    log.info({ openFileLimit: files ?? "unknown", maxSockets: this.maxSockets }, "edge connection cap");
  }

  get sockets(): number {
    return this.#sockets;
  }

  refused(reason: string): void {
    this.#refusals.note(reason);
  }

  /** Logs the refusals counted since the last line. */
  flush(): void {
    this.#refusals.flush();
  }

  /** Stops the sweep; hellos still waiting are let go (the edge is closing their sockets). */
  close(): void {
    clearInterval(this.#sweep);
    for (const w of this.#waiting.splice(0)) w.resolve(CLOSING);
  }

  #later(reason: string, message: string, baseMs: number): Refusal {
    this.refused(reason);
    return { message, retryAfterMs: Math.round(baseMs / 2 + this.#random() * baseMs) };
  }

  /** A new socket from `address`: admitted (undefined; pair with closed()) or refused. */
  open(address: string): Refusal | undefined {
    if (this.#sockets >= this.maxSockets) return this.#later("EDGE_FULL", `this edge is full (${this.maxSockets} connections); try again later or another edge`, 5000);
    const pending = this.#pending.get(address) ?? 0;
    if (this.#maxPendingPerAddress > 0 && pending >= this.#maxPendingPerAddress) {
      return this.#later("ADDRESS_PENDING", `too many connections from one address waiting to say hello (${this.#maxPendingPerAddress})`, 2000);
    }
    this.#sockets++;
    this.#pending.set(address, pending + 1);
    return undefined;
  }

  /** The socket from `address` said hello (or closed before it did). */
  helloDone(address: string): void {
    const n = (this.#pending.get(address) ?? 1) - 1;
    if (n <= 0) this.#pending.delete(address);
    else this.#pending.set(address, n);
  }

  closed(): void {
    this.#sockets--;
  }

  /** Hellos waiting for a slot. */
  get waiting(): number {
    return this.#waiting.length;
  }

  startHello(gone: () => boolean = () => false): Promise<HelloSlot | Refusal> {
    if (this.#hellos < this.#maxHellos && this.#waiting.length === 0) return Promise.resolve(this.#slot());
    // Known to wait too long at the rate hellos finish: told at once when to come back.
    const perHelloMs = this.#perHelloMs();
    if (perHelloMs !== undefined && (this.#waiting.length + 1) * perHelloMs > HELLO_WAIT_MS) return Promise.resolve(this.#busy());
    return new Promise((resolve) => this.#waiting.push({ resolve, gone, since: this.#now() }));
  }

  /** Refuses the hellos that have waited HELLO_WAIT_MS (a timer calls it; tests too). */
  sweep(): void {
    const now = this.#now();
    let n = 0;
    while (n < this.#waiting.length && now - this.#waiting[n]!.since >= HELLO_WAIT_MS) n++;
    // Out of line first: their times are reserved after the hellos that still wait.
    for (const w of this.#waiting.splice(0, n)) w.resolve(w.gone() ? CLOSING : this.#busy());
  }

  #slot(): HelloSlot {
    this.#hellos++;
    let ended = false;
    return {
      end: () => {
        if (ended) return;
        ended = true;
        // Every slot busy: how fast they free up is what the edge can do.
        const saturated = this.#hellos >= this.#maxHellos || this.#waiting.length > 0;
        this.#hellos--;
        if (saturated) {
          this.#finished.push(this.#now());
          if (this.#finished.length > RATE_SAMPLES) this.#finished.shift();
        }
        this.#next();
      },
    };
  }

  /** Gives free slots to the hellos waiting longest whose sockets are still open. */
  #next(): void {
    while (this.#hellos < this.#maxHellos && this.#waiting.length > 0) {
      const w = this.#waiting.shift()!;
      w.resolve(w.gone() ? CLOSING : this.#slot());
    }
  }

  /** The time between hellos finishing while others wait (ms), when measured recently. */
  #perHelloMs(): number | undefined {
    const f = this.#finished;
    if (f.length < 16 || this.#now() - f[f.length - 1]! > RATE_MAX_AGE_MS) return undefined;
    return Math.max(0.01, (f[f.length - 1]! - f[0]!) / (f.length - 1));
  }

  /**
   * A busy edge's refusal: come back at the next time reserved at the rate hellos finish, after
   * the hellos still waiting have been served or have given up (jittered by a tenth). Without a
   * recent rate: as if each hello took a second.
   */
  #busy(): Refusal {
    this.refused("HELLOS_BUSY");
    const now = this.#now();
    const perHelloMs = this.#perHelloMs() ?? 1000 / this.#maxHellos;
    const youngest = this.#waiting[this.#waiting.length - 1];
    const busyMs = youngest ? Math.min(this.#waiting.length * perHelloMs, HELLO_WAIT_MS - (now - youngest.since)) : 0;
    this.#reservedAt = Math.max(this.#reservedAt, now + busyMs) + perHelloMs;
    const retryAfterMs = Math.round((this.#reservedAt - now) * (0.9 + 0.2 * this.#random()));
    return { message: "the edge is busy with other connections; try again at the time given", retryAfterMs: Math.min(MAX_RETRY_MS, Math.max(MIN_RETRY_MS, retryAfterMs)) };
  }
}

/** What a hello whose socket closed while it waited gets (nobody reads it). */
const CLOSING: Refusal = { message: "the socket closed", retryAfterMs: 0 };

interface Waiter {
  resolve: (r: HelloSlot | Refusal) => void;
  gone: () => boolean;
  since: number;
}
