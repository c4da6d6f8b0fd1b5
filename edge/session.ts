// One WebSocket connection of one device. Every frame is validated and authorized here.
//
// Delivery keeps one invariant: frames of type "msg" leave in inbox order, each exactly once,
// and `last` is the cursor of the newest one sent. On hello the device's live feed is attached
// first (buffering), then the inbox is replayed after the device's cursor, then the buffer is
// drained; a live item whose previous sequence is newer than `last` triggers a gap fill first.
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { WebSocket, RawData } from "ws";
import type { EdgeConfig } from "../config/index.ts";
import { CLOSE, NatterError, asNatterError, type CloseKind } from "../core/errors.ts";
import type { Logger, MistakeLog } from "../core/logger.ts";
import {
  inboxBounds,
  parseInboxEntry,
  publishMessage,
  readInbox,
  type Conversation,
  type ConversationDirectory,
  type InboxEntry,
  type Receipts,
  type Topology,
} from "../streams/index.ts";
import type { DeviceHandle, DevicePresence } from "../presence/index.ts";
import type { ImageService } from "../media/index.ts";
import type { ImageRef } from "../streams/messages.ts";
import { verifyToken, type TokenSettings } from "./auth.ts";
import type { LiveItem, UserFeeds } from "./feeds.ts";
import {
  ClientFrame,
  FrameError,
  HelloFrame,
  MAX_EARLY_FRAMES,
  PROTOCOL_VERSION,
  decodeFrame,
  validateFrame,
  TYPING_INTERVAL_MS,
  TYPING_TTL_MS,
  type HistoryReader,
  type PresenceView,
  type ServerFrame,
} from "./protocol.ts";
import type { TypingFeeds } from "./typing.ts";

/** A push subscription a device registers (the `push.register` frame without type and ref). */
export type PushTarget = { kind: "webpush"; endpoint: string; keys: { p256dh: string; auth: string } } | { kind: "webhook"; url: string };

/** Push subscriptions as a session uses them (absent when push.enabled is false). */
export interface SessionPush {
  /** The VAPID public key browsers subscribe with (GET /push/vapid-public-key). */
  vapidPublicKey: string;
  register(user: string, device: string, target: PushTarget): Promise<{ id: string; kind: PushTarget["kind"]; secret?: string | undefined }>;
  remove(user: string, id: string): Promise<boolean>;
}

/** Presence as a session uses it (absent when presence.enabled is false). */
export interface SessionPresence {
  /** This edge's connected devices: heartbeats become at most one KV write per TTL/2. */
  devices: DevicePresence;
  /** The presence of these users (no authorization: the session decides whom it may ask about). */
  lookup(users: readonly string[]): Promise<PresenceView[]>;
}

export interface SessionServices {
  js: JetStreamClient;
  jsm: JetStreamManager;
  directory: ConversationDirectory;
  feeds: UserFeeds;
  topology: Topology;
  edge: EdgeConfig;
  tokens: TokenSettings;
  history: HistoryReader;
  presence?: SessionPresence | undefined;
  /** Push subscriptions (`push.register`, `push.remove`); absent when push is off. */
  push?: SessionPush | undefined;
  /** Images attached to sends (absent: sends with images are refused). */
  images?: ImageService | undefined;
  /** Receipts, unread counts and the conversation list. */
  receipts: Receipts;
  typing: TypingFeeds;
  log: Logger;
  /** Client mistakes (bad frames, bad tokens): counted and logged at warn at most once per interval. */
  mistakes: MistakeLog;
}

class TokenBucket {
  #tokens: number;
  #at = Date.now();
  readonly #rate: number;
  readonly #burst: number;
  constructor(perSecond: number, burst: number) {
    this.#rate = perSecond;
    this.#burst = burst;
    this.#tokens = burst;
  }
  take(): boolean {
    const now = Date.now();
    this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#at) / 1000) * this.#rate);
    this.#at = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}

/** The frame a device receives for an inbox item. */
export function inboxFrame(seq: number, e: InboxEntry): ServerFrame {
  switch (e.type) {
    case "msg":
      return { type: "msg", cursor: seq, conv: e.conv, id: e.id, from: e.from, device: e.device, cid: e.cid, text: e.text, ts: e.ts, images: e.images };
    case "members":
      return { type: "members", cursor: seq, conv: e.conv, id: e.id, action: e.action, user: e.user, by: e.by, members: e.members, name: e.name, owner: e.owner, ts: e.ts };
    case "receipt":
      return { type: "receipt", cursor: seq, conv: e.conv, id: e.id, user: e.user, device: e.device, delivered: e.delivered, read: e.read, ts: e.ts };
    default: {
      const never: never = e;
      throw new NatterError("INTERNAL", `unknown inbox entry ${JSON.stringify(never)}`);
    }
  }
}

const MSG_ENTRY_PREFIX = '{"v":1,"type":"msg",';
const utf8 = new TextDecoder();

/**
 * The device frame of a live inbox item. A text message's frame is its inbox entry without `v`
 * and with the cursor, so it is spliced as text instead of parsed, validated and re-encoded for
 * every connected user (the fan-out wrote the entry from a validated event; edge/session.test.ts
 * checks both paths give the same frame). Anything else takes the parsing path.
 */
export function liveFrame(seq: number, data: Uint8Array): string {
  const text = utf8.decode(data);
  if (text.startsWith(MSG_ENTRY_PREFIX)) return `{"type":"msg","cursor":${seq},${text.slice(MSG_ENTRY_PREFIX.length)}`;
  return JSON.stringify(inboxFrame(seq, parseInboxEntry(data)));
}

export class DeviceSession {
  readonly #ws: WebSocket;
  readonly #s: SessionServices;
  #log: Logger;
  #state: "hello" | "starting" | "live" | "closed" = "hello";
  #user = "";
  #device = "";
  #last = 0;
  #pending: LiveItem[] = [];
  /** Frames that arrived after hello, before welcome: handled in order once the session is live. */
  #early: { buf: Buffer; isBinary: boolean }[] = [];
  #pumping = false;
  #detach: (() => void) | undefined;
  #presence: DeviceHandle | undefined;
  #detachTyping: (() => void) | undefined;
  /** When this device last sent a typing signal, per conversation. */
  readonly #typingAt = new Map<string, number>();
  readonly #helloTimer: NodeJS.Timeout;
  readonly #sends: TokenBucket;
  readonly #badFrames: TokenBucket;

  constructor(ws: WebSocket, services: SessionServices) {
    this.#ws = ws;
    this.#s = services;
    this.#log = services.log;
    this.#sends = new TokenBucket(services.edge.sendsPerSecond, services.edge.sendsPerSecond * 2);
    this.#badFrames = new TokenBucket(services.edge.badFramesPerMinute / 60, services.edge.badFramesPerMinute);
    this.#helloTimer = setTimeout(() => this.close("HELLO_TIMEOUT"), services.edge.helloTimeoutMs);
    ws.on("message", (data, isBinary) => this.#onFrame(data, isBinary));
    ws.on("close", () => this.#closed());
    ws.on("error", (err) => this.#log.debug({ err }, "socket error"));
  }

  get user(): string {
    return this.#user;
  }

  close(kind: CloseKind): void {
    if (this.#state === "closed") return;
    const c = CLOSE[kind];
    // A close that asks the device to reconnect keeps its presence key (no offline flicker).
    this.#closed(c.reconnect);
    this.#ws.close(c.code, c.reason);
  }

  #closed(reconnecting = false): void {
    this.#state = "closed";
    clearTimeout(this.#helloTimer);
    this.#detach?.();
    this.#detach = undefined;
    this.#detachTyping?.();
    this.#detachTyping = undefined;
    this.#presence?.release(reconnecting ? "keep" : "leave");
    this.#presence = undefined;
    this.#pending = [];
    this.#early = [];
  }

  #send(frame: ServerFrame): boolean {
    return this.#sendText(JSON.stringify(frame));
  }

  #sendText(text: string): boolean {
    if (this.#state === "closed") return false;
    // What this turn of the event loop wrote is held back by the cork, not by a slow reader.
    const buffered = this.#ws.bufferedAmount - this.#corkedBytes;
    if (buffered > this.#s.edge.maxBufferedBytes) {
      this.#log.info({ user: this.#user, device: this.#device, buffered }, "slow consumer closed");
      this.close("SLOW_CONSUMER");
      return false;
    }
    this.#cork();
    this.#corkedBytes += Buffer.byteLength(text);
    this.#ws.send(text);
    return true;
  }

  #corked = false;
  #corkedBytes = 0;

  /**
   * Frames sent in the same turn of the event loop leave in one write: under load a NATS read
   * delivers many items at once, and one syscall per frame was the edge's largest cost.
   */
  #cork(): void {
    if (this.#corked) return;
    const socket = (this.#ws as unknown as { _socket?: { cork(): void; uncork(): void; destroyed?: boolean } })._socket;
    if (!socket) return;
    this.#corked = true;
    socket.cork();
    setImmediate(() => {
      this.#corked = false;
      this.#corkedBytes = 0;
      if (!socket.destroyed) socket.uncork();
    });
  }

  #sendError(err: unknown, ref?: string): void {
    const e = asNatterError(err);
    if (e.code === "INTERNAL" || e.code === "UNAVAILABLE" || e.code === "TIMEOUT") {
      this.#log.error({ err: e.cause ?? e, user: this.#user, device: this.#device }, e.message);
    }
    this.#send({ type: "error", ref, ...e.toClient() });
  }

  #onFrame(data: RawData, isBinary: boolean): void {
    if (this.#state === "closed") return;
    const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
    switch (this.#state) {
      case "hello":
        void this.#hello(buf, isBinary);
        return;
      case "starting":
        // Frames pipelined right behind hello wait for the session: nothing runs unauthenticated.
        if (this.#early.length >= MAX_EARLY_FRAMES) {
          this.#s.mistakes.note("RATE_LIMITED");
          this.#send({ type: "error", ...new NatterError("RATE_LIMITED", `at most ${MAX_EARLY_FRAMES} frames may wait for welcome`).toClient() });
          return;
        }
        this.#early.push({ buf, isBinary });
        return;
      case "live":
        this.#presence?.beat(); // any frame is a heartbeat
        void this.#frame(buf, isBinary);
        return;
    }
  }

  async #frame(buf: Buffer, isBinary: boolean): Promise<void> {
    let ref: string | undefined;
    try {
      const raw = decodeFrame(buf, isBinary, this.#s.edge.maxPayloadBytes);
      ref = raw.ref;
      if (raw.type === "hello") throw new NatterError("ALREADY_HELLO");
      await this.#handle(validateFrame(ClientFrame, raw));
    } catch (err) {
      const e = asNatterError(err);
      if (e.status === 400 || e.status === 413) {
        this.#s.mistakes.note(e.code);
        if (!this.#badFrames.take()) {
          this.close("RATE_LIMITED");
          return;
        }
      }
      this.#sendError(e, err instanceof FrameError ? err.ref : ref);
    }
  }

  /** The first frame: a valid hello, or an error and close 4400 (4426 for another version). */
  async #hello(buf: Buffer, isBinary: boolean): Promise<void> {
    let hello: HelloFrame;
    try {
      const raw = decodeFrame(buf, isBinary, this.#s.edge.maxPayloadBytes);
      if (raw.type !== "hello") throw new NatterError("NOT_HELLO");
      hello = validateFrame(HelloFrame, raw, "hello.");
    } catch (err) {
      const e = asNatterError(err);
      this.#s.mistakes.note(e.code);
      this.#send({ type: "error", ...e.toClient() });
      this.close("BAD_HANDSHAKE");
      return;
    }
    if (hello.v !== PROTOCOL_VERSION) {
      this.#s.mistakes.note("UNSUPPORTED_VERSION");
      this.#send({ type: "error", ...new NatterError("UNSUPPORTED_VERSION", `this server speaks protocol v${PROTOCOL_VERSION}`).toClient() });
      this.close("UNSUPPORTED_VERSION");
      return;
    }
    this.#state = "starting";
    clearTimeout(this.#helloTimer);
    let user: string;
    try {
      user = await verifyToken(this.#s.tokens, hello.token);
    } catch {
      this.#s.mistakes.note("UNAUTHENTICATED");
      this.close("UNAUTHORIZED");
      return;
    }
    if (this.#state !== "starting") return;
    this.#user = user;
    this.#device = hello.device;
    this.#log = this.#s.log.child({ user, device: hello.device });
    // Typing signals are ephemeral: only those arriving while the device is live are sent.
    this.#detachTyping = this.#s.typing.attach(user, (t) => {
      if (this.#state === "live") this.#send({ type: "typing", conv: t.conv, user: t.user, ttlMs: t.ttlMs });
    });
    try {
      await this.#start(hello.cursor);
    } catch (err) {
      this.#sendError(err);
      this.close(asNatterError(err).temporary ? "UNAVAILABLE" : "BAD_HANDSHAKE");
    }
  }

  async #start(cursor: number | undefined): Promise<void> {
    const { feeds, jsm, topology } = this.#s;
    this.#detach = feeds.attach(
      this.#user,
      (item) => {
        this.#pending.push(item);
        if (this.#state === "live") void this.#pump();
      },
      (entry) => {
        if (this.#state === "live") this.#send({ type: "presence", users: [entry] });
      },
    );
    await feeds.flush();
    const bounds = await inboxBounds(jsm, topology, this.#user);
    // The newest position a device of this user can hold: its newest item, or just before the
    // stream's oldest retained item when that is later (a position no expiry can invalidate).
    const head = Math.max(bounds.lastSeq, bounds.firstSeq - 1);
    if (cursor !== undefined && cursor > head) {
      throw new NatterError("BAD_CURSOR", `cursor ${cursor} was never issued to this user (inbox head ${head})`);
    }
    if (cursor === undefined) {
      this.#last = head;
      this.#welcome(this.#last);
    } else if (cursor < bounds.firstSeq - 1) {
      // Items after the cursor may have expired: never replay partially; the device reloads its
      // conversations from history.
      this.#last = head;
      this.#welcome(cursor);
      this.#send({ type: "reset", cursor: this.#last, reason: "cursor is older than the inbox retention; reload conversations from history" });
    } else {
      this.#last = cursor;
      this.#welcome(cursor);
      await this.#replay(bounds.lastSeq);
    }
    if (this.#state !== "starting") return;
    this.#state = "live";
    this.#presence = this.#s.presence?.devices.connect(this.#user, this.#device);
    this.#log.debug({ cursor: this.#last }, "device live");
    const early = this.#early;
    this.#early = [];
    for (const f of early) void this.#frame(f.buf, f.isBinary);
    await this.#pump();
  }

  #welcome(cursor: number): void {
    const heartbeatMs = this.#s.presence?.devices.heartbeatMs;
    this.#send({ type: "welcome", v: PROTOCOL_VERSION, user: this.#user, device: this.#device, cursor, ...(heartbeatMs ? { heartbeatMs } : {}) });
  }

  /** Sends inbox items after `last` up to `until`, waiting for the socket to drain as needed. */
  async #replay(until: number): Promise<void> {
    for await (const item of readInbox(this.#s.jsm, this.#s.topology, this.#user, this.#last, until)) {
      if (this.#state === "closed") return;
      await this.#drain();
      this.#deliver(item.seq, item.entry);
    }
  }

  async #drain(): Promise<void> {
    const limit = this.#s.edge.maxBufferedBytes / 2;
    const deadline = Date.now() + 10_000;
    while (this.#ws.bufferedAmount > limit && this.#state !== "closed") {
      if (Date.now() > deadline) {
        this.close("SLOW_CONSUMER");
        return;
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  #deliver(seq: number, e: InboxEntry): void {
    if (seq <= this.#last) return;
    if (this.#sendText(JSON.stringify(inboxFrame(seq, e)))) this.#last = seq;
  }

  /** A live item is encoded once for all devices of its user on this edge (the frame is the same). */
  #deliverLive(item: LiveItem): void {
    if (item.seq <= this.#last) return;
    item.frame ??= liveFrame(item.seq, item.data);
    if (this.#sendText(item.frame)) this.#last = item.seq;
  }

  #conv(ref: string | undefined, c: Conversation): void {
    this.#send({ type: "conv", ref, conv: { id: c.id, kind: c.kind, members: c.members, name: c.name, owner: c.owner } });
  }

  async #pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      while (this.#pending.length > 0 && this.#state === "live") {
        const item = this.#pending.shift()!;
        if (item.seq <= this.#last) continue;
        if (item.prev > this.#last) await this.#replay(item.seq - 1);
        if (this.#state !== "live") return;
        this.#deliverLive(item);
      }
    } catch (err) {
      this.#log.warn({ err }, "delivery failed; closing so the device resumes from its cursor");
      this.close("UNAVAILABLE");
    } finally {
      this.#pumping = false;
    }
  }

  async #handle(f: ClientFrame): Promise<void> {
    switch (f.type) {
      case "ping":
        this.#send({ type: "pong", ref: f.ref });
        return;
      case "dm.open":
        return this.#conv(f.ref, await this.#s.directory.openDm(this.#user, f.peer));
      case "group.create":
        return this.#conv(f.ref, await this.#s.directory.createGroup(this.#user, f.name, f.members));
      case "group.add":
        return this.#conv(f.ref, await this.#s.directory.addMember(f.conv, this.#user, f.user));
      case "group.remove":
        return this.#conv(f.ref, await this.#s.directory.removeMember(f.conv, this.#user, f.user));
      case "group.leave":
        return this.#conv(f.ref, await this.#s.directory.removeMember(f.conv, this.#user, this.#user));
      case "members":
        return this.#conv(f.ref, await this.#s.directory.requireMember(f.conv, this.#user));
      case "send": {
        if ([...f.text].length > this.#s.edge.maxTextChars) {
          throw new NatterError("TEXT_TOO_LARGE", `text exceeds ${this.#s.edge.maxTextChars} characters`);
        }
        if (!this.#sends.take()) throw new NatterError("RATE_LIMITED", "too many sends; retry later with the same cid");
        await this.#s.directory.requireMember(f.conv, this.#user);
        // Attached (recorded as shared in this conversation) before the message exists: no
        // recipient ever sees an image it may not fetch.
        let images: ImageRef[] | undefined;
        if (f.images !== undefined && f.images.length > 0) {
          if (!this.#s.images) throw new NatterError("BAD_FRAME", "images: this edge does not take images");
          images = await this.#s.images.attach(this.#user, f.conv, f.images);
        }
        const r = await publishMessage(this.#s.js, this.#s.topology, {
          conv: f.conv,
          from: this.#user,
          device: this.#device,
          cid: f.cid,
          text: f.text,
          images,
        });
        this.#send({ type: "ack", ref: f.ref, conv: f.conv, cid: f.cid, id: r.id, dup: r.duplicate });
        return;
      }
      case "presence": {
        if ((f.users === undefined) === (f.conv === undefined)) throw new NatterError("BAD_FRAME", "presence: give either users or conv");
        let ask: string[];
        if (f.conv !== undefined) {
          // Co-members of a conversation: fetched when asked, never pushed.
          const conv = await this.#s.directory.requireMember(f.conv, this.#user);
          ask = conv.members.filter((m) => m !== this.#user);
        } else {
          // Contacts only; anyone else is left out of the answer (no hint whether they exist).
          const contacts = await this.#s.directory.contactsAmong(this.#user, f.users ?? []);
          ask = [...new Set(f.users)].filter((u) => contacts.has(u));
        }
        const users = this.#s.presence ? await this.#s.presence.lookup(ask) : [];
        this.#send({ type: "presence", ref: f.ref, users });
        return;
      }
      case "receipt": {
        if (f.read === undefined && f.delivered === undefined) throw new NatterError("BAD_FRAME", "receipt: give read, delivered or both");
        // A receipt is a stored event fanned out to every member: it counts as a send.
        if (!this.#sends.take()) throw new NatterError("RATE_LIMITED", "too many receipts; retry later");
        const r = await this.#s.receipts.mark({ conv: f.conv, user: this.#user, device: this.#device, read: f.read, delivered: f.delivered });
        this.#send({ type: "receipt", ref: f.ref, conv: r.conv, id: r.id, user: r.user, delivered: r.delivered, read: r.read });
        return;
      }
      case "receipts": {
        const receipts = await this.#s.receipts.ofMembers(f.conv, this.#user);
        this.#send({ type: "receipts", ref: f.ref, conv: f.conv, receipts });
        return;
      }
      case "convs": {
        const convs = await this.#s.receipts.conversations(this.#user);
        this.#send({ type: "convs", ref: f.ref, convs });
        return;
      }
      case "typing": {
        const now = Date.now();
        const last = this.#typingAt.get(f.conv);
        if (last !== undefined && now - last < TYPING_INTERVAL_MS) {
          throw new NatterError("RATE_LIMITED", `one typing signal per conversation every ${TYPING_INTERVAL_MS} ms`);
        }
        if (this.#typingAt.size >= 64) for (const [c, at] of this.#typingAt) if (now - at >= TYPING_INTERVAL_MS) this.#typingAt.delete(c);
        this.#typingAt.set(f.conv, now); // before the await: a second frame meanwhile is limited too
        let conv: Conversation;
        try {
          conv = await this.#s.directory.requireMember(f.conv, this.#user);
        } catch (err) {
          if (this.#typingAt.get(f.conv) === now) this.#typingAt.delete(f.conv);
          throw err;
        }
        const others = conv.members.filter((m) => m !== this.#user);
        this.#s.typing.publish(others, { conv: f.conv, user: this.#user, ttlMs: TYPING_TTL_MS });
        this.#send({ type: "typing", ref: f.ref, conv: f.conv, user: this.#user, ttlMs: TYPING_TTL_MS });
        return;
      }
      case "push.register": {
        if (!this.#s.push) throw new NatterError("PUSH_DISABLED");
        // A stored write: it counts as a send.
        if (!this.#sends.take()) throw new NatterError("RATE_LIMITED", "too many requests; retry later");
        const target: PushTarget = f.kind === "webpush" ? { kind: "webpush", endpoint: f.endpoint, keys: f.keys } : { kind: "webhook", url: f.url };
        const r = await this.#s.push.register(this.#user, this.#device, target);
        this.#send({ type: "push.registered", ref: f.ref, id: r.id, kind: r.kind, ...(r.secret !== undefined ? { secret: r.secret } : {}) });
        return;
      }
      case "push.remove": {
        if (!this.#s.push) throw new NatterError("PUSH_DISABLED");
        const removed = await this.#s.push.remove(this.#user, f.id);
        this.#send({ type: "push.removed", ref: f.ref, id: f.id, removed });
        return;
      }
      case "history": {
        await this.#s.directory.requireMember(f.conv, this.#user);
        const messages = await this.#s.history(f.conv, { before: f.before, limit: f.limit });
        this.#send({ type: "history", ref: f.ref, conv: f.conv, messages });
        return;
      }
      default: {
        const never: never = f;
        throw new NatterError("UNKNOWN_TYPE", `unhandled frame ${JSON.stringify(never)}`);
      }
    }
  }
}
