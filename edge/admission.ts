// Who an edge lets in, before any per-user work: a cap on its sockets (under the process's open
// file limit, so /readyz and /metrics always have room), a cap on sockets per remote address that
// have not said hello yet, and a bound on hellos being handled at once (each verifies a token,
// subscribes, reads the inbox and replays). Past a cap a socket is told when to try again — a
// jittered delay, so a crowd does not come back at once — and closed 4503.
import { readFileSync } from "node:fs";
import type { EdgeConfig } from "../config/index.ts";
import { type Logger, MistakeLog } from "../core/index.ts";

/** File descriptors kept free of sockets for everything else the process opens. */
const RESERVED_FDS = 512;

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

/** Admission as a session uses it: the bound on hellos in progress, and the count of refusals. */
export interface HelloSlots {
  /** A hello may start being handled: true (pair with helloEnd()) or a refusal. */
  startHello(): Refusal | true;
  helloEnd(): void;
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
  readonly #random: () => number;
  readonly #refusals: MistakeLog;

  constructor(edge: Pick<EdgeConfig, "maxConnections" | "maxPendingPerAddress" | "maxHellosInProgress">, log: Logger, opts: { fileLimit?: number | undefined; random?: () => number } = {}) {
    const files = opts.fileLimit ?? openFileLimit();
    const byFiles = files === undefined ? Number.POSITIVE_INFINITY : Math.max(1, files - RESERVED_FDS);
    this.maxSockets = Math.min(edge.maxConnections > 0 ? edge.maxConnections : Number.POSITIVE_INFINITY, byFiles);
    if (!Number.isFinite(this.maxSockets)) this.maxSockets = 1_000_000;
    this.#maxPendingPerAddress = edge.maxPendingPerAddress;
    this.#maxHellos = edge.maxHellosInProgress;
    this.#random = opts.random ?? Math.random;
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

  startHello(): Refusal | true {
    if (this.#hellos >= this.#maxHellos) return this.#later("HELLOS_BUSY", "the edge is busy with other connections; try again shortly", 1000);
    this.#hellos++;
    return true;
  }

  helloEnd(): void {
    this.#hellos--;
  }
}
