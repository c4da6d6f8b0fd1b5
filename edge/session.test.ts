// The device session's state machine with a fake socket, feed and inbox: hello → replay → live →
// gap fill → slow-reader close, nothing handled before the token is verified, the limits a
// session applies (hello slots, connections per user, frames in flight, the user's budget), and
// the token's life on the socket (expiry notice, grace, refresh, revocation).
// Long (≈430 lines): the fakes at the top serve every case of the one state machine.
import { EventEmitter } from "node:events";
import { pino } from "pino";
import { afterEach, describe, expect, it, vi } from "vitest";
import { loadConfig } from "../config/index.ts";
import { NatterError } from "../core/errors.ts";
import { MistakeLog, silentLogger } from "../core/logger.ts";
import { encodeJson } from "../nats/index.ts";
import type { InboxEntry, InboxItem } from "../streams/index.ts";
import { mintToken, type TokenSettings } from "./auth.ts";
import type { LiveItem } from "./feeds.ts";
import { EdgeAdmission } from "./admission.ts";
import { UserBudgets } from "./limits.ts";
import { DeviceSession, type SessionSocket } from "./session.ts";
import type { InboxReader, LiveFeeds, SessionServices } from "./services.ts";

const tokens: TokenSettings = { secret: "unit-test-secret-unit-test-secret-0123", issuer: "natter", audience: "natter", ttlSec: 600, maxAgeSec: 3600, expiryGraceSec: 5 };

type Frame = { type: string; cursor?: number; id?: number; code?: string; ref?: string; [k: string]: unknown };

class FakeSocket extends EventEmitter {
  bufferedAmount = 0;
  readonly sent: Frame[] = [];
  closedWith: number | undefined;
  send(text: string): void {
    this.sent.push(JSON.parse(text) as Frame);
  }
  close(code?: number): void {
    if (this.closedWith !== undefined) return;
    this.closedWith = code;
    queueMicrotask(() => this.emit("close", code));
  }
  frame(value: unknown): void {
    this.emit("message", Buffer.from(JSON.stringify(value)), false);
  }
  /** Inbox frames (those with a cursor) as [type, cursor]. */
  items(): number[] {
    return this.sent.filter((f) => typeof f.cursor === "number" && f.type !== "welcome" && f.type !== "reset").map((f) => f.cursor!);
  }
}

const entry = (seq: number): InboxEntry => ({ v: 1, type: "msg", conv: "c1", from: "bob", device: "d", cid: `m${seq}`, text: `#${seq}`, ts: seq, id: seq });

/** A user's inbox with sequences spread between other users' (gaps in the numbering). */
class FakeInbox implements InboxReader {
  readonly items = new Map<number, InboxEntry>();
  firstSeq = 1;
  /** Runs after each item a read yields (to interleave live items with a replay). */
  onRead: ((seq: number) => void) | undefined;
  bounds = async () => ({ firstSeq: this.firstSeq, lastSeq: Math.max(0, ...this.items.keys()) });
  add(...seqs: number[]): void {
    for (const s of seqs) this.items.set(s, entry(s));
  }
  async *read(_user: string, after: number, until: number): AsyncGenerator<InboxItem> {
    for (const seq of [...this.items.keys()].sort((a, b) => a - b)) {
      if (seq <= after || seq > until) continue;
      yield { seq, data: encodeJson(this.items.get(seq)!) };
      this.onRead?.(seq);
    }
  }
}

class FakeFeeds implements LiveFeeds {
  listener: ((item: LiveItem) => void) | undefined;
  attach(_user: string, onItem: (item: LiveItem) => void): () => void {
    this.listener = onItem;
    return () => (this.listener = undefined);
  }
  async flush(): Promise<void> {}
  /** A stored item as the inbox's republish delivers it: its sequence and the user's previous one. */
  emit(seq: number, prev: number): void {
    this.listener?.({ seq, prev, data: encodeJson(entry(seq)), chain: undefined });
  }
}

const sessions: DeviceSession[] = [];
afterEach(() => {
  for (const s of sessions.splice(0)) s.close("NORMAL");
});

function open(overrides: Partial<SessionServices> = {}, edge: Record<string, unknown> = {}) {
  const ws = new FakeSocket();
  const inbox = new FakeInbox();
  const feeds = new FakeFeeds();
  const config = loadConfig({ env: {}, overrides: { edge } }).edge;
  const services = {
    inbox,
    feeds,
    edge: config,
    tokens,
    revocations: { check: async () => {}, revokedNow: () => false },
    typing: { attach: () => () => {}, publish: () => {} },
    log: silentLogger(),
    mistakes: new MistakeLog(silentLogger()),
    failures: new MistakeLog(silentLogger()),
    budgets: new UserBudgets(config),
    hellos: new EdgeAdmission(config, silentLogger(), { fileLimit: 100_000, sweepMs: 0 }),
    ...overrides,
  } as unknown as SessionServices;
  const session = new DeviceSession(ws as unknown as SessionSocket, services);
  sessions.push(session);
  return { ws, inbox, feeds, session, services };
}

/** Another socket on the same edge (the same services). */
function openBeside(services: SessionServices) {
  const ws = new FakeSocket();
  const session = new DeviceSession(ws as unknown as SessionSocket, services);
  sessions.push(session);
  return { ws, session };
}

/** An inbox whose bounds wait for `release()`: hellos stay in progress until then. */
function gated(inbox: FakeInbox): () => void {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const bounds = inbox.bounds;
  inbox.bounds = async () => {
    await gate;
    return bounds();
  };
  return release;
}

/** Waits for `cond` (the token check is real crypto: its first use takes a while); 5 s is only a safety net. */
const until = async (cond: () => boolean) => {
  await expect.poll(cond, { timeout: 5000, interval: 1 }).toBe(true);
};

async function hello(ws: FakeSocket, cursor?: number, device = "phone") {
  ws.frame({ type: "hello", v: 1, token: await mintToken(tokens, "alice"), device, ...(cursor !== undefined ? { cursor } : {}) });
}

describe("DeviceSession", () => {
  it("replays what came after the cursor, then goes live, each item once and in order across the seam", async () => {
    const { ws, inbox, feeds, session } = open();
    inbox.add(3, 5, 8, 13);
    // While the replay reads 5, the items 8 and 13 (already in the inbox) arrive live too, and a
    // new one, 21, is stored: the seam must neither drop nor repeat any of them.
    inbox.onRead = (seq) => {
      if (seq !== 5) return;
      feeds.emit(8, 5);
      feeds.emit(13, 8);
      inbox.add(21);
      feeds.emit(21, 13);
    };
    await hello(ws, 3);
    await until(() => session.state === "live" && ws.items().includes(21));
    expect(ws.sent[0]).toMatchObject({ type: "welcome", cursor: 3, user: "alice", device: "phone" });
    expect(ws.items()).toEqual([5, 8, 13, 21]);
    expect(session.cursor).toBe(21);
  });

  it("fills a gap from the inbox before a live item whose previous sequence it has not sent", async () => {
    const { ws, inbox, feeds, session } = open();
    inbox.add(2);
    await hello(ws, 2);
    await until(() => session.state === "live");
    // 30 and 31 were stored but their live copies were lost; 40 says its predecessor is 31.
    inbox.add(30, 31, 40);
    feeds.emit(40, 31);
    await until(() => ws.items().includes(40));
    expect(ws.items()).toEqual([30, 31, 40]);
    feeds.emit(31, 30); // a late duplicate of the live copy: dropped
    feeds.emit(41, 40);
    await until(() => ws.items().includes(41));
    expect(ws.items()).toEqual([30, 31, 40, 41]);
  });

  it("without a cursor starts at the inbox's end; a cursor never issued is BAD_CURSOR and 4400; one past retention gets a reset", async () => {
    const fresh = open();
    fresh.inbox.add(7, 9);
    await hello(fresh.ws);
    await until(() => fresh.session.state === "live");
    expect(fresh.ws.sent[0]).toMatchObject({ type: "welcome", cursor: 9 });
    expect(fresh.ws.items()).toEqual([]);

    const ahead = open();
    ahead.inbox.add(7);
    await hello(ahead.ws, 8);
    await until(() => ahead.ws.closedWith !== undefined);
    expect(ahead.ws.sent.map((f) => f.code ?? f.type)).toEqual(["BAD_CURSOR"]);
    expect(ahead.ws.closedWith).toBe(4400);

    const old = open();
    old.inbox.add(50, 51);
    old.inbox.firstSeq = 50;
    await hello(old.ws, 10);
    await until(() => old.session.state === "live");
    expect(old.ws.sent.slice(0, 2)).toMatchObject([
      { type: "welcome", cursor: 10 },
      { type: "reset", cursor: 51 },
    ]);
    expect(old.ws.items()).toEqual([]);
  });

  it("closes a reader whose buffer stays full with 4409 and sends it nothing more", async () => {
    const { ws, inbox, feeds, session } = open({}, { maxBufferedBytes: 4096 });
    inbox.add(1);
    await hello(ws, 1);
    await until(() => session.state === "live");
    ws.bufferedAmount = 10_000; // the client stopped reading
    inbox.add(2);
    feeds.emit(2, 1);
    await until(() => ws.closedWith !== undefined);
    expect(ws.closedWith).toBe(4409);
    expect(ws.items()).toEqual([]);
    expect(session.state).toBe("closed");
  });

  it("handles nothing before the token is verified: a bad token closes 4401 and frames behind it are dropped", async () => {
    const { ws } = open();
    ws.frame({ type: "hello", v: 1, token: "not-a-token", device: "phone" });
    ws.frame({ type: "ping", ref: "early" });
    await until(() => ws.closedWith !== undefined);
    expect(ws.closedWith).toBe(4401);
    expect(ws.sent).toEqual([]);
  });

  it("holds frames that arrive while catching up and answers them, in order, after welcome", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const { ws, inbox, session } = open();
    const bounds = inbox.bounds;
    inbox.bounds = async () => {
      await gate;
      return bounds();
    };
    await hello(ws);
    ws.frame({ type: "ping", ref: "1" });
    ws.frame({ type: "nope", ref: "2" });
    ws.frame({ type: "ping", ref: "3" });
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    expect(ws.sent).toEqual([]); // still verifying / catching up
    release();
    await until(() => ws.sent.length === 4);
    expect(ws.sent.map((f) => (f.type === "error" ? `${f.code}:${f.ref}` : `${f.type}:${f.ref ?? ""}`))).toEqual(["welcome:", "pong:1", "UNKNOWN_TYPE:2", "pong:3"]);
    expect(session.state).toBe("live");
  });

  it("a replay NATS cannot serve in time is a temporary UNAVAILABLE, then 4503 (the device resumes from its cursor); logged at warn once per interval, never at error", async () => {
    const lines: { level: number; msg: string; counts?: Record<string, number> }[] = [];
    const log = pino({ level: "info" }, { write: (line: string) => lines.push(JSON.parse(line)) });
    const failures = new MistakeLog(log);
    const devices = Array.from({ length: 3 }, () => open({ log, failures }));
    for (const { inbox } of devices) {
      inbox.add(3, 5, 8);
      const read = inbox.read.bind(inbox);
      inbox.read = async function* (user, after, until) {
        for await (const item of read(user, after, until)) {
          yield item;
          if (item.seq === 5) throw new NatterError("UNAVAILABLE", "inbox unavailable", { cause: new Error("timeout") });
        }
      };
    }
    for (const { ws } of devices) await hello(ws, 3);
    for (const { ws } of devices) await until(() => ws.closedWith !== undefined);
    for (const { ws } of devices) {
      expect(ws.sent.map((f) => f.code ?? f.type)).toEqual(["welcome", "msg", "UNAVAILABLE"]);
      expect(ws.sent[2]).toMatchObject({ temporary: true });
      expect(ws.closedWith).toBe(4503);
    }
    expect(lines).toEqual([]); // nothing yet: counted
    failures.flush();
    expect(lines).toMatchObject([{ level: 40, counts: { "UNAVAILABLE: inbox unavailable": 3 } }]);
  });

  it("answers a first frame that is not a hello with one error and 4400", async () => {
    const { ws } = open();
    ws.frame({ type: "ping" });
    await until(() => ws.closedWith !== undefined);
    expect(ws.sent.map((f) => f.code)).toEqual(["NOT_HELLO"]);
    expect(ws.closedWith).toBe(4400);
  });
});

describe("DeviceSession's token", () => {
  afterEach(() => vi.useRealTimers());
  /** Lets the event loop run (crypto, promises) until `cond` holds; timers are fake in these tests. */
  const settle = async (cond: () => boolean) => {
    for (let i = 0; i < 5000 && !cond(); i++) await new Promise((r) => setImmediate(r));
    expect(cond()).toBe(true);
  };
  const types = (ws: FakeSocket) => ws.sent.map((f) => (f.type === "error" ? `error:${f.code}` : f.type));
  /** A live session of alice on a token valid for `ttlSec`, with the session's timers and the clock fake (from a whole second). */
  async function live(ttlSec = 60, overrides: Partial<SessionServices> = {}) {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
    vi.setSystemTime(new Date(1_700_000_000_000));
    const s = open(overrides);
    s.ws.frame({ type: "hello", v: 1, token: await mintToken(tokens, "alice", ttlSec), device: "phone" });
    await settle(() => s.session.state === "live");
    return s;
  }

  it("tells the device when its token expires, then closes 4401 when no fresh one comes within the grace", async () => {
    const { ws } = await live(60);
    vi.advanceTimersByTime(59_999);
    expect(types(ws)).toEqual(["welcome"]);
    vi.advanceTimersByTime(1);
    expect(ws.sent.at(-1)).toEqual({ type: "token.expired", graceMs: 5000 });
    vi.advanceTimersByTime(4_900);
    expect(ws.closedWith).toBeUndefined();
    vi.advanceTimersByTime(200);
    expect(types(ws)).toEqual(["welcome", "token.expired", "error:UNAUTHENTICATED"]);
    expect(ws.closedWith).toBe(4401);
  });

  it("moves onto a fresh token of the same user sent within the grace, with its new expiry", async () => {
    const { ws, session } = await live(60);
    vi.advanceTimersByTime(61_000);
    expect(ws.sent.at(-1)).toMatchObject({ type: "token.expired" });
    ws.frame({ type: "token", ref: "t1", token: await mintToken(tokens, "alice", 600) });
    await settle(() => ws.sent.some((f) => f.ref === "t1"));
    expect(ws.sent.at(-1)).toEqual({ type: "token", ref: "t1", user: "alice", exp: 1_700_000_061 + 600 });
    // The old grace is over, the socket stays; the new token's expiry is told in its turn.
    vi.advanceTimersByTime(10_000);
    expect(ws.closedWith).toBeUndefined();
    expect(session.state).toBe("live");
    vi.advanceTimersByTime(590_000);
    expect(types(ws)).toEqual(["welcome", "token.expired", "token", "token.expired"]);
  });

  it("refuses a token of another user, an invalid or a revoked one: the socket keeps its own, and closes at the end of the grace", async () => {
    let revoked = false;
    const { ws } = await live(60, { revocations: { check: async () => {}, revokedNow: () => revoked } });
    vi.advanceTimersByTime(61_000);
    ws.frame({ type: "token", ref: "bob", token: await mintToken(tokens, "bob", 600) });
    await settle(() => ws.sent.filter((f) => f.type === "error").length === 1);
    ws.frame({ type: "token", ref: "bad", token: "not-a-token" });
    await settle(() => ws.sent.filter((f) => f.type === "error").length === 2);
    revoked = true;
    ws.frame({ type: "token", ref: "revoked", token: await mintToken(tokens, "alice", 600) });
    await settle(() => ws.sent.filter((f) => f.type === "error").length === 3);
    expect(ws.sent.slice(2)).toMatchObject([
      { type: "error", ref: "bob", code: "UNAUTHENTICATED", message: expect.stringContaining("another user") },
      { type: "error", ref: "bad", code: "UNAUTHENTICATED" },
      { type: "error", ref: "revoked", code: "UNAUTHENTICATED", message: expect.stringContaining("revoked") },
    ]);
    expect(ws.closedWith).toBeUndefined();
    vi.advanceTimersByTime(5_000);
    expect(ws.closedWith).toBe(4401);
  });

  it("is closed 4401 by a revocation of the user's tokens issued after it, and only then", async () => {
    const { ws, session } = await live(600);
    const iat = Math.floor(Date.now() / 1000);
    session.revoke(iat - 5); // tokens before an earlier time: not this one
    expect(ws.closedWith).toBeUndefined();
    session.revoke(iat + 1);
    expect(types(ws)).toEqual(["welcome", "error:UNAUTHENTICATED"]);
    expect(ws.closedWith).toBe(4401);
  });

  it("refuses a hello whose token was revoked (4401), and one whose revocations cannot be read (4503, UNAVAILABLE)", async () => {
    const revokedHello = open({ revocations: { check: async () => {}, revokedNow: () => true } });
    await hello(revokedHello.ws);
    await until(() => revokedHello.ws.closedWith !== undefined);
    expect(revokedHello.ws.closedWith).toBe(4401);
    const down = open({
      revocations: {
        check: async () => {
          throw new NatterError("UNAVAILABLE", "the revocations bucket is unavailable");
        },
        revokedNow: () => false,
      },
    });
    await hello(down.ws);
    await until(() => down.ws.closedWith !== undefined);
    expect(types(down.ws)).toEqual(["error:UNAVAILABLE"]);
    expect(down.ws.closedWith).toBe(4503);
  });
});

describe("DeviceSession limits", () => {
  it("past edge.maxHellosInProgress a hello waits for the slot; one that waited too long is told when to retry and closed 4503; the slot frees when the hello ends", async () => {
    let now = 0;
    const config = loadConfig({ env: {}, overrides: { edge: { maxHellosInProgress: 1 } } }).edge;
    const hellos = new EdgeAdmission(config, silentLogger(), { fileLimit: 100_000, sweepMs: 0, now: () => now, random: () => 0 });
    const first = open({ hellos }, { maxHellosInProgress: 1 });
    const release = gated(first.inbox);
    await hello(first.ws);
    await until(() => first.session.state === "starting");
    const second = openBeside(first.services);
    await hello(second.ws, undefined, "tablet");
    await until(() => hellos.waiting === 1);
    expect(second.ws.sent).toEqual([]);
    now += 4000; // it waited HELLO_WAIT_MS
    hellos.sweep();
    await until(() => second.ws.closedWith !== undefined);
    expect(second.ws.closedWith).toBe(4503);
    expect(second.ws.sent).toHaveLength(1);
    expect(second.ws.sent[0]).toMatchObject({ type: "error", code: "UNAVAILABLE", temporary: true });
    expect(second.ws.sent[0]!.retryAfterMs).toBeGreaterThanOrEqual(500);
    const third = openBeside(first.services);
    await hello(third.ws, undefined, "laptop");
    await until(() => hellos.waiting === 1);
    release();
    await until(() => first.session.state === "live");
    await until(() => third.session.state === "live");
    expect(third.ws.sent[0]).toMatchObject({ type: "welcome" });
  });

  it("refuses the (N+1)th connection of a user with TOO_MANY_CONNECTIONS and 4503, counting devices online elsewhere", async () => {
    const online = ["watch", "desktop"]; // presence: two devices of alice live on other edges
    const presence = { devices: { connect: () => ({ beat() {}, release() {} }), heartbeatMs: 10_000 }, lookup: async () => [], onlineDevices: async () => online };
    const a = open({ presence } as unknown as Partial<SessionServices>, { maxConnectionsPerUser: 3 });
    await hello(a.ws);
    await until(() => a.session.state === "live");
    // Its own device coming back does not count against it; a fourth device does.
    online.push("phone");
    const again = openBeside(a.services);
    await hello(again.ws, undefined, "phone");
    await until(() => again.session.state === "live");
    const b = openBeside(a.services);
    await hello(b.ws, undefined, "tablet");
    await until(() => b.ws.closedWith !== undefined);
    expect(b.ws.closedWith).toBe(4503);
    expect(b.ws.sent[0]).toMatchObject({ type: "error", code: "TOO_MANY_CONNECTIONS", temporary: true });
    expect(b.ws.sent[0]!.retryAfterMs).toBeGreaterThan(0);
  });

  it("answers a frame past edge.maxInFlightPerSocket with RATE_LIMITED at once, and takes frames again as replies go out", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const history = async () => {
      await gate;
      return [];
    };
    const { ws, session } = open({ history, directory: { requireMember: async () => ({ id: "c1", members: ["alice"] }) } } as unknown as Partial<SessionServices>, {
      maxInFlightPerSocket: 2,
    });
    await hello(ws);
    await until(() => session.state === "live");
    for (const ref of ["1", "2", "3"]) ws.frame({ type: "history", conv: "c1", ref });
    await until(() => ws.sent.some((f) => f.ref === "3"));
    expect(ws.sent.filter((f) => f.ref !== undefined)).toMatchObject([{ type: "error", code: "RATE_LIMITED", ref: "3" }]);
    release();
    await until(() => ws.sent.filter((f) => f.ref !== undefined).length === 3);
    ws.frame({ type: "ping", ref: "4" });
    await until(() => ws.sent.some((f) => f.ref === "4"));
    expect(ws.sent.find((f) => f.ref === "4")).toMatchObject({ type: "pong" });
  });

  it("charges every frame to the user's budget, shared by its sockets on the edge", async () => {
    // A stopped clock: nothing refills. The burst is 10 sends (never below the dearest frame,
    // group.create), 200 pings at 0.05 each.
    const config = loadConfig({ env: {}, overrides: { edge: { sendsPerSecond: 1 } } }).edge;
    const a = open({ budgets: new UserBudgets(config, () => 0) }, { sendsPerSecond: 1 });
    await hello(a.ws);
    await until(() => a.session.state === "live");
    const b = openBeside(a.services);
    await hello(b.ws, undefined, "tablet");
    await until(() => b.session.state === "live");
    // Rounds of 5 frames per socket (within maxInFlightPerSocket), each after the last's replies.
    for (let round = 0; round < 25; round++) {
      for (let i = 0; i < 5; i++) a.ws.frame({ type: "ping", ref: `a${round}-${i}` });
      for (let i = 0; i < 5; i++) b.ws.frame({ type: "ping", ref: `b${round}-${i}` });
      await until(() => a.ws.sent.length + b.ws.sent.length === 2 + (round + 1) * 10);
    }
    const answers = [...a.ws.sent, ...b.ws.sent].filter((f) => f.ref !== undefined);
    expect(answers.filter((f) => f.type === "pong")).toHaveLength(200);
    const refused = answers.filter((f) => f.type !== "pong");
    expect(refused).toHaveLength(50);
    for (const f of refused) expect(f).toMatchObject({ type: "error", code: "RATE_LIMITED", temporary: true });
  });
});
