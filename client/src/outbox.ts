// Sends. A send keeps its client id (cid) from its first attempt until the server acknowledges
// it, so the server stores it once however often it goes out: at most `sendWindow` are on the
// wire, oldest first; after a reconnect the unacknowledged ones go out again with the same cid,
// and a temporary error (RATE_LIMITED, UNAVAILABLE…) is retried with backoff, later sends waiting
// behind it. A send rejects with TIMEOUT after sendTimeoutMs (well within the server's 10 minutes
// of deduplication), with a permanent error frame, or with the error that stopped the client.
import { backoffDelay } from "./backoff.js";
import type { Wire } from "./connection.js";
import { closedError, errorFromFrame, NatterError } from "./errors.js";
import type { NatterClientOptions } from "./options.js";
import type { ImageRef, ServerFrame } from "./protocol.js";
import { newClientId } from "./util.js";

export interface SendResult {
  conv: string;
  cid: string;
  /** The message id in the conversation. */
  id: number;
  /** True when the server had already stored this cid (a resend). */
  dup: boolean;
}

interface SendEntry {
  conv: string;
  cid: string;
  text: string;
  images: string[] | undefined;
  promise: Promise<SendResult>;
  resolve: (r: SendResult) => void;
  reject: (e: NatterError) => void;
  /** The ref of the attempt in flight on the current connection. */
  ref: string | undefined;
  attempts: number;
  retryAt: number;
  deadline: ReturnType<typeof setTimeout>;
}

/** WebSocket readyState of an open socket. */
const OPEN = 1;

export type OutboxOptions = Pick<NatterClientOptions, "sendTimeoutMs" | "sendWindow" | "backoff">;

export class Outbox {
  readonly #wire: Wire;
  readonly #opts: OutboxOptions;
  /** Numbers refs; shared with the requests, whose refs start with `r` where these start with `s`. */
  readonly #nextRef: () => number;
  /** Unacknowledged sends by cid, oldest first. */
  readonly #sends = new Map<string, SendEntry>();
  /** The cid of each send on the wire, by the ref of its attempt. */
  readonly #refs = new Map<string, string>();
  /** Wakes the pump when the send at the head of the line may be retried. */
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(wire: Wire, opts: OutboxOptions, nextRef: () => number) {
    this.#wire = wire;
    this.#opts = opts;
    this.#nextRef = nextRef;
  }

  /** Sends not yet acknowledged. */
  get size(): number {
    return this.#sends.size;
  }

  send(conv: string, text: string, opts: { cid?: string; images?: readonly (string | ImageRef)[] }): Promise<SendResult> {
    if (this.#wire.state === "closed") return Promise.reject(closedError());
    const cid = opts.cid ?? newClientId();
    const existing = this.#sends.get(cid);
    if (existing !== undefined) return existing.promise;
    let resolve!: (r: SendResult) => void;
    let reject!: (e: NatterError) => void;
    const promise = new Promise<SendResult>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const timeout = this.#opts.sendTimeoutMs ?? 300_000;
    const images = opts.images !== undefined && opts.images.length > 0 ? opts.images.map((i) => (typeof i === "string" ? i : i.id)) : undefined;
    const entry: SendEntry = {
      conv,
      cid,
      text,
      images,
      promise,
      resolve,
      reject,
      ref: undefined,
      attempts: 0,
      retryAt: 0,
      deadline: setTimeout(() => {
        if (this.#sends.get(cid) !== entry) return;
        this.#sends.delete(cid);
        if (entry.ref !== undefined) this.#refs.delete(entry.ref);
        reject(new NatterError("TIMEOUT", `send ${cid} was not acknowledged within ${timeout} ms`, { temporary: true }));
        this.pump();
      }, timeout),
    };
    this.#sends.set(cid, entry);
    this.#wire.autoConnect();
    this.pump();
    return promise;
  }

  /** True when `ref` is the ref of a send on the wire. */
  has(ref: unknown): ref is string {
    return typeof ref === "string" && this.#refs.has(ref);
  }

  /** The reply to the send attempt `ref`: an ack resolves it, a temporary error retries it later, anything else rejects it. */
  reply(ref: string, f: ServerFrame): void {
    const cid = this.#refs.get(ref);
    this.#refs.delete(ref);
    const s = cid === undefined ? undefined : this.#sends.get(cid);
    if (s === undefined || s.ref !== ref) return;
    s.ref = undefined;
    if (f.type === "ack") {
      this.#sends.delete(s.cid);
      clearTimeout(s.deadline);
      s.resolve({ conv: f.conv, cid: f.cid, id: f.id, dup: f.dup });
    } else if (f.type === "error" && f.temporary) {
      // Rate limited or unavailable: the same cid later is safe, no sooner than the server asked.
      s.attempts++;
      s.retryAt = Date.now() + Math.max(backoffDelay(s.attempts, this.#opts.backoff), errorFromFrame(f).retryAfterMs ?? 0);
    } else {
      this.#sends.delete(s.cid);
      clearTimeout(s.deadline);
      s.reject(f.type === "error" ? errorFromFrame(f) : new NatterError("INTERNAL", `unexpected reply ${f.type} to send`, { temporary: false }));
    }
    this.pump();
  }

  /** Puts unsent sends on the wire, oldest first, at most `sendWindow` in flight. */
  pump(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const ws = this.#wire.socket;
    if (ws === undefined || ws.readyState !== OPEN) return;
    const window = Math.max(1, this.#opts.sendWindow ?? 1);
    let inFlight = 0;
    for (const s of this.#sends.values()) if (s.ref !== undefined) inFlight++;
    const now = Date.now();
    for (const s of this.#sends.values()) {
      if (inFlight >= window) break;
      if (s.ref !== undefined) continue;
      if (s.retryAt > now) {
        // Keep the order: later sends wait behind one that is backing off.
        this.#timer = setTimeout(() => this.pump(), s.retryAt - now);
        break;
      }
      const ref = `s${this.#nextRef()}`;
      s.ref = ref;
      this.#refs.set(ref, s.cid);
      ws.send(JSON.stringify({ type: "send", ref, conv: s.conv, cid: s.cid, text: s.text, ...(s.images !== undefined ? { images: s.images } : {}) }));
      inFlight++;
    }
  }

  /** The connection dropped: every unacknowledged send goes out again (same cid) after the next welcome. */
  requeue(): void {
    for (const s of this.#sends.values()) s.ref = undefined;
    this.#refs.clear();
  }

  /** The client stopped for good: every send rejects with `err`. */
  stopped(err: NatterError): void {
    clearTimeout(this.#timer);
    for (const s of [...this.#sends.values()]) {
      clearTimeout(s.deadline);
      s.reject(err);
    }
    this.#sends.clear();
    this.#refs.clear();
  }
}
