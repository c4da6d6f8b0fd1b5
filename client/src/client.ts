// NatterClient: one device's connection to natter over the WebSocket protocol v1.
//
// It keeps three promises through any number of reconnects:
// - every inbox item is emitted once, in order: the client resumes from the cursor of the last
//   item it emitted (kept in a CursorStore), and the server replays what came after it;
// - every send is stored once: a send keeps its client id (cid) until it is acknowledged and is
//   resent with it after a reconnect, which the server deduplicates;
// - a request rejects with a NatterError carrying the server's code and `temporary` flag.
import { backoffDelay, type BackoffOptions } from "./backoff.js";
import { MemoryCursorStore, type CursorStore } from "./cursor-store.js";
import { NatterError } from "./errors.js";
import { CLOSE_CODES, PROTOCOL_VERSION, type ClientFrame, type Conversation, type HistoryItem, type MembershipAction, type ServerFrame } from "./protocol.js";
import { newClientId, toWebSocketUrl } from "./util.js";

/**
 * The part of the WebSocket API the client uses; the browser's WebSocket and the `ws` package's
 * both fit. Handlers are typed `unknown` so that either implementation's own handler types fit.
 */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: unknown;
  onmessage: unknown;
  onclose: unknown;
  onerror: unknown;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** Asked for a token before every connection attempt; `refresh` after the server refused the last one (close 4401). */
export type TokenProvider = (reason: "connect" | "refresh") => string | Promise<string>;

export interface NatterClientOptions {
  /** The edge: `http(s)://host:port` or `ws(s)://host:port/ws`, or a function asked before every attempt (discovery). */
  url: string | (() => string | Promise<string>);
  /** The user the token is for; the cursor is kept per user and device. */
  user: string;
  /** This device's stable id (1–64 of `A-Z a-z 0-9 _ -`): the server keeps one position per device. */
  device: string;
  /** A token, or a function that returns a fresh one (called before every connection attempt). */
  token: string | TokenProvider;
  /** Where the cursor survives restarts. Default: memory (lost when the process ends). */
  cursorStore?: CursorStore;
  /** The WebSocket implementation: default `globalThis.WebSocket` (browsers); pass `ws`'s in Node 20. */
  WebSocket?: WebSocketConstructor;
  /** Reconnect backoff. Default: 250 ms doubling up to 30 s, jittered. */
  backoff?: BackoffOptions;
  /** How long a request (not a send) waits for its reply. Default 15 s. */
  requestTimeoutMs?: number;
  /** How long a send is retried before it rejects with TIMEOUT. Default 5 min (the server deduplicates for 10). */
  sendTimeoutMs?: number;
  /** Sends in flight at once. Default 1: sends are stored in the order they were made. */
  sendWindow?: number;
  /** A ping this often (more often if the server's welcome asks for heartbeats); no answer by the next one drops the connection. Default 20 s; 0 turns it off. */
  pingIntervalMs?: number;
  /** A connection attempt that is not welcomed within this time is dropped and retried. Default 10 s. */
  handshakeTimeoutMs?: number;
}

export type ConnectionState = "idle" | "connecting" | "open" | "reconnecting" | "closed";

/** A chat message in a conversation (also the ones this user sent, from any of their devices). */
export interface ChatMessage {
  conv: string;
  /** Increasing within the conversation. */
  id: number;
  from: string;
  /** The sending device. */
  device: string;
  /** The sender's client message id (matches SendResult.cid on the sending device). */
  cid: string;
  text: string;
  /** When the server accepted it (ms since the epoch). */
  ts: number;
  /** This item's position in the user's inbox. */
  cursor: number;
}

/** A conversation's membership changed; `members` is the whole list after the change. */
export interface MembershipChange {
  conv: string;
  id: number;
  action: MembershipAction;
  user?: string | undefined;
  by: string;
  members: string[];
  name?: string | undefined;
  owner?: string | undefined;
  ts: number;
  cursor: number;
}

/**
 * The server could not resume from the stored cursor (it is older than the inbox's retention, or
 * unknown to the server): items may have been missed. Reload conversations with `history`.
 */
export interface ResetNotice {
  cursor: number;
  reason: string;
}

export interface StateChange {
  state: ConnectionState;
  previous: ConnectionState;
  /** Reconnect attempts since the last welcome. */
  attempt: number;
  /** Set on `reconnecting`: the wait before the next attempt. */
  delayMs?: number | undefined;
  /** The close code that ended the last connection, if any. */
  closeCode?: number | undefined;
  /** Set on `closed` when the client stopped for an error (not by `close()`). */
  error?: NatterError | undefined;
}

/**
 * Events by name. New kinds (read receipts, typing, presence) arrive as new keys here, which does
 * not break existing listeners; frames of kinds this version does not know are ignored.
 */
export interface NatterEvents {
  message: ChatMessage;
  membership: MembershipChange;
  reset: ResetNotice;
  state: StateChange;
  /** Connection-level problems: a refused token, an unreachable edge, an error frame without a request. */
  error: NatterError;
}
export type NatterEventName = keyof NatterEvents;
export type Listener<K extends NatterEventName> = (event: NatterEvents[K]) => void;

export interface SendResult {
  conv: string;
  cid: string;
  /** The message id in the conversation. */
  id: number;
  /** True when the server had already stored this cid (a resend). */
  dup: boolean;
}

interface RequestEntry {
  frame: DistributiveOmit<ClientFrame, "ref">;
  resolve: (f: ServerFrame) => void;
  reject: (e: NatterError) => void;
  timer: ReturnType<typeof setTimeout>;
}

interface SendEntry {
  conv: string;
  cid: string;
  text: string;
  promise: Promise<SendResult>;
  resolve: (r: SendResult) => void;
  reject: (e: NatterError) => void;
  /** The ref of the attempt in flight on the current connection. */
  ref: string | undefined;
  attempts: number;
  retryAt: number;
  deadline: ReturnType<typeof setTimeout>;
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
type InFlight = { kind: "request"; req: RequestEntry } | { kind: "send"; cid: string };

const OPEN = 1;

function reportListenerError(err: unknown): void {
  const report = (globalThis as { reportError?: (e: unknown) => void }).reportError;
  if (report !== undefined) report(err);
  else
    setTimeout(() => {
      throw err;
    });
}

function errorFromFrame(f: { code: string; message: string; temporary: boolean }): NatterError {
  return new NatterError(f.code, f.message, { temporary: f.temporary });
}

/** What to do after the server closed with `code`: reconnect, refresh the token first, or stop. */
export function closeAction(code: number): "reconnect" | "refresh-token" | "stop" {
  switch (code) {
    case CLOSE_CODES.NORMAL:
    case CLOSE_CODES.TOO_BIG:
    case CLOSE_CODES.BAD_HANDSHAKE:
    case CLOSE_CODES.FORBIDDEN_ORIGIN:
    case CLOSE_CODES.UNSUPPORTED_VERSION:
      return "stop";
    case CLOSE_CODES.UNAUTHORIZED:
      return "refresh-token";
    default:
      // 1001 going away, 1006 dropped, 4408, 4409 slow, 4429 (after a pause), 4503, and the rest.
      return "reconnect";
  }
}

export class NatterClient {
  readonly user: string;
  readonly device: string;
  readonly #opts: NatterClientOptions;
  readonly #store: CursorStore;
  readonly #Socket: WebSocketConstructor;
  readonly #listeners = new Map<NatterEventName, Set<(e: never) => void>>();

  #state: ConnectionState = "idle";
  #ws: WebSocketLike | undefined;
  /** Bumped for every socket; callbacks of older sockets are ignored. */
  #gen = 0;
  #welcomed = false;
  #openedAt = 0;
  #attempt = 0;
  #reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  #handshakeTimer: ReturnType<typeof setTimeout> | undefined;
  #pingTimer: ReturnType<typeof setInterval> | undefined;
  #awaitingPong = false;
  #tokenReason: "connect" | "refresh" = "connect";
  #refusedTokens = 0;
  /** The last error frame without a ref on this socket: why the server is about to close it. */
  #serverError: { error: NatterError; emitted: boolean } | undefined;
  #resetReason: string | undefined;
  #lastClose: number | undefined;

  #cursor: number | undefined;
  #cursorLoaded = false;
  #cursorDirty = false;
  #cursorWriting = false;

  #nextRef = 1;
  readonly #inflight = new Map<string, InFlight>();
  #queue: RequestEntry[] = [];
  readonly #outbox = new Map<string, SendEntry>();
  #sendTimer: ReturnType<typeof setTimeout> | undefined;
  #connectWaiters: { resolve: () => void; reject: (e: NatterError) => void }[] = [];

  constructor(opts: NatterClientOptions) {
    this.#opts = opts;
    this.user = opts.user;
    this.device = opts.device;
    this.#store = opts.cursorStore ?? new MemoryCursorStore();
    const Socket = opts.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (Socket === undefined) {
      throw new TypeError("NatterClient: no WebSocket implementation here; in Node 20 pass { WebSocket } from the `ws` package");
    }
    this.#Socket = Socket;
  }

  get state(): ConnectionState {
    return this.#state;
  }

  /** The inbox position of the last item emitted (undefined before the first connection). */
  get cursor(): number | undefined {
    return this.#cursor;
  }

  /** Sends not yet acknowledged (they are resent after a reconnect). */
  get pendingSends(): number {
    return this.#outbox.size;
  }

  // ── events ────────────────────────────────────────────────────────────────────────────────

  /** Adds a listener; returns a function that removes it. */
  on<K extends NatterEventName>(type: K, listener: Listener<K>): () => void {
    let set = this.#listeners.get(type);
    if (set === undefined) this.#listeners.set(type, (set = new Set()));
    set.add(listener as (e: never) => void);
    return () => this.off(type, listener);
  }

  off<K extends NatterEventName>(type: K, listener: Listener<K>): void {
    this.#listeners.get(type)?.delete(listener as (e: never) => void);
  }

  #emit<K extends NatterEventName>(type: K, event: NatterEvents[K]): void {
    const set = this.#listeners.get(type);
    if (set === undefined) return;
    for (const l of [...set]) {
      try {
        (l as Listener<K>)(event);
      } catch (err) {
        reportListenerError(err);
      }
    }
  }

  #setState(state: ConnectionState, extra: Partial<StateChange> = {}): void {
    const previous = this.#state;
    this.#state = state;
    this.#emit("state", { state, previous, attempt: this.#attempt, ...extra });
  }

  // ── connection ───────────────────────────────────────────────────────────────────────────

  /**
   * Connects (once; later calls wait for the same connection). Resolves when the server has
   * welcomed this device; rejects when the client stops for good (a refused token, a bad
   * handshake, `close()`), or after `timeoutMs` if given (the client keeps trying). A request or
   * send made before connect() connects too.
   */
  connect(opts: { timeoutMs?: number } = {}): Promise<void> {
    if (this.#state === "closed") return Promise.reject(this.#closedError());
    if (this.#state === "open") return Promise.resolve();
    const p = new Promise<void>((resolve, reject) => {
      const waiter = { resolve, reject };
      this.#connectWaiters.push(waiter);
      if (opts.timeoutMs !== undefined) {
        const timer = setTimeout(() => {
          this.#connectWaiters = this.#connectWaiters.filter((w) => w !== waiter);
          reject(new NatterError("TIMEOUT", `not connected within ${opts.timeoutMs} ms (still trying)`, { temporary: true }));
        }, opts.timeoutMs);
        waiter.resolve = () => {
          clearTimeout(timer);
          resolve();
        };
        waiter.reject = (e) => {
          clearTimeout(timer);
          reject(e);
        };
      }
    });
    if (this.#state === "idle") {
      this.#setState("connecting");
      void this.#open();
    }
    return p;
  }

  /** Closes the connection for good: pending sends and requests reject with CLOSED. */
  close(): void {
    if (this.#state === "closed") return;
    const ws = this.#ws;
    this.#teardownSocket();
    try {
      ws?.close(CLOSE_CODES.NORMAL, "bye");
    } catch {
      // already closing
    }
    this.#stop(this.#closedError(), undefined);
  }

  #closedError(): NatterError {
    return new NatterError("CLOSED", "the client is closed", { temporary: false });
  }

  async #open(): Promise<void> {
    const gen = ++this.#gen;
    this.#serverError = undefined;
    let url: string;
    let token: string;
    try {
      const raw = typeof this.#opts.url === "function" ? await this.#opts.url() : this.#opts.url;
      url = toWebSocketUrl(raw);
      token = typeof this.#opts.token === "function" ? await this.#opts.token(this.#tokenReason) : this.#opts.token;
      if (!this.#cursorLoaded) {
        this.#cursor = (await this.#store.get(this.#cursorKey())) ?? undefined;
        this.#cursorLoaded = true;
      }
    } catch (err) {
      if (gen !== this.#gen || this.#state === "closed") return;
      const e = err instanceof NatterError ? err : new NatterError("UNAVAILABLE", `could not prepare a connection: ${(err as Error)?.message ?? String(err)}`, { temporary: true, cause: err });
      this.#emit("error", e);
      this.#reconnectLater(undefined);
      return;
    }
    if (gen !== this.#gen || this.#state === "closed") return;
    let ws: WebSocketLike;
    try {
      ws = new this.#Socket(url);
    } catch (err) {
      this.#stop(new NatterError("CONNECTION_REFUSED", `cannot open ${url}: ${(err as Error)?.message ?? String(err)}`, { temporary: false, cause: err }), undefined);
      return;
    }
    this.#ws = ws;
    this.#welcomed = false;
    this.#handshakeTimer = setTimeout(() => {
      if (gen === this.#gen && !this.#welcomed) this.#drop(ws, "no welcome in time");
    }, this.#opts.handshakeTimeoutMs ?? 10_000);
    ws.onopen = () => {
      if (gen !== this.#gen) return;
      const hello: Extract<ClientFrame, { type: "hello" }> = { type: "hello", v: PROTOCOL_VERSION, token, device: this.device };
      if (this.#cursor !== undefined) hello.cursor = this.#cursor;
      ws.send(JSON.stringify(hello));
    };
    ws.onmessage = (ev: { data: unknown }) => {
      if (gen !== this.#gen) return;
      this.#onFrame(typeof ev.data === "string" ? ev.data : String(ev.data));
    };
    ws.onerror = () => {
      // A close event follows; its code decides what happens.
    };
    ws.onclose = (ev: { code: number; reason?: string }) => {
      if (gen !== this.#gen) return;
      this.#disconnected(ev.code);
    };
  }

  /** Gives up on a socket that stopped answering and goes on as if it had closed. */
  #drop(ws: WebSocketLike, why: string): void {
    this.#teardownSocket();
    try {
      ws.close(4000, why);
    } catch {
      // not open yet: closing is enough
    }
    this.#afterClose(CLOSE_CODES.ABNORMAL);
  }

  /** Forgets the current socket: its events are ignored from now on. */
  #teardownSocket(): void {
    this.#gen++;
    this.#ws = undefined;
    this.#welcomed = false;
    clearTimeout(this.#handshakeTimer);
    clearInterval(this.#pingTimer);
    this.#pingTimer = undefined;
  }

  #disconnected(code: number): void {
    this.#teardownSocket();
    this.#afterClose(code);
  }

  #afterClose(code: number): void {
    this.#lastClose = code;
    for (const s of this.#outbox.values()) s.ref = undefined; // resent after the next welcome
    if (this.#state === "closed") return;

    const why = this.#serverError?.error;
    const badCursor = why?.code === "BAD_CURSOR";
    const action = badCursor ? "reconnect" : closeAction(code);
    if (action === "stop") {
      // The error frame sent before the close (UNSUPPORTED_VERSION, BAD_FRAME…) says why.
      const fallback = code === CLOSE_CODES.NORMAL ? "CLOSED" : "CONNECTION_REFUSED";
      this.#stop(new NatterError(why?.code ?? fallback, why?.message ?? `the server closed the connection (${code}) and asks not to reconnect`, { temporary: false, closeCode: code }), code);
      return;
    }
    if (action === "refresh-token") {
      this.#refusedTokens++;
      if (typeof this.#opts.token !== "function" || this.#refusedTokens > 1) {
        this.#stop(new NatterError("UNAUTHENTICATED", "the server refused the token (close 4401)", { temporary: false, closeCode: code }), code);
        return;
      }
    }
    // Requests in flight may or may not have happened: their callers decide. Sends are resent.
    for (const [ref, f] of this.#inflight) {
      this.#inflight.delete(ref);
      if (f.kind === "request") {
        clearTimeout(f.req.timer);
        f.req.reject(new NatterError("DISCONNECTED", `the connection dropped before the reply to ${f.req.frame.type}; retry`, { temporary: true, closeCode: code }));
      }
    }
    if (badCursor) {
      // The server does not know our cursor (its inbox was wiped or replaced): start again at its
      // present end and tell the app, as for a reset.
      this.#resetReason = `the server did not know cursor ${this.#cursor}: ${why?.message ?? ""}`;
      this.#cursor = undefined;
      void Promise.resolve(this.#store.delete(this.#cursorKey())).catch(() => undefined);
      this.#reconnectLater(code, 0);
      return;
    }
    if (action === "refresh-token") {
      this.#tokenReason = "refresh";
      this.#reconnectLater(code, 0);
      return;
    }
    // The server said why before closing (UNAVAILABLE while it started this device, say).
    if (this.#serverError !== undefined && !this.#serverError.emitted) this.#emit("error", this.#serverError.error);
    if (code === CLOSE_CODES.GOING_AWAY) this.#attempt = 0;
    const minDelay = code === CLOSE_CODES.RATE_LIMITED ? 5_000 : undefined;
    this.#reconnectLater(code, undefined, minDelay);
  }

  #reconnectLater(closeCode: number | undefined, delayMs?: number, minDelayMs = 0): void {
    if (this.#state === "closed") return;
    // A connection that lasted a while starts the backoff over; one that keeps failing climbs.
    if (this.#openedAt > 0 && Date.now() - this.#openedAt > 5_000) this.#attempt = 0;
    this.#openedAt = 0;
    const delay = Math.max(minDelayMs, delayMs ?? backoffDelay(this.#attempt, this.#opts.backoff));
    this.#attempt++;
    this.#setState("reconnecting", { delayMs: delay, closeCode });
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = setTimeout(() => {
      if (this.#state !== "closed") void this.#open();
    }, delay);
  }

  /** Stops for good: everything pending rejects with `err`. */
  #stop(err: NatterError, closeCode: number | undefined): void {
    if (this.#state === "closed") return;
    clearTimeout(this.#reconnectTimer);
    clearTimeout(this.#sendTimer);
    this.#teardownSocket();
    for (const [ref, f] of this.#inflight) {
      this.#inflight.delete(ref);
      if (f.kind === "request") {
        clearTimeout(f.req.timer);
        f.req.reject(err);
      }
    }
    const pending = [...this.#queue];
    this.#queue = [];
    for (const r of pending) {
      clearTimeout(r.timer);
      r.reject(err);
    }
    for (const s of [...this.#outbox.values()]) {
      clearTimeout(s.deadline);
      s.reject(err);
    }
    this.#outbox.clear();
    const waiters = this.#connectWaiters;
    this.#connectWaiters = [];
    for (const w of waiters) w.reject(err);
    const byUser = err.code === "CLOSED" && closeCode === undefined;
    if (!byUser) this.#emit("error", err);
    this.#setState("closed", { closeCode, error: byUser ? undefined : err });
  }

  // ── frames ───────────────────────────────────────────────────────────────────────────────

  #onFrame(data: string): void {
    let f: ServerFrame;
    try {
      f = JSON.parse(data) as ServerFrame;
    } catch {
      return; // not JSON: nothing this version can use
    }
    if (typeof f !== "object" || f === null) return;
    this.#awaitingPong = false;
    switch (f.type) {
      case "welcome":
        return this.#onWelcome(f);
      case "msg":
        if (!this.#advance(f.cursor)) return;
        this.#emit("message", { conv: f.conv, id: f.id, from: f.from, device: f.device, cid: f.cid, text: f.text, ts: f.ts, cursor: f.cursor });
        return;
      case "members":
        if (!this.#advance(f.cursor)) return;
        this.#emit("membership", {
          conv: f.conv,
          id: f.id,
          action: f.action,
          user: f.user,
          by: f.by,
          members: f.members,
          name: f.name,
          owner: f.owner,
          ts: f.ts,
          cursor: f.cursor,
        });
        return;
      case "reset":
        this.#cursor = f.cursor;
        this.#saveCursor();
        this.#emit("reset", { cursor: f.cursor, reason: f.reason });
        return;
      default: {
        const ref = (f as { ref?: unknown }).ref;
        if (typeof ref === "string" && this.#inflight.has(ref)) return this.#onReply(ref, f);
        if (f.type === "error") {
          const e = errorFromFrame(f);
          this.#serverError = { error: e, emitted: this.#welcomed };
          if (this.#welcomed) this.#emit("error", e);
        }
        // pong without a ref, and frame types this version does not know: nothing to do.
      }
    }
  }

  /** Moves the cursor to `cursor` unless the item was already emitted (true when it is new). */
  #advance(cursor: number): boolean {
    if (this.#cursor !== undefined && cursor <= this.#cursor) return false;
    this.#cursor = cursor;
    this.#saveCursor();
    return true;
  }

  #onWelcome(f: Extract<ServerFrame, { type: "welcome" }>): void {
    if (f.user !== this.user) {
      const ws = this.#ws;
      this.#teardownSocket();
      ws?.close(CLOSE_CODES.NORMAL, "wrong user");
      this.#stop(new NatterError("CONNECTION_REFUSED", `the token is for user ${f.user}, not ${this.user}`, { temporary: false }), undefined);
      return;
    }
    clearTimeout(this.#handshakeTimer);
    this.#welcomed = true;
    this.#openedAt = Date.now();
    this.#tokenReason = "connect";
    this.#refusedTokens = 0;
    this.#serverError = undefined;
    if (this.#cursor === undefined) {
      // First connection of this device (or after BAD_CURSOR): delivery starts at the inbox's end.
      this.#cursor = f.cursor;
      this.#saveCursor();
    }
    // A server that tracks presence asks for a frame every heartbeatMs; a ping is one.
    const asked = this.#opts.pingIntervalMs ?? 20_000;
    const interval = f.heartbeatMs !== undefined && f.heartbeatMs > 0 ? (asked > 0 ? Math.min(asked, f.heartbeatMs) : f.heartbeatMs) : asked;
    if (interval > 0) {
      this.#awaitingPong = false;
      this.#pingTimer = setInterval(() => this.#ping(), interval);
    }
    const wasReconnect = this.#state === "reconnecting";
    this.#setState("open", { closeCode: wasReconnect ? this.#lastClose : undefined });
    if (this.#resetReason !== undefined) {
      const reason = this.#resetReason;
      this.#resetReason = undefined;
      this.#emit("reset", { cursor: f.cursor, reason });
    }
    const waiters = this.#connectWaiters;
    this.#connectWaiters = [];
    for (const w of waiters) w.resolve();
    const queued = this.#queue;
    this.#queue = [];
    for (const r of queued) this.#transmit(r);
    this.#pumpSends();
  }

  #ping(): void {
    const ws = this.#ws;
    if (ws === undefined || !this.#welcomed) return;
    if (this.#awaitingPong) {
      this.#drop(ws, "no answer to ping");
      return;
    }
    this.#awaitingPong = true;
    ws.send(JSON.stringify({ type: "ping" }));
  }

  #onReply(ref: string, f: ServerFrame): void {
    const entry = this.#inflight.get(ref)!;
    this.#inflight.delete(ref);
    if (entry.kind === "request") {
      clearTimeout(entry.req.timer);
      if (f.type === "error") entry.req.reject(errorFromFrame(f));
      else entry.req.resolve(f);
      return;
    }
    const s = this.#outbox.get(entry.cid);
    if (s === undefined || s.ref !== ref) return;
    s.ref = undefined;
    if (f.type === "ack") {
      this.#outbox.delete(s.cid);
      clearTimeout(s.deadline);
      s.resolve({ conv: f.conv, cid: f.cid, id: f.id, dup: f.dup });
    } else if (f.type === "error" && f.temporary) {
      // Rate limited or unavailable: the same cid later is safe.
      s.attempts++;
      s.retryAt = Date.now() + backoffDelay(s.attempts, this.#opts.backoff);
    } else {
      this.#outbox.delete(s.cid);
      clearTimeout(s.deadline);
      s.reject(f.type === "error" ? errorFromFrame(f) : new NatterError("INTERNAL", `unexpected reply ${f.type} to send`, { temporary: false }));
    }
    this.#pumpSends();
  }

  // ── cursor ───────────────────────────────────────────────────────────────────────────────

  #cursorKey(): string {
    return `${this.user}/${this.device}`;
  }

  /** Writes the newest cursor; writes never overlap, and the last one written is the newest. */
  #saveCursor(): void {
    this.#cursorDirty = true;
    if (this.#cursorWriting) return;
    this.#cursorWriting = true;
    void (async () => {
      try {
        while (this.#cursorDirty) {
          this.#cursorDirty = false;
          const c = this.#cursor;
          if (c === undefined) continue;
          await this.#store.set(this.#cursorKey(), c);
        }
      } catch (err) {
        this.#emit("error", new NatterError("INTERNAL", `the cursor store failed: ${(err as Error)?.message ?? String(err)}`, { temporary: true, cause: err }));
      } finally {
        this.#cursorWriting = false;
      }
    })();
  }

  // ── requests ─────────────────────────────────────────────────────────────────────────────

  #transmit(r: RequestEntry): void {
    const ref = `r${this.#nextRef++}`;
    this.#inflight.set(ref, { kind: "request", req: r });
    this.#ws!.send(JSON.stringify({ ...r.frame, ref }));
  }

  /** A request or send made before connect() connects (its own promise reports any failure). */
  #autoConnect(): void {
    if (this.#state === "idle") this.connect().catch(() => undefined);
  }

  #request(frame: DistributiveOmit<ClientFrame, "ref">): Promise<ServerFrame> {
    if (this.#state === "closed") return Promise.reject(this.#closedError());
    this.#autoConnect();
    return new Promise((resolve, reject) => {
      const timeout = this.#opts.requestTimeoutMs ?? 15_000;
      const r: RequestEntry = {
        frame,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#queue = this.#queue.filter((q) => q !== r);
          for (const [ref, f] of this.#inflight) if (f.kind === "request" && f.req === r) this.#inflight.delete(ref);
          reject(new NatterError("TIMEOUT", `no reply to ${frame.type} within ${timeout} ms`, { temporary: true }));
        }, timeout),
      };
      if (this.#welcomed && this.#ws !== undefined) this.#transmit(r);
      else this.#queue.push(r);
    });
  }

  async #conversation(frame: DistributiveOmit<ClientFrame, "ref">): Promise<Conversation> {
    const f = await this.#request(frame);
    if (f.type !== "conv") throw new NatterError("INTERNAL", `unexpected reply ${f.type} to ${frame.type}`, { temporary: false });
    return f.conv;
  }

  /** Opens (or finds) the 1:1 conversation with `peer`: the same one whichever side opens it. */
  openDm(peer: string): Promise<Conversation> {
    return this.#conversation({ type: "dm.open", peer });
  }

  /** Creates a group owned by this user with `members` besides them (at most 100 in all). */
  createGroup(name: string, members: string[] = []): Promise<Conversation> {
    return this.#conversation({ type: "group.create", name, members });
  }

  addMember(conv: string, user: string): Promise<Conversation> {
    return this.#conversation({ type: "group.add", conv, user });
  }

  removeMember(conv: string, user: string): Promise<Conversation> {
    return this.#conversation({ type: "group.remove", conv, user });
  }

  leaveGroup(conv: string): Promise<Conversation> {
    return this.#conversation({ type: "group.leave", conv });
  }

  /** The conversation with its current members (members only). */
  members(conv: string): Promise<Conversation> {
    return this.#conversation({ type: "members", conv });
  }

  /** Stored items of a conversation, newest first: `before` an id (omit for the newest), at most `limit` (1–100, default 50). */
  async history(conv: string, opts: { before?: number; limit?: number } = {}): Promise<HistoryItem[]> {
    const frame: DistributiveOmit<ClientFrame, "ref"> = { type: "history", conv, ...opts };
    const f = await this.#request(frame);
    if (f.type !== "history") throw new NatterError("INTERNAL", `unexpected reply ${f.type} to history`, { temporary: false });
    return f.messages;
  }

  /** One round trip to the edge. */
  async ping(): Promise<void> {
    await this.#request({ type: "ping" });
  }

  // ── sends ────────────────────────────────────────────────────────────────────────────────

  /**
   * Sends a text message. Resolves once the server stored it. The send survives reconnects: it
   * is resent with the same `cid` (pass your own to retry across restarts) until acknowledged,
   * for at most `sendTimeoutMs`; temporary errors (RATE_LIMITED, UNAVAILABLE…) are retried too.
   */
  send(conv: string, text: string, opts: { cid?: string } = {}): Promise<SendResult> {
    if (this.#state === "closed") return Promise.reject(this.#closedError());
    const cid = opts.cid ?? newClientId();
    const existing = this.#outbox.get(cid);
    if (existing !== undefined) return existing.promise;
    let resolve!: (r: SendResult) => void;
    let reject!: (e: NatterError) => void;
    const promise = new Promise<SendResult>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const timeout = this.#opts.sendTimeoutMs ?? 300_000;
    const entry: SendEntry = {
      conv,
      cid,
      text,
      promise,
      resolve,
      reject,
      ref: undefined,
      attempts: 0,
      retryAt: 0,
      deadline: setTimeout(() => {
        if (this.#outbox.get(cid) !== entry) return;
        this.#outbox.delete(cid);
        if (entry.ref !== undefined) this.#inflight.delete(entry.ref);
        reject(new NatterError("TIMEOUT", `send ${cid} was not acknowledged within ${timeout} ms`, { temporary: true }));
        this.#pumpSends();
      }, timeout),
    };
    this.#outbox.set(cid, entry);
    this.#autoConnect();
    this.#pumpSends();
    return promise;
  }

  /** Puts unsent sends on the wire, oldest first, at most `sendWindow` in flight. */
  #pumpSends(): void {
    clearTimeout(this.#sendTimer);
    this.#sendTimer = undefined;
    const ws = this.#ws;
    if (ws === undefined || !this.#welcomed || ws.readyState !== OPEN) return;
    const window = Math.max(1, this.#opts.sendWindow ?? 1);
    let inFlight = 0;
    for (const s of this.#outbox.values()) if (s.ref !== undefined) inFlight++;
    const now = Date.now();
    for (const s of this.#outbox.values()) {
      if (inFlight >= window) break;
      if (s.ref !== undefined) continue;
      if (s.retryAt > now) {
        // Keep the order: later sends wait behind one that is backing off.
        this.#sendTimer = setTimeout(() => this.#pumpSends(), s.retryAt - now);
        break;
      }
      const ref = `s${this.#nextRef++}`;
      s.ref = ref;
      this.#inflight.set(ref, { kind: "send", cid: s.cid });
      ws.send(JSON.stringify({ type: "send", ref, conv: s.conv, cid: s.cid, text: s.text }));
      inFlight++;
    }
  }
}
