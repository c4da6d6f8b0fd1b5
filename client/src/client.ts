// NatterClient: one device's connection to natter over the WebSocket protocol v1. The public
// class is a façade: it holds no state of its own, wires the parts below and routes the
// server's frames to them.
//
// It keeps three promises through any number of reconnects:
// - every inbox item is emitted once, in order: the client resumes from the cursor of the last
//   item it emitted (kept in a CursorStore), and the server replays what came after it (inbox.ts);
// - every send is stored once: a send keeps its client id (cid) until it is acknowledged and is
//   resent with it after a reconnect, which the server deduplicates (outbox.ts);
// - a request rejects with a NatterError carrying the server's code and `temporary` flag
//   (requests.ts).
// The socket's life — handshake, ping, reconnect with backoff, what each close code means — is
// connection.ts; which edge each attempt goes to, with the `discovery` option, discovery.ts;
// receipts.ts, presence.ts, typing.ts, push.ts and http.ts hold the rest.
import { Connection } from "./connection.js";
import { MemoryCursorStore } from "./cursor-store.js";
import { EdgeDirectory, type EdgeInfo } from "./discovery.js";
import { Emitter, type ConnectionState, type Listener, type NatterEventName } from "./events.js";
import { EdgeHttp } from "./http.js";
import { Inbox } from "./inbox.js";
import type { NatterClientOptions, WebSocketConstructor } from "./options.js";
import { Outbox, type SendResult } from "./outbox.js";
import { PresenceCache } from "./presence.js";
import type { Conversation, ConversationSummary, HistoryItem, ImageRef, PresenceEntry, PushTarget, ReceiptState, ServerFrame } from "./protocol.js";
import { pushRegisterFrame, type PushRegistration, type WebPushSubscriptionLike } from "./push.js";
import { Receipts } from "./receipts.js";
import { expectReply, Requests, type RequestFrame } from "./requests.js";
import { TypingSignals } from "./typing.js";

export class NatterClient {
  readonly user: string;
  readonly device: string;
  readonly #events = new Emitter();
  readonly #connection: Connection;
  readonly #inbox: Inbox;
  readonly #requests: Requests;
  readonly #outbox: Outbox;
  readonly #receipts: Receipts;
  readonly #presence = new PresenceCache();
  readonly #typing: TypingSignals;
  readonly #http: EdgeHttp;
  /** With the `discovery` option: the edges the attempts go through. */
  readonly #edges: EdgeDirectory | undefined;

  constructor(opts: NatterClientOptions) {
    this.user = opts.user;
    this.device = opts.device;
    const Socket = opts.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (Socket === undefined) {
      throw new TypeError("NatterClient: no WebSocket implementation here; in Node 20 pass { WebSocket } from the `ws` package");
    }
    if ((opts.url === undefined) === (opts.discovery === undefined)) {
      throw new TypeError("NatterClient: give either `url` or `discovery` (one of them, not both)");
    }
    const edges = opts.discovery !== undefined ? new EdgeDirectory(opts.discovery, this.#events) : undefined;
    this.#edges = edges;
    // Without discovery, `url` is the edge (or names it before every attempt).
    const url = edges !== undefined ? () => edges.next() : opts.url!;
    this.#inbox = new Inbox(opts.cursorStore ?? new MemoryCursorStore(), `${opts.user}/${opts.device}`, this.#events);
    this.#connection = new Connection({ ...opts, url }, Socket, { user: opts.user, device: opts.device }, this.#events, {
      tokenUsed: (token) => (this.#http.token = token),
      prepare: () => this.#inbox.load(),
      resumeFrom: () => this.#inbox.cursor,
      welcomed: (f) => {
        // Revs are compared within a connection: the app asks for the current state after each welcome,
        // and a server whose presence bucket was recreated counts revs from 1 again.
        this.#presence.clear();
        // First connection of this device (or after BAD_CURSOR): delivery starts at the inbox's end.
        this.#inbox.welcomed(f.cursor);
      },
      opened: (f) => {
        this.#inbox.opened(f.cursor);
        this.#requests.flush();
        this.#outbox.pump();
      },
      renewToken: async (token) => {
        expectReply(await this.#requests.request({ type: "token", token }), "token");
      },
      awaitsReply: (ref) => this.#awaitsReply(ref),
      frame: (f) => this.#onFrame(f),
      ended: (code, welcomed) => edges?.ended(code, welcomed),
      cursorRefused: (message) => this.#inbox.refused(message),
      dropped: (closeCode) => {
        this.#outbox.requeue();
        this.#requests.disconnected(closeCode);
      },
      stopped: (err) => {
        this.#requests.stopped(err);
        this.#outbox.stopped(err);
      },
    });
    // One counter numbers the refs of requests (`r…`) and of send attempts (`s…`).
    let ref = 1;
    const nextRef = () => ref++;
    this.#requests = new Requests(this.#connection, opts, nextRef);
    this.#outbox = new Outbox(this.#connection, opts, nextRef);
    const request = (frame: RequestFrame) => this.#requests.request(frame);
    this.#receipts = new Receipts(opts.user, this.#connection, request);
    this.#typing = new TypingSignals(this.#connection, request);
    // HTTP (images) goes to the URL that last answered discovery: with the page's own origin as the
    // bootstrap, no request is cross-origin.
    this.#http = new EdgeHttp({ url: edges !== undefined ? () => edges.httpBase : url, token: opts.token }, this.#connection);
  }

  get state(): ConnectionState {
    return this.#connection.state;
  }

  /** The inbox position of the last item emitted (undefined before the first connection). */
  get cursor(): number | undefined {
    return this.#inbox.cursor;
  }

  /**
   * The edge of the current connection (or of the last attempt, while reconnecting): its URL, and
   * its id and region when discovery named it. Undefined before the first attempt chose one.
   */
  get edge(): EdgeInfo | undefined {
    const url = this.#connection.edge;
    if (url === undefined) return undefined;
    const named = this.#edges?.current;
    return named !== undefined && named.url === url ? { url, id: named.id, region: named.region } : { url };
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

  // ── connection ───────────────────────────────────────────────────────────────────────────

  /**
   * Connects (once; later calls wait for the same connection). Resolves when the server has
   * welcomed this device; rejects when the client stops for good (a refused token, a bad
   * handshake, `close()`), or after `timeoutMs` if given (the client keeps trying). A request or
   * send made before connect() connects too.
   */
  connect(opts: { timeoutMs?: number } = {}): Promise<void> {
    return this.#connection.connect(opts);
  }

  /** Closes the connection for good: pending sends and requests reject with CLOSED. */
  close(): void {
    this.#edges?.close();
    this.#connection.close();
  }

  // ── frames ───────────────────────────────────────────────────────────────────────────────

  /** A frame from the server (the connection keeps the welcome and error frames that answer nothing). */
  #onFrame(f: ServerFrame): void {
    switch (f.type) {
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
        this.#events.emit("typing", { conv: f.conv, user: f.user, ttlMs: f.ttlMs, expiresAt: Date.now() + f.ttlMs });
        return;
      case "presence":
        if (this.#awaitsReply(f.ref)) return this.#reply(f.ref, f);
        if (f.ref !== undefined || !Array.isArray(f.users)) return;
        for (const e of f.users) {
          const entry = this.#presence.note(e);
          if (entry !== undefined) this.#events.emit("presence", entry);
        }
        return;
      default: {
        const ref = (f as { ref?: unknown }).ref;
        if (this.#awaitsReply(ref)) return this.#reply(ref, f);
        // pong without a ref, and frame types this version does not know: nothing to do.
      }
    }
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

  async #conversation(frame: RequestFrame): Promise<Conversation> {
    return expectReply(await this.#requests.request(frame), "conv", frame.type).conv;
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
    return expectReply(await this.#requests.request({ type: "history", conv, ...opts }), "history").messages;
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
    const f = expectReply(await this.#requests.request({ type: "convs" }), "convs");
    for (const c of f.convs) this.#receipts.learn(c.id, c.delivered, c.read);
    return f.convs;
  }

  /** Every current member's receipts in `conv` (members only), e.g. to show "seen" after a reload. */
  async receipts(conv: string): Promise<ReceiptState[]> {
    const f = expectReply(await this.#requests.request({ type: "receipts", conv }), "receipts");
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
    const f = expectReply(await this.#requests.request(frame), "presence");
    return f.users.map((e) => this.#presence.newest(e));
  }

  /**
   * Registers a push subscription of this user (all of their devices share it): pushes go to it for
   * messages that arrive while none of their devices is online. Web Push: pass the browser's
   * PushSubscription (or its `toJSON()`, or `{ kind: "webpush", endpoint, keys }`), subscribed
   * with the key of GET /push/vapid-public-key. Webhook: `{ kind: "webhook", url }`; keep the
   * `secret` of the answer, sent only now, to check the requests' signatures. Apps: `{ kind: "fcm",
   * token }` (FCM registration token) or `{ kind: "apns", token }` (APNs device token, hex), when
   * the server has their credentials (else PUSH_DISABLED). Registering the same target again
   * replaces it (same id, a new secret). Refusals are typed: PUSH_TARGET_REFUSED (not https, or not
   * a public host), PUSH_SUBSCRIPTIONS_FULL, PUSH_DISABLED, BAD_FRAME (a malformed token).
   */
  async registerPush(target: PushTarget | WebPushSubscriptionLike): Promise<PushRegistration> {
    // async: a target that is not a subscription rejects (BAD_FRAME) rather than throwing here.
    const f = expectReply(await this.#requests.request(pushRegisterFrame(target)), "push.registered", "push.register");
    return { id: f.id, kind: f.kind, ...(f.secret !== undefined ? { secret: f.secret } : {}) };
  }

  /** Removes one of this user's push subscriptions: false when there was no such subscription. */
  async removePush(id: string): Promise<boolean> {
    return expectReply(await this.#requests.request({ type: "push.remove", id }), "push.removed", "push.remove").removed;
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
