// What one socket may do, and how fast (docs/protocol.md, "Limits"): stored writes (sends,
// receipts, push registrations) share a token bucket per device; bad frames have their own, past
// which the socket is closed (4429); typing signals are limited per conversation, token
// refreshes per socket. Handlers ask
// here before they do work; a refusal is a typed, temporary RATE_LIMITED.
import type { EdgeConfig } from "../config/index.ts";
import { NatterError } from "../core/index.ts";
import { TYPING_INTERVAL_MS } from "./protocol.ts";

/** A token bucket: `perSecond` refill, at most `burst` saved up. */
export class TokenBucket {
  #tokens: number;
  #at: number;
  readonly #rate: number;
  readonly #burst: number;
  readonly #now: () => number;

  constructor(perSecond: number, burst: number, now: () => number = Date.now) {
    this.#rate = perSecond;
    this.#burst = burst;
    this.#tokens = burst;
    this.#now = now;
    this.#at = now();
  }

  take(): boolean {
    const now = this.#now();
    this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#at) / 1000) * this.#rate);
    this.#at = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}

/** `token` frames a socket may send at once, and then one per this many seconds: a client needs one per token lifetime. */
const TOKEN_FRAMES_BURST = 3;
const TOKEN_FRAME_INTERVAL_S = 10;

/** Conversations whose last typing signal is remembered per socket before old ones are dropped. */
const TYPING_REMEMBERED = 64;

export class SocketLimits {
  readonly #writes: TokenBucket;
  readonly #badFrames: TokenBucket;
  readonly #tokenFrames: TokenBucket;
  /** When this device last sent a typing signal, per conversation. */
  readonly #typingAt = new Map<string, number>();
  readonly #now: () => number;

  constructor(edge: Pick<EdgeConfig, "sendsPerSecond" | "badFramesPerMinute">, now: () => number = Date.now) {
    this.#now = now;
    this.#writes = new TokenBucket(edge.sendsPerSecond, edge.sendsPerSecond * 2, now);
    this.#badFrames = new TokenBucket(edge.badFramesPerMinute / 60, edge.badFramesPerMinute, now);
    this.#tokenFrames = new TokenBucket(1 / TOKEN_FRAME_INTERVAL_S, TOKEN_FRAMES_BURST, now);
  }

  /** A `token` frame (a signature check and a revocation read): RATE_LIMITED past 3 at once, then one per 10 s. */
  tokenFrame(): void {
    if (!this.#tokenFrames.take()) {
      throw new NatterError("RATE_LIMITED", `at most ${TOKEN_FRAMES_BURST} token frames at once, then one every ${TOKEN_FRAME_INTERVAL_S} s`);
    }
  }

  /** A stored write (send, receipt, push registration): RATE_LIMITED past `edge.sendsPerSecond`. */
  write(what: string): void {
    if (!this.#writes.take()) throw new NatterError("RATE_LIMITED", `too many ${what}; retry later${what === "sends" ? " with the same cid" : ""}`);
  }

  /** A bad frame; false when the socket has sent too many and must be closed (4429). */
  badFrame(): boolean {
    return this.#badFrames.take();
  }

  /**
   * A typing signal in `conv`: RATE_LIMITED within TYPING_INTERVAL_MS of the last one. Returns an
   * undo for when the signal is refused afterwards (not a member), so it does not count.
   */
  typing(conv: string): () => void {
    const now = this.#now();
    const last = this.#typingAt.get(conv);
    if (last !== undefined && now - last < TYPING_INTERVAL_MS) {
      throw new NatterError("RATE_LIMITED", `one typing signal per conversation every ${TYPING_INTERVAL_MS} ms`);
    }
    if (this.#typingAt.size >= TYPING_REMEMBERED) for (const [c, at] of this.#typingAt) if (now - at >= TYPING_INTERVAL_MS) this.#typingAt.delete(c);
    this.#typingAt.set(conv, now);
    return () => {
      if (this.#typingAt.get(conv) === now) this.#typingAt.delete(conv);
    };
  }
}
