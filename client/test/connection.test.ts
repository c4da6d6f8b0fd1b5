// The connection on its own (a scripted socket, fake timers, hooks that record what they are
// told): what goes into each attempt, the handshake deadline, the ping that finds a dead
// connection, and what each kind of close leads to — reconnect (after how long), a fresh token,
// a refused cursor, or a stop.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Connection, type ConnectionHooks, type ConnectionOptions } from "../src/connection.js";
import { Emitter, type StateChange } from "../src/events.js";
import { NatterError as NatterErrorClass, type NatterError } from "../src/errors.js";

/** A socket the test plays the server on; it opens on the next microtask. */
class ScriptedSocket {
  static all: ScriptedSocket[] = [];
  readyState = 0;
  sent: Record<string, unknown>[] = [];
  closedWith: number | undefined;
  onopen: (() => void) | null = null;
  onmessage: ((ev: { data: string }) => void) | null = null;
  onclose: ((ev: { code: number }) => void) | null = null;
  onerror: (() => void) | null = null;
  readonly url: string;
  constructor(url: string) {
    this.url = url;
    ScriptedSocket.all.push(this);
    queueMicrotask(() => {
      this.readyState = 1;
      this.onopen?.();
    });
  }
  send(data: string): void {
    this.sent.push(JSON.parse(data) as Record<string, unknown>);
  }
  close(code?: number): void {
    this.closedWith = code;
    this.readyState = 3;
  }
  serverSends(frame: Record<string, unknown>): void {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }
  serverCloses(code: number): void {
    this.readyState = 3;
    this.onclose?.({ code });
  }
}

type Told = [keyof ConnectionHooks, unknown?];

function connection(opts: Partial<ConnectionOptions> = {}) {
  ScriptedSocket.all = [];
  const events = new Emitter();
  const states: StateChange[] = [];
  const errors: NatterError[] = [];
  events.on("state", (s) => states.push(s));
  events.on("error", (e) => errors.push(e));
  const told: Told[] = [];
  const hooks: ConnectionHooks = {
    tokenUsed: (t) => told.push(["tokenUsed", t]),
    prepare: () => undefined,
    renewToken: async (t) => {
      told.push(["renewToken", t]);
      if (t === "refused") throw new NatterErrorClass("UNAUTHENTICATED", "the token is for another user", { temporary: false });
    },
    resumeFrom: () => 41,
    welcomed: (f) => told.push(["welcomed", f.cursor]),
    opened: (f) => told.push(["opened", f.cursor]),
    awaitsReply: () => false,
    frame: (f) => told.push(["frame", f.type]),
    ended: (code, welcomed) => told.push(["ended", { code, welcomed }]),
    cursorRefused: (m) => told.push(["cursorRefused", m]),
    dropped: (code) => told.push(["dropped", code]),
    stopped: (err) => told.push(["stopped", err.code]),
  };
  const conn = new Connection({ url: "http://edge.test", token: "t", backoff: { initialMs: 100, maxMs: 100 }, pingIntervalMs: 0, ...opts }, ScriptedSocket, { user: "u", device: "d" }, events, hooks);
  const socket = () => ScriptedSocket.all.at(-1)!;
  /** Lets the socket open and say hello; then the server welcomes it. */
  const welcome = async (extra: Record<string, unknown> = {}) => {
    await vi.advanceTimersByTimeAsync(0);
    socket().serverSends({ type: "welcome", v: 1, user: "u", device: "d", cursor: 50, ...extra });
  };
  return { conn, states, errors, told, socket, welcome };
}

const lastState = (states: StateChange[]) => states.at(-1)!;

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe("connection", () => {
  it("asks for the URL and a token before every attempt and says hello with the cursor to resume from", async () => {
    const urls: string[] = [];
    const reasons: string[] = [];
    const { conn, socket, welcome, told, states } = connection({
      url: () => {
        urls.push("asked");
        return urls.length === 1 ? "http://a.test" : "https://b.test";
      },
      token: (reason) => {
        reasons.push(reason);
        return `tok${reasons.length}`;
      },
    });
    const connected = conn.connect();
    await welcome();
    await connected;
    expect(socket().url).toBe("ws://a.test/ws");
    expect(socket().sent[0]).toEqual({ type: "hello", v: 1, token: "tok1", device: "d", cursor: 41 });
    expect(told.map(([hook]) => hook)).toEqual(["tokenUsed", "welcomed", "opened"]);
    expect(states.map((s) => s.state)).toEqual(["connecting", "open"]);

    socket().serverCloses(1006);
    await vi.advanceTimersByTimeAsync(100);
    expect(socket().url).toBe("wss://b.test/ws");
    expect(socket().sent[0]).toMatchObject({ token: "tok2" });
    expect(reasons).toEqual(["connect", "connect"]);
    conn.close();
  });

  it("drops an attempt not welcomed within handshakeTimeoutMs and tries again after a backoff", async () => {
    const { conn, socket, states } = connection({ handshakeTimeoutMs: 1_000 });
    const connected = conn.connect({ timeoutMs: 60_000 });
    await vi.advanceTimersByTimeAsync(0);
    const first = socket();
    expect(first.sent).toHaveLength(1); // the hello, never answered
    await vi.advanceTimersByTimeAsync(1_000);
    expect(first.closedWith).toBe(4000);
    expect(lastState(states)).toMatchObject({ state: "reconnecting", closeCode: 1006, attempt: 1 });
    await vi.advanceTimersByTimeAsync(lastState(states).delayMs!);
    expect(socket()).not.toBe(first);
    socket().serverSends({ type: "welcome", v: 1, user: "u", device: "d", cursor: 50 });
    await connected;
    conn.close();
  });

  it("pings while open; a ping unanswered by the next one drops the connection, and any frame counts as an answer", async () => {
    const { conn, socket, welcome, told, states } = connection({ pingIntervalMs: 1_000 });
    void conn.connect().catch(() => undefined);
    await welcome();
    const pings = () => socket().sent.filter((f) => f.type === "ping").length;
    await vi.advanceTimersByTimeAsync(1_000);
    expect(pings()).toBe(1);
    socket().serverSends({ type: "msg", cursor: 51, conv: "c", id: 1, from: "v", device: "x", cid: "a", text: "hi", ts: 1 });
    await vi.advanceTimersByTimeAsync(1_000);
    expect(pings()).toBe(2);
    expect(lastState(states).state).toBe("open");
    const silent = socket();
    await vi.advanceTimersByTimeAsync(1_000); // no answer to the second ping
    expect(silent.closedWith).toBe(4000);
    expect(told).toContainEqual(["dropped", 1006]);
    expect(lastState(states)).toMatchObject({ state: "reconnecting", closeCode: 1006 });
    conn.close();
  });

  it("pings as often as the welcome's heartbeatMs asks when that is more often", async () => {
    const { conn, socket, welcome } = connection({ pingIntervalMs: 20_000 });
    void conn.connect().catch(() => undefined);
    await welcome({ heartbeatMs: 1_000 });
    socket().serverSends({ type: "pong" });
    await vi.advanceTimersByTimeAsync(1_000);
    expect(socket().sent.filter((f) => f.type === "ping")).toHaveLength(1);
    conn.close();
  });

  it("waits the retryAfterMs of an edge that turned it away before welcome (4503)", async () => {
    const { conn, socket, states, errors } = connection();
    void conn.connect().catch(() => undefined);
    await vi.advanceTimersByTimeAsync(0);
    socket().serverSends({ type: "error", code: "UNAVAILABLE", message: "this edge is full", temporary: true, retryAfterMs: 7_300 });
    socket().serverCloses(4503);
    expect(lastState(states)).toMatchObject({ state: "reconnecting", closeCode: 4503, delayMs: 7_300 });
    expect(errors).toMatchObject([{ code: "UNAVAILABLE", retryAfterMs: 7_300 }]);
    const refused = socket();
    await vi.advanceTimersByTimeAsync(7_299);
    expect(socket()).toBe(refused);
    await vi.advanceTimersByTimeAsync(1);
    expect(socket()).not.toBe(refused);
    conn.close();
  });

  it("waits at least 5 s after a 4429, and reports the error frame the server sent before closing", async () => {
    const { conn, socket, welcome, states, errors } = connection();
    void conn.connect().catch(() => undefined);
    await welcome();
    socket().serverSends({ type: "error", code: "RATE_LIMITED", message: "slow down", temporary: true });
    expect(errors).toMatchObject([{ code: "RATE_LIMITED" }]);
    socket().serverCloses(4429);
    expect(lastState(states)).toMatchObject({ state: "reconnecting", closeCode: 4429, delayMs: 5_000 });
    const closed = socket();
    await vi.advanceTimersByTimeAsync(4_999);
    expect(socket()).toBe(closed);
    await vi.advanceTimersByTimeAsync(1);
    expect(socket()).not.toBe(closed);
    conn.close();
  });

  it("a refused token (4401): asks the provider for a fresh one and reconnects at once; refused again, stops with UNAUTHENTICATED", async () => {
    const reasons: string[] = [];
    const { conn, socket, told, states } = connection({
      token: (reason) => {
        reasons.push(reason);
        return "tok";
      },
    });
    const connected = conn.connect();
    await vi.advanceTimersByTimeAsync(0);
    socket().serverCloses(4401);
    expect(lastState(states)).toMatchObject({ state: "reconnecting", delayMs: 0, closeCode: 4401 });
    await vi.advanceTimersByTimeAsync(0);
    expect(reasons).toEqual(["connect", "refresh"]);
    socket().serverCloses(4401);
    await expect(connected).rejects.toMatchObject({ code: "UNAUTHENTICATED", temporary: false, closeCode: 4401 });
    expect(told).toContainEqual(["stopped", "UNAUTHENTICATED"]);
    expect(lastState(states)).toMatchObject({ state: "closed", closeCode: 4401 });
  });

  it("told the token expired (token.expired): asks the provider for a fresh one and sends it on the open socket, without reconnecting", async () => {
    const reasons: string[] = [];
    const { conn, socket, welcome, told, states, errors } = connection({
      token: (reason) => {
        reasons.push(reason);
        return reasons.length === 3 ? "refused" : `tok${reasons.length}`;
      },
    });
    const connected = conn.connect();
    await welcome();
    await connected;
    const first = socket();
    first.serverSends({ type: "token.expired", graceMs: 30_000 });
    await vi.advanceTimersByTimeAsync(0);
    expect(reasons).toEqual(["connect", "refresh"]);
    expect(told.filter(([hook]) => hook === "tokenUsed" || hook === "renewToken")).toEqual([
      ["tokenUsed", "tok1"],
      ["tokenUsed", "tok2"],
      ["renewToken", "tok2"],
    ]);
    expect(socket()).toBe(first);
    expect(states.map((s) => s.state)).toEqual(["connecting", "open"]);
    expect(errors).toEqual([]);
    // A refused renewal is reported; the server's close 4401 at the end of its grace follows, and
    // the reconnect asks for a fresh token.
    first.serverSends({ type: "token.expired", graceMs: 30_000 });
    await vi.advanceTimersByTimeAsync(0);
    expect(errors.map((e) => e.code)).toEqual(["UNAUTHENTICATED"]);
    first.serverCloses(4401);
    await vi.advanceTimersByTimeAsync(0);
    expect(reasons).toEqual(["connect", "refresh", "refresh", "refresh"]);
    expect(socket()).not.toBe(first);
    conn.close();
  });

  it("told the token expired with a fixed token: reports UNAUTHENTICATED, and stops at the server's 4401", async () => {
    const { conn, socket, welcome, errors } = connection({ token: "fixed" });
    const connected = conn.connect();
    await welcome();
    await connected;
    socket().serverSends({ type: "token.expired", graceMs: 30_000 });
    expect(errors.map((e) => e.code)).toEqual(["UNAUTHENTICATED"]);
    socket().serverCloses(4401);
    expect(conn.state).toBe("closed");
  });

  it("a fixed token refused once stops at once", async () => {
    const { conn, socket } = connection({ token: "bad" });
    const connected = conn.connect();
    await vi.advanceTimersByTimeAsync(0);
    socket().serverCloses(4401);
    await expect(connected).rejects.toMatchObject({ code: "UNAUTHENTICATED" });
    expect(conn.state).toBe("closed");
  });

  it("BAD_CURSOR before the close: the cursor is refused and the next attempt starts at once", async () => {
    const { conn, socket, told, states } = connection();
    const connected = conn.connect();
    await vi.advanceTimersByTimeAsync(0);
    socket().serverSends({ type: "error", code: "BAD_CURSOR", message: "cursor 41 is ahead", temporary: false });
    socket().serverCloses(4400);
    expect(told).toContainEqual(["cursorRefused", "cursor 41 is ahead"]);
    expect(lastState(states)).toMatchObject({ state: "reconnecting", delayMs: 0 });
    conn.close();
    await expect(connected).rejects.toMatchObject({ code: "CLOSED" });
  });

  it("stops on a close that forbids reconnecting, with the code of the error frame sent before it", async () => {
    const { conn, socket, welcome, told, errors, states } = connection();
    const connected = conn.connect();
    await welcome();
    await connected;
    socket().serverSends({ type: "error", code: "UNSUPPORTED_VERSION", message: "v2 only", temporary: false });
    socket().serverCloses(4426);
    expect(told).toContainEqual(["stopped", "UNSUPPORTED_VERSION"]);
    expect(lastState(states)).toMatchObject({ state: "closed", closeCode: 4426, error: { code: "UNSUPPORTED_VERSION" } });
    expect(errors.map((e) => e.code)).toEqual(["UNSUPPORTED_VERSION", "UNSUPPORTED_VERSION"]);
    await expect(conn.connect()).rejects.toMatchObject({ code: "CLOSED" });
  });

  it("refuses a welcome for another user (CONNECTION_REFUSED) and closes the socket", async () => {
    const { conn, socket } = connection();
    const connected = conn.connect();
    await vi.advanceTimersByTimeAsync(0);
    socket().serverSends({ type: "welcome", v: 1, user: "someone-else", device: "d", cursor: 1 });
    await expect(connected).rejects.toMatchObject({ code: "CONNECTION_REFUSED" });
    expect(socket().closedWith).toBe(1000);
  });

  it("close() stops for good without an error event; what was pending is stopped with CLOSED", async () => {
    const { conn, welcome, told, errors, states } = connection();
    void conn.connect().catch(() => undefined);
    await welcome();
    conn.close();
    expect(told.at(-1)).toEqual(["stopped", "CLOSED"]);
    expect(errors).toEqual([]);
    expect(lastState(states)).toMatchObject({ state: "closed", error: undefined });
  });
});
