// The socket's life (long, ≈410 lines: one state machine of one socket; queues, requests, the
// inbox and discovery are in their own files). Before every attempt it asks for the URL and a token; it says hello with the
// cursor and gives up on an attempt not welcomed within handshakeTimeoutMs; while open, a ping
// finds a connection that stopped answering, and when the server says the token expired it asks
// for a fresh one and sends it on the socket. After a close its code decides: reconnect with
// jittered backoff, refresh the token first, or stop for good. What the rest of the client does
// at each step (load the cursor, put queued work on the wire, reject or resend what was in
// flight) it is told through ConnectionHooks; what requests and sends need of it is Wire.
import { backoffDelay } from "./backoff.js";
import { closedError, errorFromFrame, NatterError } from "./errors.js";
import type { ConnectionState, Emitter, StateChange } from "./events.js";
import type { NatterClientOptions, WebSocketConstructor, WebSocketLike } from "./options.js";
import { CLOSE_CODES, PROTOCOL_VERSION, type ClientFrame, type ServerFrame } from "./protocol.js";
import { toWebSocketUrl } from "./util.js";

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

/** What requests and sends need of the connection. */
export interface Wire {
  readonly state: ConnectionState;
  /** The socket once the server has welcomed this device on it; undefined before, and when closed. */
  readonly socket: WebSocketLike | undefined;
  /** Connects if nothing did yet: a request or send made before connect() (its own promise reports any failure). */
  autoConnect(): void;
}

export type WelcomeFrame = Extract<ServerFrame, { type: "welcome" }>;

/** What the connection asks of the rest of the client, in the order of a connection's life. */
export interface ConnectionHooks {
  /** The token of this attempt (HTTP requests reuse it). */
  tokenUsed(token: string): void;
  /** Work the hello waits for (reading the stored cursor), or undefined when there is none. */
  prepare(): Promise<void> | undefined;
  /** The cursor the hello resumes from. */
  resumeFrom(): number | undefined;
  /** The server welcomed this device; the state is not `open` yet. */
  welcomed(f: WelcomeFrame): void;
  /** `open` was announced and connect() resolved: put what waited on the wire. */
  opened(f: WelcomeFrame): void;
  /** Sends a fresh token on the open socket (a `token` request); rejects with the server's refusal. */
  renewToken(token: string): Promise<void>;
  /** Whether `ref` is the ref of a request or send waiting for its reply. */
  awaitsReply(ref: unknown): boolean;
  /** Every frame but the welcome and error frames that answer nothing. */
  frame(f: ServerFrame): void;
  /** The socket of an attempt closed with `code` (`welcomed`: after the server's welcome), before what follows is decided. */
  ended(code: number, welcomed: boolean): void;
  /** The server did not know the cursor (BAD_CURSOR): the next hello goes without one. */
  cursorRefused(message: string): void;
  /** The connection dropped and another attempt follows: what was on the wire is rejected or resent. */
  dropped(closeCode: number): void;
  /** The client stopped for good: everything pending rejects with `err`. */
  stopped(err: NatterError): void;
}

export type ConnectionOptions = Pick<NatterClientOptions, "token" | "backoff" | "pingIntervalMs" | "handshakeTimeoutMs"> & {
  /** The edge, or a function asked before every attempt (discovery). */
  url: string | (() => string | Promise<string>);
};

export class Connection implements Wire {
  readonly #opts: ConnectionOptions;
  readonly #Socket: WebSocketConstructor;
  readonly #user: string;
  readonly #device: string;
  readonly #events: Emitter;
  readonly #hooks: ConnectionHooks;

  #state: ConnectionState = "idle";
  #ws: WebSocketLike | undefined;
  /** Bumped for every socket; callbacks of older sockets are ignored. */
  #gen = 0;
  #welcomed = false;
  #openedAt = 0;
  #attempt = 0;
  /** The edge (as the url option or function gave it) of the current or last attempt. */
  #edge: string | undefined;
  #reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  #handshakeTimer: ReturnType<typeof setTimeout> | undefined;
  #pingTimer: ReturnType<typeof setInterval> | undefined;
  #awaitingPong = false;
  #tokenReason: "connect" | "refresh" = "connect";
  #refusedTokens = 0;
  /** The last error frame without a ref on this socket: why the server is about to close it. */
  #serverError: { error: NatterError; emitted: boolean } | undefined;
  #lastClose: number | undefined;
  #connectWaiters: { resolve: () => void; reject: (e: NatterError) => void }[] = [];

  constructor(opts: ConnectionOptions, Socket: WebSocketConstructor, who: { user: string; device: string }, events: Emitter, hooks: ConnectionHooks) {
    this.#opts = opts;
    this.#Socket = Socket;
    this.#user = who.user;
    this.#device = who.device;
    this.#events = events;
    this.#hooks = hooks;
  }

  get state(): ConnectionState {
    return this.#state;
  }

  /** The edge of the current or last attempt (undefined before one chose it). */
  get edge(): string | undefined {
    return this.#edge;
  }

  get socket(): WebSocketLike | undefined {
    return this.#welcomed ? this.#ws : undefined;
  }

  autoConnect(): void {
    if (this.#state === "idle") this.connect().catch(() => undefined);
  }

  connect(opts: { timeoutMs?: number } = {}): Promise<void> {
    if (this.#state === "closed") return Promise.reject(closedError());
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

  close(): void {
    if (this.#state === "closed") return;
    const ws = this.#ws;
    this.#teardownSocket();
    try {
      ws?.close(CLOSE_CODES.NORMAL, "bye");
    } catch {
      // already closing
    }
    this.#stop(closedError(), undefined);
  }

  #setState(state: ConnectionState, extra: Partial<StateChange> = {}): void {
    const previous = this.#state;
    this.#state = state;
    this.#events.emit("state", { state, previous, attempt: this.#attempt, edge: this.#edge, ...extra });
  }

  async #open(): Promise<void> {
    const gen = ++this.#gen;
    this.#serverError = undefined;
    let url: string;
    let token: string;
    try {
      const raw = typeof this.#opts.url === "function" ? await this.#opts.url() : this.#opts.url;
      url = toWebSocketUrl(raw);
      this.#edge = raw;
      token = typeof this.#opts.token === "function" ? await this.#opts.token(this.#tokenReason) : this.#opts.token;
      this.#hooks.tokenUsed(token);
      const preparing = this.#hooks.prepare();
      if (preparing !== undefined) await preparing;
    } catch (err) {
      if (gen !== this.#gen || this.#state === "closed") return;
      const e = err instanceof NatterError ? err : new NatterError("UNAVAILABLE", `could not prepare a connection: ${(err as Error)?.message ?? String(err)}`, { temporary: true, cause: err });
      this.#events.emit("error", e);
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
      const hello: Extract<ClientFrame, { type: "hello" }> = { type: "hello", v: PROTOCOL_VERSION, token, device: this.#device };
      const cursor = this.#hooks.resumeFrom();
      if (cursor !== undefined) hello.cursor = cursor;
      ws.send(JSON.stringify(hello));
    };
    ws.onmessage = (ev: { data: unknown }) => {
      if (gen !== this.#gen) return;
      this.#onMessage(typeof ev.data === "string" ? ev.data : String(ev.data));
    };
    ws.onerror = () => {
      // A close event follows; its code decides what happens.
    };
    ws.onclose = (ev: { code: number; reason?: string }) => {
      if (gen !== this.#gen) return;
      this.#disconnected(ev.code);
    };
  }

  #onMessage(data: string): void {
    let f: ServerFrame;
    try {
      f = JSON.parse(data) as ServerFrame;
    } catch {
      return; // not JSON: nothing this version can use
    }
    if (typeof f !== "object" || f === null) return;
    this.#awaitingPong = false;
    if (f.type === "welcome") return this.#onWelcome(f);
    if (f.type === "token.expired") return void this.#renewToken();
    if (f.type === "error" && !this.#hooks.awaitsReply(f.ref)) {
      // Not an answer: why the server is about to close the socket, or a problem to report.
      const e = errorFromFrame(f);
      this.#serverError = { error: e, emitted: this.#welcomed };
      if (this.#welcomed) this.#events.emit("error", e);
      return;
    }
    this.#hooks.frame(f);
  }

  #onWelcome(f: WelcomeFrame): void {
    if (f.user !== this.#user) {
      const ws = this.#ws;
      this.#teardownSocket();
      ws?.close(CLOSE_CODES.NORMAL, "wrong user");
      this.#stop(new NatterError("CONNECTION_REFUSED", `the token is for user ${f.user}, not ${this.#user}`, { temporary: false }), undefined);
      return;
    }
    clearTimeout(this.#handshakeTimer);
    this.#welcomed = true;
    this.#openedAt = Date.now();
    this.#tokenReason = "connect";
    this.#refusedTokens = 0;
    this.#serverError = undefined;
    this.#hooks.welcomed(f);
    // A server that tracks presence asks for a frame every heartbeatMs; a ping is one.
    const asked = this.#opts.pingIntervalMs ?? 20_000;
    const interval = f.heartbeatMs !== undefined && f.heartbeatMs > 0 ? (asked > 0 ? Math.min(asked, f.heartbeatMs) : f.heartbeatMs) : asked;
    if (interval > 0) {
      this.#awaitingPong = false;
      this.#pingTimer = setInterval(() => this.#ping(), interval);
    }
    const wasReconnect = this.#state === "reconnecting";
    this.#setState("open", { closeCode: wasReconnect ? this.#lastClose : undefined });
    const waiters = this.#connectWaiters;
    this.#connectWaiters = [];
    for (const w of waiters) w.resolve();
    this.#hooks.opened(f);
  }

  /**
   * The server says this socket's token expired: a fresh one from the provider (reason
   * `refresh`) goes on the socket within the server's grace. Without a provider, or when the
   * server refuses it, the error is reported and the server's close (4401) follows; the
   * reconnect then asks the provider again.
   */
  async #renewToken(): Promise<void> {
    const gen = this.#gen;
    const provider = this.#opts.token;
    if (typeof provider !== "function") {
      this.#events.emit("error", new NatterError("UNAUTHENTICATED", "the token expired and there is no token provider to ask for a fresh one", { temporary: false }));
      return;
    }
    try {
      const token = await provider("refresh");
      if (gen !== this.#gen || this.#state === "closed") return;
      this.#hooks.tokenUsed(token);
      await this.#hooks.renewToken(token);
    } catch (err) {
      if (gen !== this.#gen || this.#state === "closed") return;
      const e = err instanceof NatterError ? err : new NatterError("UNAUTHENTICATED", `could not renew the token: ${(err as Error)?.message ?? String(err)}`, { temporary: false, cause: err });
      this.#events.emit("error", e);
    }
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
    if (this.#state === "closed") return;
    // #openedAt is set at welcome and cleared before every next attempt.
    this.#hooks.ended(code, this.#openedAt > 0);

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
    this.#hooks.dropped(code);
    if (badCursor) {
      // The server does not know our cursor (its inbox was wiped or replaced): start again at its
      // present end and tell the app, as for a reset.
      this.#hooks.cursorRefused(why?.message ?? "");
      this.#reconnectLater(code, 0);
      return;
    }
    if (action === "refresh-token") {
      this.#tokenReason = "refresh";
      this.#reconnectLater(code, 0);
      return;
    }
    // The server said why before closing (UNAVAILABLE while it started this device, say).
    if (this.#serverError !== undefined && !this.#serverError.emitted) this.#events.emit("error", this.#serverError.error);
    if (code === CLOSE_CODES.GOING_AWAY) this.#attempt = 0;
    // A busy or full edge says when to come back (jittered, so a crowd does not return at once).
    const minDelay = Math.max(code === CLOSE_CODES.RATE_LIMITED ? 5_000 : 0, why?.retryAfterMs ?? 0);
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
    this.#teardownSocket();
    this.#hooks.stopped(err);
    const waiters = this.#connectWaiters;
    this.#connectWaiters = [];
    for (const w of waiters) w.reject(err);
    const byUser = err.code === "CLOSED" && closeCode === undefined;
    if (!byUser) this.#events.emit("error", err);
    this.#setState("closed", { closeCode, error: byUser ? undefined : err });
  }
}
