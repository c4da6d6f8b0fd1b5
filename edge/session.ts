// One WebSocket connection of one device: the handshake, the delivery of its inbox, and the
// dispatch of its frames to the handlers (handlers.ts), which authorize each one.
// Long (≈500 lines): one class whose states share private fields (cursor, buffers, the token's
// deadline); the handlers, frame encoding, limits and admission already live in their own files.
//
// Delivery keeps one invariant: frames for inbox items leave in inbox order, each exactly once,
// and `last` is the cursor of the newest one sent. On hello the device's live feed is attached
// first (buffering), then the inbox is replayed after the device's cursor, then the buffer is
// drained; a live item whose previous sequence is newer than `last` triggers a gap fill first.
//
// States: hello (waiting for the first frame) → starting (waiting for a hello slot, token
// verified, catching up; frames that arrive wait) → live → closed. Nothing a client sends runs
// before the session is live.
//
// Limits (limits.ts, admission.ts): a hello waits in line for one of the edge's hello slots or is
// told when to retry; a user past `edge.maxConnectionsPerUser` is refused; every frame holds one of the
// socket's in-flight slots (frames waiting for welcome included) and is charged to its user's
// budget before it runs.
//
// The token lives as long as the socket: at its `exp` (or auth.maxTokenAgeSec after its `iat`)
// the device is told `token.expired` and has auth.expiryGraceSec to send a fresh token of the
// same user (`token` frame), else the socket is closed 4401; a revocation of the user's tokens
// closes it 4401 at once.
import type { WebSocket, RawData } from "ws";
import { asNatterError, CLOSE, type CloseKind, type Logger, NatterError } from "../core/index.ts";
import type { DeviceHandle } from "../presence/index.ts";
import { decodePrev } from "../streams/index.ts";
import { authenticate, type TokenClaims, tokenDeadlineMs } from "./auth.ts";
import type { LiveItem } from "./feeds.ts";
import { liveFrame } from "./frames.ts";
import { handleFrame, type FrameContext } from "./handlers.ts";
import { SocketLimits } from "./limits.ts";
import { revoked } from "./revocations.ts";
import { ClientFrame, FrameError, HelloFrame, PROTOCOL_VERSION, decodeFrame, validateFrame, type ServerFrame } from "./protocol.ts";
import type { SessionServices } from "./services.ts";

/** The part of a `ws` WebSocket a session uses (unit tests fake it). */
export type SessionSocket = Pick<WebSocket, "on" | "send" | "close" | "bufferedAmount">;

/** How long a replay waits for a full socket buffer to drain before closing the socket 4409. */
const DRAIN_DEADLINE_MS = 10_000;
/** The longest delay setTimeout keeps (a longer one fires at once): later expiries are re-armed. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A user refused for too many connections may try again after about this long (jittered). */
const TOO_MANY_CONNECTIONS_RETRY_MS = 30_000;

export class DeviceSession implements FrameContext {
  readonly #ws: SessionSocket;
  readonly services: SessionServices;
  readonly limits: SocketLimits;
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
  /** Set while this socket's user is counted in the edge's budgets. */
  #budgeted = false;
  #onHelloDone: (() => void) | undefined;
  readonly #helloTimer: NodeJS.Timeout;
  /** The token the socket runs on, and the timers of its expiry and of the grace after it. */
  #claims: TokenClaims | undefined;
  #expiryTimer: NodeJS.Timeout | undefined;
  #graceTimer: NodeJS.Timeout | undefined;

  /** `onHelloDone`: called once, when the first frame arrives or the socket closes before it. */
  constructor(ws: SessionSocket, services: SessionServices, onHelloDone?: () => void) {
    this.#ws = ws;
    this.services = services;
    this.#log = services.log;
    this.#onHelloDone = onHelloDone;
    this.limits = new SocketLimits(services.edge);
    this.#helloTimer = setTimeout(() => this.close("HELLO_TIMEOUT"), services.edge.helloTimeoutMs);
    ws.on("message", (data: RawData, isBinary: boolean) => this.#onFrame(data, isBinary));
    ws.on("close", () => this.#closed());
    ws.on("error", (err: Error) => this.#log.debug({ err }, "socket error"));
  }

  get user(): string {
    return this.#user;
  }

  get device(): string {
    return this.#device;
  }

  /** The cursor of the newest inbox item sent to the device. */
  get cursor(): number {
    return this.#last;
  }

  get state(): "hello" | "starting" | "live" | "closed" {
    return this.#state;
  }

  close(kind: CloseKind): void {
    if (this.#state === "closed") return;
    const c = CLOSE[kind];
    // A close that asks the device to reconnect keeps its presence key (no offline flicker).
    this.#closed(c.reconnect);
    this.#ws.close(c.code, c.reason);
  }

  #helloDone(): void {
    this.#onHelloDone?.();
    this.#onHelloDone = undefined;
  }

  #closed(reconnecting = false): void {
    if (this.#state === "closed") return;
    this.#state = "closed";
    this.#helloDone();
    clearTimeout(this.#helloTimer);
    clearTimeout(this.#expiryTimer);
    clearTimeout(this.#graceTimer);
    if (this.#budgeted) this.services.budgets.detach(this.#user);
    this.#budgeted = false;
    this.#detach?.();
    this.#detach = undefined;
    this.#detachTyping?.();
    this.#detachTyping = undefined;
    this.#presence?.release(reconnecting ? "keep" : "leave");
    this.#presence = undefined;
    this.#pending = [];
    this.#early = [];
  }

  reply(frame: ServerFrame): void {
    this.#sendText(JSON.stringify(frame));
  }

  /** Sends one text frame (a string, or its UTF-8 bytes); false when the socket is gone or too slow. */
  #sendText(text: string | Buffer): boolean {
    if (this.#state === "closed") return false;
    // What this turn of the event loop wrote is held back by the cork, not by a slow reader.
    const buffered = this.#ws.bufferedAmount - this.#corkedBytes;
    if (buffered > this.services.edge.maxBufferedBytes) {
      this.#log.info({ user: this.#user, device: this.#device, buffered }, "slow consumer closed");
      this.close("SLOW_CONSUMER");
      return false;
    }
    if (this.#cork()) this.#corkedBytes += typeof text === "string" ? Buffer.byteLength(text) : text.length;
    if (typeof text === "string") this.#ws.send(text);
    else this.#ws.send(text, { binary: false });
    return true;
  }

  #corked = false;
  #corkedBytes = 0;

  /**
   * Frames sent in the same turn of the event loop leave in one write: under load a NATS read
   * delivers many items at once, and one syscall per frame was the edge's largest cost.
   */
  #cork(): boolean {
    if (this.#corked) return true;
    const socket = (this.#ws as unknown as { _socket?: { cork(): void; uncork(): void; destroyed?: boolean } })._socket;
    if (!socket) return false;
    this.#corked = true;
    socket.cork();
    setImmediate(() => {
      this.#corked = false;
      this.#corkedBytes = 0;
      if (!socket.destroyed) socket.uncork();
    });
    return true;
  }

  /**
   * An error frame. INTERNAL (a bug) is logged at error with its cause; UNAVAILABLE and TIMEOUT
   * (NATS or the store slow or away: every client can meet them at once) are counted and logged
   * at warn at most once per interval.
   */
  #sendError(err: unknown, ref?: string): void {
    const e = asNatterError(err);
    if (e.code === "INTERNAL") this.#log.error({ err: e.cause ?? e, user: this.#user, device: this.#device }, e.message);
    else if (e.code === "UNAVAILABLE" || e.code === "TIMEOUT") this.services.failures.note(`${e.code}: ${e.message}`, e.cause ?? e);
    this.reply({ type: "error", ref, ...e.toClient() });
  }

  #onFrame(data: RawData, isBinary: boolean): void {
    if (this.#state === "closed") return;
    const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
    switch (this.#state) {
      case "hello":
        void this.#hello(buf, isBinary);
        return;
      case "starting":
        // Frames pipelined right behind hello wait for the session (nothing runs unauthenticated),
        // each holding an in-flight slot.
        try {
          this.limits.start();
        } catch (err) {
          this.services.mistakes.note("RATE_LIMITED");
          this.#sendError(err, this.#refOf(buf, isBinary));
          return;
        }
        this.#early.push({ buf, isBinary });
        return;
      case "live":
        this.#presence?.beat(); // any frame is a heartbeat
        this.#admit(buf, isBinary);
        return;
    }
  }

  /** The `ref` of a frame refused before it was handled, when it has a usable one. */
  #refOf(buf: Buffer, isBinary: boolean): string | undefined {
    try {
      return decodeFrame(buf, isBinary, this.services.edge.maxPayloadBytes).ref;
    } catch (err) {
      return err instanceof FrameError ? err.ref : undefined;
    }
  }

  /** A frame on a live socket: handled when an in-flight slot is free, else refused. */
  #admit(buf: Buffer, isBinary: boolean): void {
    try {
      this.limits.start();
    } catch (err) {
      this.#sendError(err, this.#refOf(buf, isBinary));
      return;
    }
    void this.#frame(buf, isBinary);
  }

  /** Handles one frame that holds an in-flight slot, and frees the slot. */
  async #frame(buf: Buffer, isBinary: boolean): Promise<void> {
    let ref: string | undefined;
    try {
      const raw = decodeFrame(buf, isBinary, this.services.edge.maxPayloadBytes);
      ref = raw.ref;
      if (raw.type === "hello") throw new NatterError("ALREADY_HELLO");
      const frame = validateFrame(ClientFrame, raw);
      this.services.budgets.charge(this.#user, frame.type);
      await handleFrame(this, frame);
    } catch (err) {
      const e = asNatterError(err);
      if (e.status === 400 || e.status === 413) {
        this.services.mistakes.note(e.code);
        if (!this.limits.badFrame()) {
          this.close("RATE_LIMITED");
          return;
        }
      }
      this.#sendError(e, err instanceof FrameError ? err.ref : ref);
    } finally {
      this.limits.done();
    }
  }

  /** The first frame: a valid hello, or an error and close 4400 (4426 for another version). */
  async #hello(buf: Buffer, isBinary: boolean): Promise<void> {
    this.#helloDone();
    let hello: HelloFrame;
    try {
      const raw = decodeFrame(buf, isBinary, this.services.edge.maxPayloadBytes);
      if (raw.type !== "hello") throw new NatterError("NOT_HELLO");
      hello = validateFrame(HelloFrame, raw, "hello.");
    } catch (err) {
      const e = asNatterError(err);
      this.services.mistakes.note(e.code);
      this.reply({ type: "error", ...e.toClient() });
      this.close("BAD_HANDSHAKE");
      return;
    }
    if (hello.v !== PROTOCOL_VERSION) {
      this.services.mistakes.note("UNSUPPORTED_VERSION");
      this.reply({ type: "error", ...new NatterError("UNSUPPORTED_VERSION", `this server speaks protocol v${PROTOCOL_VERSION}`).toClient() });
      this.close("UNSUPPORTED_VERSION");
      return;
    }
    clearTimeout(this.#helloTimer);
    // Frames behind the hello wait (in flight) while it waits for a slot, as while it is handled.
    this.#state = "starting";
    const slot = await this.services.hellos.startHello(() => this.#state === "closed");
    if (!("end" in slot)) {
      this.#refuse(new NatterError("UNAVAILABLE", slot.message, { retryAfterMs: slot.retryAfterMs }));
      return;
    }
    try {
      if (this.#state === "starting") await this.#handshake(hello);
    } finally {
      slot.end();
    }
  }

  /** Tells the client why and when to come back, and closes 4503. */
  #refuse(err: NatterError): void {
    this.reply({ type: "error", ...err.toClient() });
    this.close("UNAVAILABLE");
  }

  async #handshake(hello: HelloFrame): Promise<void> {
    let claims: TokenClaims;
    try {
      claims = await authenticate(this.services.tokens, this.services.revocations, hello.token);
      if (this.services.revocations.revokedNow(claims)) throw revoked();
    } catch (err) {
      if (this.#state !== "starting") return;
      const e = asNatterError(err);
      if (e.code !== "UNAUTHENTICATED") {
        // The revocations could not be read: the device retries later.
        this.#sendError(e);
        this.close("UNAVAILABLE");
        return;
      }
      this.services.mistakes.note("UNAUTHENTICATED");
      this.close("UNAUTHORIZED");
      return;
    }
    if (this.#state !== "starting") return;
    const user = claims.user;
    this.#useToken(claims);
    this.#user = user;
    this.#device = hello.device;
    this.#log = this.services.log.child({ user, device: hello.device });
    try {
      if (!(await this.#admitUser())) return;
      // Typing signals are ephemeral: only those arriving while the device is live are sent.
      this.#detachTyping = this.services.typing.attach(user, (t) => {
        if (this.#state === "live") this.reply({ type: "typing", conv: t.conv, user: t.user, ttlMs: t.ttlMs });
      });
      await this.#start(hello.cursor);
    } catch (err) {
      this.#sendError(err);
      this.close(asNatterError(err).temporary ? "UNAVAILABLE" : "BAD_HANDSHAKE");
    }
  }

  /**
   * Counts this connection against `edge.maxConnectionsPerUser` — the user's sockets on this edge,
   * and its devices online elsewhere (presence) — and joins the user's budget, shared by all its
   * devices. False when refused (the socket is closed).
   */
  async #admitUser(): Promise<boolean> {
    const { budgets, presence, edge } = this.services;
    const devices = presence ? await presence.onlineDevices(this.#user) : [];
    if (this.#state !== "starting") return false;
    const others = devices.filter((d) => d !== this.#device).length;
    const connections = Math.max(budgets.sockets(this.#user), others);
    if (connections >= edge.maxConnectionsPerUser) {
      const base = TOO_MANY_CONNECTIONS_RETRY_MS;
      const retryAfterMs = Math.round(base / 2 + Math.random() * base);
      this.services.hellos.refused("TOO_MANY_CONNECTIONS");
      this.#refuse(new NatterError("TOO_MANY_CONNECTIONS", `at most ${edge.maxConnectionsPerUser} connections per user; close another device or try again later`, { retryAfterMs }));
      return false;
    }
    budgets.attach(this.#user, others + 1);
    this.#budgeted = true;
    return true;
  }

  async #start(cursor: number | undefined): Promise<void> {
    const { feeds, inbox } = this.services;
    this.#detach = feeds.attach(
      this.#user,
      (item) => {
        this.#pending.push(item);
        if (this.#state === "live") void this.#pump();
      },
      (entry) => {
        if (this.#state === "live") this.reply({ type: "presence", users: [entry] });
      },
      (count) => this.services.budgets.devices(this.#user, count),
    );
    await feeds.flush();
    const bounds = await inbox.bounds(this.#user);
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
      this.reply({ type: "reset", cursor: this.#last, reason: "cursor is older than the inbox retention; reload conversations from history" });
    } else {
      this.#last = cursor;
      this.#welcome(cursor);
      await this.#replay(bounds.lastSeq);
    }
    if (this.#state !== "starting") return;
    this.#state = "live";
    this.#presence = this.services.presence?.devices.connect(this.#user, this.#device);
    this.#log.debug({ cursor: this.#last }, "device live");
    const early = this.#early;
    this.#early = [];
    for (const f of early) void this.#frame(f.buf, f.isBinary); // each already holds its slot
    await this.#pump();
  }

  /** Runs on `claims` from now on: its expiry is armed, a previous one's timers are dropped. */
  #useToken(claims: TokenClaims): void {
    this.#claims = claims;
    clearTimeout(this.#expiryTimer);
    clearTimeout(this.#graceTimer);
    this.#graceTimer = undefined;
    const at = tokenDeadlineMs(this.services.tokens, claims);
    const arm = () => {
      const wait = at - Date.now();
      this.#expiryTimer = wait > MAX_TIMER_MS ? setTimeout(arm, MAX_TIMER_MS) : setTimeout(() => this.#tokenExpired(), Math.max(0, wait));
    };
    arm();
  }

  /** The token expired: the device is told, and closed 4401 unless a fresh one comes within the grace. */
  #tokenExpired(): void {
    if (this.#state === "closed") return;
    const graceMs = this.services.tokens.expiryGraceSec * 1000;
    this.reply({ type: "token.expired", graceMs });
    this.#graceTimer = setTimeout(() => {
      this.reply({ type: "error", ...new NatterError("UNAUTHENTICATED", "the token expired and no fresh one came within the grace").toClient() });
      this.close("UNAUTHORIZED");
    }, graceMs);
  }

  async renewToken(token: string): Promise<TokenClaims> {
    const claims = await authenticate(this.services.tokens, this.services.revocations, token);
    if (claims.user !== this.#user) throw new NatterError("UNAUTHENTICATED", "the token is for another user: the socket keeps its token");
    if (this.services.revocations.revokedNow(claims)) throw revoked();
    if (this.#state !== "closed") this.#useToken(claims);
    return claims;
  }

  /** The user's tokens issued before `notBefore` were revoked: closes 4401 if this socket runs on one. */
  revoke(notBefore: number): void {
    if (this.#state === "closed" || this.#claims === undefined || this.#claims.iat >= notBefore) return;
    this.reply({ type: "error", ...revoked().toClient() });
    this.close("UNAUTHORIZED");
  }

  #welcome(cursor: number): void {
    const heartbeatMs = this.services.presence?.devices.heartbeatMs;
    this.reply({ type: "welcome", v: PROTOCOL_VERSION, user: this.#user, device: this.#device, cursor, ...(heartbeatMs ? { heartbeatMs } : {}) });
  }

  /**
   * Sends inbox items after `last` up to `until`, waiting for the socket to drain as needed.
   * `next`: the live item right after `until`, whose chain leads to the items in between.
   */
  async #replay(until: number, next?: LiveItem): Promise<void> {
    const chain = next?.chain !== undefined ? decodePrev(next.chain) : undefined;
    for await (const item of this.services.inbox.read(this.#user, this.#last, until, chain)) {
      if (this.#state === "closed") return;
      await this.#drain();
      this.#deliver(item.seq, item.data);
    }
  }

  async #drain(): Promise<void> {
    const limit = this.services.edge.maxBufferedBytes / 2;
    const deadline = Date.now() + DRAIN_DEADLINE_MS;
    while (this.#ws.bufferedAmount > limit && this.#state !== "closed") {
      if (Date.now() > deadline) {
        this.close("SLOW_CONSUMER");
        return;
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** A stored item, framed like a live one (a message's frame spliced from its bytes). */
  #deliver(seq: number, data: Uint8Array): void {
    if (seq <= this.#last) return;
    if (this.#sendText(liveFrame(seq, data))) this.#last = seq;
  }

  /** A live item is encoded once for all devices of its user on this edge (the frame is the same). */
  #deliverLive(item: LiveItem): void {
    if (item.seq <= this.#last) return;
    item.frame ??= liveFrame(item.seq, item.data);
    if (this.#sendText(item.frame)) this.#last = item.seq;
  }

  async #pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      while (this.#pending.length > 0 && this.#state === "live") {
        const item = this.#pending.shift()!;
        if (item.seq <= this.#last) continue;
        if (item.prev > this.#last) await this.#replay(item.seq - 1, item);
        if (this.#state !== "live") return;
        this.#deliverLive(item);
      }
    } catch (err) {
      // The device resumes from its cursor.
      this.#sendError(err);
      this.close("UNAVAILABLE");
    } finally {
      this.#pumping = false;
    }
  }
}

