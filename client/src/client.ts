// NatterClient: one device's connection to natter over the WebSocket protocol v1.
//
// It keeps three promises through any number of reconnects:
// - every inbox item is emitted once, in order: the client resumes from the cursor of the last
//   item it emitted (kept in a CursorStore), and the server replays what came after it;
// - every send is stored once: a send keeps its client id (cid) until it is acknowledged and is
//   resent with it after a reconnect, which the server deduplicates;
// - a request rejects with a NatterError carrying the server's code and `temporary` flag.
import { backoffDelay } from "./backoff.js";
import { MemoryCursorStore } from "./cursor-store.js";
import { closeAction, type Wire } from "./connection.js";
import { closedError, errorFromFrame, NatterError } from "./errors.js";
import { Emitter, type ConnectionState, type Listener, type NatterEventName, type NatterEvents, type StateChange } from "./events.js";
import type { NatterClientOptions, WebSocketConstructor, WebSocketLike } from "./options.js";
import { EdgeHttp } from "./http.js";
import { Inbox } from "./inbox.js";
import { Outbox, type SendResult } from "./outbox.js";
import { PresenceCache } from "./presence.js";
import {
  CLOSE_CODES,
  PROTOCOL_VERSION,
  type ClientFrame,
  type Conversation,
  type ConversationSummary,
  type HistoryItem,
  type ImageRef,
  type PresenceEntry,
  type PushTarget,
  type ReceiptState,
  type ServerFrame,
} from "./protocol.js";
import { pushRegisterFrame, type PushRegistration, type WebPushSubscriptionLike } from "./push.js";
import { Receipts } from "./receipts.js";
import { Requests, type RequestFrame } from "./requests.js";
import { TypingSignals } from "./typing.js";
import { toWebSocketUrl } from "./util.js";

export class NatterClient {
  readonly user: string;
  readonly device: string;
  readonly #opts: NatterClientOptions;
  readonly #Socket: WebSocketConstructor;
  readonly #events = new Emitter();

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
  #lastClose: number | undefined;

  readonly #inbox: Inbox;
  readonly #requests: Requests;
  readonly #outbox: Outbox;
  readonly #receipts: Receipts;
  readonly #presence = new PresenceCache();
  readonly #typing: TypingSignals;
  readonly #http: EdgeHttp;
  #connectWaiters: { resolve: () => void; reject: (e: NatterError) => void }[] = [];

  constructor(opts: NatterClientOptions) {
    this.#opts = opts;
    this.user = opts.user;
    this.device = opts.device;
    this.#inbox = new Inbox(opts.cursorStore ?? new MemoryCursorStore(), `${opts.user}/${opts.device}`, this.#events);
    const Socket = opts.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (Socket === undefined) {
      throw new TypeError("NatterClient: no WebSocket implementation here; in Node 20 pass { WebSocket } from the `ws` package");
    }
    this.#Socket = Socket;
    const client = this;
    const wire: Wire = {
      get state() {
        return client.#state;
      },
      get socket() {
        return client.#welcomed ? client.#ws : undefined;
      },
      autoConnect: () => this.#autoConnect(),
    };
    let ref = 1;
    const nextRef = () => ref++;
    this.#requests = new Requests(wire, opts, nextRef);
    this.#outbox = new Outbox(wire, opts, nextRef);
    const request = (frame: RequestFrame) => this.#requests.request(frame);
    this.#receipts = new Receipts(opts.user, wire, request);
    this.#typing = new TypingSignals(wire, request);
    this.#http = new EdgeHttp(opts, wire);
  }

  get state(): ConnectionState {
    return this.#state;
  }

  /** The inbox position of the last item emitted (undefined before the first connection). */
  get cursor(): number | undefined {
    return this.#inbox.cursor;
  }

  /** Sends not yet acknowledged (they are resent after a reconnect). */
  get pendingSends(): number {
    return this.#outbox.size;
  }

  // ── events ────────────────────────────────────────────────────────────────────────────────

  /** Adds a listener; returns a function that removes it. */
  on<K extends NatterEventName>(type: K, listener: Listener<K>): () => void {
    this.#events.on(type, listener);
    return () => this.off(type, listener);
  }

  off<K extends NatterEventName>(type: K, listener: Listener<K>): void {
    this.#events.off(type, listener);
  }

  #emit<K extends NatterEventName>(type: K, event: NatterEvents[K]): void {
    this.#events.emit(type, event);
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
    this.#stop(closedError(), undefined);
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
      this.#http.token = token;
      const loading = this.#inbox.load();
      if (loading !== undefined) await loading;
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
      const cursor = this.#inbox.cursor;
      if (cursor !== undefined) hello.cursor = cursor;
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
    this.#outbox.requeue();
    this.#requests.disconnected(code);
    if (badCursor) {
      // The server does not know our cursor (its inbox was wiped or replaced): start again at its
      // present end and tell the app, as for a reset.
      this.#inbox.refused(why?.message ?? "");
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
    this.#teardownSocket();
    this.#requests.stopped(err);
    this.#outbox.stopped(err);
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
        return this.#inbox.message(f);
      case "members":
        return this.#inbox.membership(f);
      case "reset":
        return this.#inbox.reset(f);
      case "receipt": {
        if (this.#awaitsReply(f.ref)) return this.#reply(f.ref, f);
        const cursor = f.cursor;
        if (cursor !== undefined) this.#inbox.deliver(cursor, "receipt", () => this.#receipts.item(f, cursor));
        return;
      }
      case "typing":
        if (this.#awaitsReply(f.ref)) return this.#reply(f.ref, f);
        if (typeof f.ttlMs !== "number" || f.ref !== undefined) return;
        this.#emit("typing", { conv: f.conv, user: f.user, ttlMs: f.ttlMs, expiresAt: Date.now() + f.ttlMs });
        return;
      case "presence":
        if (this.#awaitsReply(f.ref)) return this.#reply(f.ref, f);
        if (f.ref !== undefined || !Array.isArray(f.users)) return;
        for (const e of f.users) {
          const entry = this.#presence.note(e);
          if (entry !== undefined) this.#emit("presence", entry);
        }
        return;
      default: {
        const ref = (f as { ref?: unknown }).ref;
        if (this.#awaitsReply(ref)) return this.#reply(ref, f);
        if (f.type === "error") {
          const e = errorFromFrame(f);
          this.#serverError = { error: e, emitted: this.#welcomed };
          if (this.#welcomed) this.#emit("error", e);
        }
        // pong without a ref, and frame types this version does not know: nothing to do.
      }
    }
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
    // Revs are compared within a connection: the app asks for the current state after each welcome,
    // and a server whose presence bucket was recreated counts revs from 1 again.
    this.#presence.clear();
    // First connection of this device (or after BAD_CURSOR): delivery starts at the inbox's end.
    this.#inbox.welcomed(f.cursor);
    // A server that tracks presence asks for a frame every heartbeatMs; a ping is one.
    const asked = this.#opts.pingIntervalMs ?? 20_000;
    const interval = f.heartbeatMs !== undefined && f.heartbeatMs > 0 ? (asked > 0 ? Math.min(asked, f.heartbeatMs) : f.heartbeatMs) : asked;
    if (interval > 0) {
      this.#awaitingPong = false;
      this.#pingTimer = setInterval(() => this.#ping(), interval);
    }
    const wasReconnect = this.#state === "reconnecting";
    this.#setState("open", { closeCode: wasReconnect ? this.#lastClose : undefined });
    this.#inbox.opened(f.cursor);
    const waiters = this.#connectWaiters;
    this.#connectWaiters = [];
    for (const w of waiters) w.resolve();
    this.#requests.flush();
    this.#outbox.pump();
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

  /** True when `ref` is the ref of a request or a send waiting for its reply. */
  #awaitsReply(ref: unknown): ref is string {
    return this.#requests.has(ref) || this.#outbox.has(ref);
  }

  #reply(ref: string, f: ServerFrame): void {
    if (this.#requests.has(ref)) this.#requests.reply(ref, f);
    else this.#outbox.reply(ref, f);
  }

  // ── requests ─────────────────────────────────────────────────────────────────────────────

  /** A request or send made before connect() connects (its own promise reports any failure). */
  #autoConnect(): void {
    if (this.#state === "idle") this.connect().catch(() => undefined);
  }

  async #conversation(frame: RequestFrame): Promise<Conversation> {
    const f = await this.#requests.request(frame);
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
    const frame: RequestFrame = { type: "history", conv, ...opts };
    const f = await this.#requests.request(frame);
    if (f.type !== "history") throw new NatterError("INTERNAL", `unexpected reply ${f.type} to history`, { temporary: false });
    return f.messages;
  }

  /** One round trip to the edge. */
  async ping(): Promise<void> {
    await this.#requests.request({ type: "ping" });
  }

  // ── receipts, conversations, typing ──────────────────────────────────────────────────────

  /**
   * This user's conversations, newest activity first, each with its members, last message, this
   * user's receipts and unread count (computed by the server: messages from others after `read`).
   */
  async conversations(): Promise<ConversationSummary[]> {
    const f = await this.#requests.request({ type: "convs" });
    if (f.type !== "convs") throw new NatterError("INTERNAL", `unexpected reply ${f.type} to convs`, { temporary: false });
    for (const c of f.convs) this.#receipts.learn(c.id, c.delivered, c.read);
    return f.convs;
  }

  /** Every current member's receipts in `conv` (members only), e.g. to show "seen" after a reload. */
  async receipts(conv: string): Promise<ReceiptState[]> {
    const f = await this.#requests.request({ type: "receipts", conv });
    if (f.type !== "receipts") throw new NatterError("INTERNAL", `unexpected reply ${f.type} to receipts`, { temporary: false });
    const mine = f.receipts.find((r) => r.user === this.user);
    if (mine !== undefined) this.#receipts.learn(conv, mine.delivered, mine.read);
    return f.receipts;
  }

  /**
   * Marks every event of `conv` up to `id` read (and delivered) for this user on all of their
   * devices; the other members see it. Never moves backwards; calls made while one is in flight are
   * merged into one request, and a call already covered sends nothing. Resolves with the state.
   */
  markRead(conv: string, id: number): Promise<ReceiptState> {
    return this.#receipts.mark(conv, { delivered: id, read: id });
  }

  /** Marks every event of `conv` up to `id` delivered to this user (see markRead). */
  markDelivered(conv: string, id: number): Promise<ReceiptState> {
    return this.#receipts.mark(conv, { delivered: id, read: 0 });
  }

  /**
   * Tells the other members of `conv` that this user is typing. Call it on every keystroke: it
   * sends at most one signal per conversation every 3 s, and none while disconnected (typing is
   * ephemeral: never queued, never stored). The others show it for the server's `ttlMs` (5 s).
   */
  async typing(conv: string): Promise<void> {
    return this.#typing.typing(conv);
  }

  // ── presence, push ───────────────────────────────────────────────────────────────────────

  /**
   * The presence of `users` (at most 100; only this user's contacts are answered, anyone else is
   * left out) or of every other member of `conv` (members only). Ask after each `open` and after
   * `openDm`, then follow the `presence` event. When a live change crossed the reply, the newer
   * entry (higher `rev`) is the one returned.
   */
  async presence(query: { users: readonly string[] } | { conv: string }): Promise<PresenceEntry[]> {
    // The server refuses an empty list (BAD_FRAME); asking about no one has a plain answer.
    if ("users" in query && query.users.length === 0) return [];
    const frame: RequestFrame = "conv" in query ? { type: "presence", conv: query.conv } : { type: "presence", users: [...query.users] };
    const f = await this.#requests.request(frame);
    if (f.type !== "presence") throw new NatterError("INTERNAL", `unexpected reply ${f.type} to presence`, { temporary: false });
    return f.users.map((e) => this.#presence.newest(e));
  }

  /**
   * Registers a push subscription of this user (all of their devices share it): pushes go to it for
   * messages that arrive while none of their devices is online. Web Push: pass the browser's
   * PushSubscription (or its `toJSON()`, or `{ kind: "webpush", endpoint, keys }`), subscribed
   * with the key of GET /push/vapid-public-key. Webhook: `{ kind: "webhook", url }`; keep the
   * `secret` of the answer, sent only now, to check the requests' signatures. Registering the same
   * target again replaces it (same id, a new secret). Refusals are typed: PUSH_TARGET_REFUSED (not
   * https, or not a public host), PUSH_SUBSCRIPTIONS_FULL, PUSH_DISABLED.
   */
  async registerPush(target: PushTarget | WebPushSubscriptionLike): Promise<PushRegistration> {
    const f = await this.#requests.request(pushRegisterFrame(target));
    if (f.type !== "push.registered") throw new NatterError("INTERNAL", `unexpected reply ${f.type} to push.register`, { temporary: false });
    return { id: f.id, kind: f.kind, ...(f.secret !== undefined ? { secret: f.secret } : {}) };
  }

  /** Removes one of this user's push subscriptions: false when there was no such subscription. */
  async removePush(id: string): Promise<boolean> {
    const f = await this.#requests.request({ type: "push.remove", id });
    if (f.type !== "push.removed") throw new NatterError("INTERNAL", `unexpected reply ${f.type} to push.remove`, { temporary: false });
    return f.removed;
  }

  // ── images ───────────────────────────────────────────────────────────────────────────────

  /**
   * Uploads one image (JPEG, PNG, WebP or GIF) and resolves with its reference; attach it with
   * `send(conv, text, { images: [ref] })`. The server checks the bytes, strips metadata (EXIF
   * location included) and makes a thumbnail; it refuses other files with typed errors
   * (IMAGE_TYPE_REFUSED, IMAGE_TOO_LARGE, …). An upload never attached is removed after a while.
   */
  async uploadImage(data: Blob | ArrayBuffer | Uint8Array, contentType?: string): Promise<ImageRef> {
    return this.#http.uploadImage(data, contentType);
  }

  /** An image's bytes (`thumb`: its thumbnail), if this user may see it; IMAGE_NOT_FOUND otherwise. */
  async fetchImage(id: string, variant: "full" | "thumb" = "full"): Promise<Blob> {
    return this.#http.fetchImage(id, variant);
  }

  // ── sends ────────────────────────────────────────────────────────────────────────────────

  /**
   * Sends a text message. Resolves once the server stored it. The send survives reconnects: it
   * is resent with the same `cid` (pass your own to retry across restarts) until acknowledged,
   * for at most `sendTimeoutMs`; temporary errors (RATE_LIMITED, UNAVAILABLE…) are retried too.
   */
  send(conv: string, text: string, opts: { cid?: string; images?: readonly (string | ImageRef)[] } = {}): Promise<SendResult> {
    return this.#outbox.send(conv, text, opts);
  }
}
