// What a user and a socket may do, and how fast (docs/protocol.md, "Limits").
//
// - Every frame costs something from its user's budget (FRAME_COSTS, in sends: a send costs 1,
//   a conversation listing 5, a group creation 10, a heartbeat almost nothing), refilled at
//   `edge.sendsPerSecond` with a burst of twice that. The budget is the user's, not a socket's:
//   the sockets of a user on one edge share it, and a user connected through several edges gets
//   on each edge the part of the budget that its devices there are of all its online devices
//   (presence counts them: at hello, and from the presence worker's notice on every change), so
//   the whole cluster grants it one budget. An edge's part of the burst is never below the
//   dearest frame's cost, so every frame can pass.
// - A socket has at most `edge.maxInFlightPerSocket` frames being handled at once, a budget of
//   bad frames (past it: close 4429), one typing signal per conversation every 2 s, and 3 `token`
//   frames at once, then one per 10 s.
// A refusal is a typed, temporary RATE_LIMITED.
import type { EdgeConfig } from "../config/index.ts";
import { NatterError } from "../core/index.ts";
import { type ClientFrame, TYPING_INTERVAL_MS } from "./protocol.ts";

/** A token bucket: `perSecond` refill, at most `burst` saved up. */
export class TokenBucket {
  #tokens: number;
  #at: number;
  #rate: number;
  #burst: number;
  readonly #now: () => number;

  constructor(perSecond: number, burst: number, now: () => number = Date.now) {
    this.#rate = perSecond;
    this.#burst = burst;
    this.#tokens = burst;
    this.#now = now;
    this.#at = now();
  }

  take(cost = 1): boolean {
    const now = this.#now();
    this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#at) / 1000) * this.#rate);
    this.#at = now;
    if (this.#tokens + 1e-9 < cost) return false; // costs like 0.05 add up with rounding errors
    this.#tokens -= cost;
    return true;
  }

  /** New rate and burst; what is saved up shrinks with the burst. */
  resize(perSecond: number, burst: number): void {
    this.take(0);
    this.#rate = perSecond;
    this.#burst = burst;
    this.#tokens = Math.min(this.#tokens, burst);
  }
}

/**
 * What each frame costs, in sends. Reads that fan out inside the server cost more than they weigh
 * on the wire (a listing reads every conversation's unread count); heartbeats nearly nothing.
 */
export const FRAME_COSTS: { readonly [T in ClientFrame["type"]]: number } = {
  ping: 0.05,
  send: 1,
  receipt: 1,
  typing: 0.5,
  history: 2,
  members: 0.5,
  receipts: 1,
  convs: 5,
  presence: 1,
  "dm.open": 2,
  "group.create": 10,
  "group.add": 2,
  "group.remove": 2,
  "group.leave": 2,
  "push.register": 5,
  "push.remove": 1,
  token: 1,
};

/** The dearest frame: the least burst an edge grants a user, so that every frame can pass. */
const MAX_COST = Math.max(...Object.values(FRAME_COSTS));

interface UserBudget {
  bucket: TokenBucket;
  /** This user's sockets on this edge. */
  sockets: number;
  /** Its devices online on all edges (presence), this edge's included; at least `sockets`. */
  devices: number;
  /** When its last socket on this edge left (ms). */
  leftAt: number;
}

/** How long an empty bucket takes to fill (burst = 2 × rate). */
const REFILL_MS = 2000;

/** The per-user budgets of one edge. */
export class UserBudgets {
  readonly #rate: number;
  readonly #now: () => number;
  readonly #budgets = new Map<string, UserBudget>();
  #sweptAt = 0;

  constructor(edge: Pick<EdgeConfig, "sendsPerSecond">, now: () => number = Date.now) {
    this.#rate = edge.sendsPerSecond;
    this.#now = now;
  }

  /** A socket of `user` joined this edge; `devices`: the user's online devices cluster-wide, when known. */
  attach(user: string, devices?: number): void {
    this.#sweep();
    let b = this.#budgets.get(user);
    if (!b) {
      b = { bucket: new TokenBucket(this.#rate, Math.max(this.#rate * 2, MAX_COST), this.#now), sockets: 0, devices: 0, leftAt: 0 };
      this.#budgets.set(user, b);
    }
    b.sockets++;
    this.#share(b, devices);
  }

  /**
   * A socket of `user` left. The budget outlives its last socket until it would have refilled
   * (burst / rate = 2 s): reconnecting does not buy a fresh burst.
   */
  detach(user: string): void {
    const b = this.#budgets.get(user);
    if (!b || b.sockets === 0) return;
    b.sockets--;
    if (b.sockets === 0) b.leftAt = this.#now();
    else this.#share(b);
  }

  /** Forgets budgets without sockets that have refilled (at most once a second). */
  #sweep(): void {
    const now = this.#now();
    if (now - this.#sweptAt < 1000) return;
    this.#sweptAt = now;
    for (const [user, b] of this.#budgets) if (b.sockets === 0 && now - b.leftAt >= REFILL_MS) this.#budgets.delete(user);
  }

  /** This user's sockets on this edge. */
  sockets(user: string): number {
    return this.#budgets.get(user)?.sockets ?? 0;
  }

  /** The user's online devices on all edges changed (a fresh count from presence). */
  devices(user: string, devices: number): void {
    const b = this.#budgets.get(user);
    if (b) this.#share(b, devices);
  }

  #share(b: UserBudget, devices = b.devices): void {
    b.devices = Math.max(devices, b.sockets, 1);
    const part = b.sockets / b.devices;
    b.bucket.resize(this.#rate * part, Math.max(this.#rate * 2 * part, MAX_COST));
  }

  /** Takes `frame`'s cost from `user`'s budget; RATE_LIMITED when it is spent. */
  charge(user: string, type: ClientFrame["type"]): void {
    const b = this.#budgets.get(user);
    if (b && b.sockets > 0 && !b.bucket.take(FRAME_COSTS[type])) {
      throw new NatterError("RATE_LIMITED", type === "send" ? "too many requests; retry the send later with the same cid" : "too many requests; retry later");
    }
  }
}

/** `token` frames a socket may send at once, and then one per this many seconds: a client needs one per token lifetime. */
const TOKEN_FRAMES_BURST = 3;
const TOKEN_FRAME_INTERVAL_S = 10;

/** Conversations whose last typing signal is remembered per socket before old ones are dropped. */
const TYPING_REMEMBERED = 64;

export class SocketLimits {
  readonly #badFrames: TokenBucket;
  readonly #tokenFrames: TokenBucket;
  readonly #maxInFlight: number;
  #inFlight = 0;
  /** When this device last sent a typing signal, per conversation. */
  readonly #typingAt = new Map<string, number>();
  readonly #now: () => number;

  constructor(edge: Pick<EdgeConfig, "badFramesPerMinute" | "maxInFlightPerSocket">, now: () => number = Date.now) {
    this.#now = now;
    this.#badFrames = new TokenBucket(edge.badFramesPerMinute / 60, edge.badFramesPerMinute, now);
    this.#tokenFrames = new TokenBucket(1 / TOKEN_FRAME_INTERVAL_S, TOKEN_FRAMES_BURST, now);
    this.#maxInFlight = edge.maxInFlightPerSocket;
  }

  /** A `token` frame (a signature check and a revocation read): RATE_LIMITED past 3 at once, then one per 10 s. */
  tokenFrame(): void {
    if (!this.#tokenFrames.take()) {
      throw new NatterError("RATE_LIMITED", `at most ${TOKEN_FRAMES_BURST} token frames at once, then one every ${TOKEN_FRAME_INTERVAL_S} s`);
    }
  }

  /** A frame starts being handled: RATE_LIMITED when `edge.maxInFlightPerSocket` already are. Pair with done(). */
  start(): void {
    if (this.#inFlight >= this.#maxInFlight) throw new NatterError("RATE_LIMITED", `at most ${this.#maxInFlight} requests may be in flight on one socket; wait for replies`);
    this.#inFlight++;
  }

  done(): void {
    this.#inFlight--;
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
