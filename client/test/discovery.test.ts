// The client with the `discovery` option, on fake timers, a scripted socket and a scripted
// GET /discovery: which edges it tries and in what order, what moves it on to the next (a failed
// attempt, a dropped connection, 1001, 4503 after its retryAfterMs) and what does not, when it
// asks again, bootstrap URLs that do not answer, and that the device resumes from its cursor on
// whichever edge it reaches.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { movesOn, NatterClient, type DiscoveredEdge, type DiscoveryEvent, type NatterClientOptions, type NatterError, type StateChange } from "../src/index.js";
import { ScriptedSocket } from "./fake-wire.js";

/** A discovery answer (edges by name: `a` is http://a.test), a refusal, a network failure, or no answer at all. */
type Reply = { edges: string[] } | { status: number; code: string } | "refused" | "hang";

const edge = (name: string): DiscoveredEdge => ({ id: name, url: `http://${name}.test`, region: "eu", connections: 1, capacity: 100, load: 0.01 });
const ws = (name: string) => `ws://${name}.test/ws`;

/**
 * Plays GET /discovery: each origin answers its replies in turn, the last one from then on
 * (unscripted origins refuse). Other requests (images) get 200.
 */
function scriptDiscovery(script: Record<string, Reply[]>) {
  const asked: string[] = [];
  const requests: string[] = [];
  const signals: AbortSignal[] = [];
  const fetch = async (input: URL | string, init?: RequestInit) => {
    const url = new URL(String(input));
    requests.push(url.toString());
    const respond = (status: number, body: unknown) => ({ ok: status < 300, status, json: async () => body, blob: async () => new Blob(["x"]) }) as unknown as Response;
    if (url.pathname !== "/discovery") return respond(200, {});
    asked.push(url.toString());
    if (init?.signal) signals.push(init.signal);
    const queue = script[url.origin] ?? ["refused"];
    const reply = queue.length > 1 ? queue.shift()! : queue[0]!;
    if (reply === "refused") throw new TypeError("fetch failed");
    if (reply === "hang") {
      return new Promise<Response>((_, reject) => init?.signal?.addEventListener("abort", () => reject(new DOMException("aborted", "AbortError"))));
    }
    if ("status" in reply) return respond(reply.status, { error: { code: reply.code, message: "no edge is taking clients", temporary: true } });
    return respond(200, { edges: reply.edges.map(edge) });
  };
  vi.stubGlobal("fetch", fetch);
  return { asked, requests, signals };
}

function client(discovery: NonNullable<NatterClientOptions["discovery"]>, opts: Partial<NatterClientOptions> = {}) {
  ScriptedSocket.all = [];
  const c = new NatterClient({ discovery, user: "u", device: "d", token: "t", WebSocket: ScriptedSocket, pingIntervalMs: 0, backoff: { initialMs: 100, maxMs: 100 }, ...opts });
  const states: StateChange[] = [];
  const answers: DiscoveryEvent[] = [];
  const errors: NatterError[] = [];
  c.on("state", (s) => states.push(s));
  c.on("discovery", (d) => answers.push(d));
  c.on("error", (e) => errors.push(e));
  const socket = () => ScriptedSocket.all.at(-1)!;
  /** The edges of every socket so far, in order. */
  const tried = () => ScriptedSocket.all.map((s) => s.url);
  /** Lets the attempt under way ask discovery and open its socket; then the server welcomes it. */
  const welcome = async () => {
    await vi.advanceTimersByTimeAsync(0);
    socket().serverSends({ type: "welcome", v: 1, user: "u", device: "d", cursor: 10 });
  };
  /** Lets the reconnect wait (the backoff, or longer) pass and the next attempt open its socket. */
  const nextAttempt = async () => {
    await vi.advanceTimersByTimeAsync(states.at(-1)!.delayMs ?? 0);
  };
  return { c, states, answers, errors, socket, tried, welcome, nextAttempt };
}

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
  vi.unstubAllGlobals();
});

describe("discovery", () => {
  it("asks GET /discovery on the bootstrap (region, limit) and connects to the first edge it recommends; the app sees which", async () => {
    const { asked } = scriptDiscovery({ "https://chat.test": [{ edges: ["a", "b", "c"] }] });
    const { c, states, answers, socket, welcome } = client({ bootstrap: "https://chat.test", region: "eu" });
    const connected = c.connect();
    await welcome();
    await connected;
    expect(asked).toEqual(["https://chat.test/discovery?region=eu&limit=3"]);
    expect(answers).toEqual([{ from: "https://chat.test", edges: ["a", "b", "c"].map(edge), reason: "first" }]);
    expect(socket().url).toBe(ws("a"));
    expect(socket().sent[0]).toEqual({ type: "hello", v: 1, token: "t", device: "d" });
    expect(states.at(-1)).toMatchObject({ state: "open", edge: "http://a.test" });
    expect(c.edge).toEqual({ url: "http://a.test", id: "a", region: "eu" });
    c.close();
  });

  it("goes through the list in order, then asks again, with the edge just left put last; the cursor goes along", async () => {
    const { asked } = scriptDiscovery({ "https://chat.test": [{ edges: ["a", "b"] }, { edges: ["b", "c"] }] });
    const { c, states, answers, socket, tried, welcome, nextAttempt } = client({ bootstrap: "https://chat.test", limit: 2 });
    void c.connect();
    await welcome();
    socket().serverSends({ type: "msg", cursor: 11, conv: "c1", id: 1, from: "v", device: "x", cid: "m1", text: "hi", ts: 1 });
    // A connection that dropped: the next edge.
    socket().serverCloses(1006);
    expect(states.at(-1)).toMatchObject({ state: "reconnecting", closeCode: 1006, edge: "http://a.test" });
    await nextAttempt();
    expect(tried()).toEqual([ws("a"), ws("b")]);
    expect(socket().sent[0]).toMatchObject({ type: "hello", cursor: 11 });
    // An attempt that failed (closed before any welcome): the list is used up, discovery is asked
    // again; it still names b first (its entry has not expired), but b has just failed.
    socket().serverCloses(1006);
    await nextAttempt();
    expect(answers.map((a) => [a.reason, a.edges.map((e) => e.id)])).toEqual([
      ["first", ["a", "b"]],
      ["used-up", ["c", "b"]],
    ]);
    expect(asked).toHaveLength(2);
    expect(tried()).toEqual([ws("a"), ws("b"), ws("c")]);
    expect(socket().sent[0]).toMatchObject({ type: "hello", cursor: 11 });
    socket().serverSends({ type: "welcome", v: 1, user: "u", device: "d", cursor: 11 });
    expect(c.edge).toEqual({ url: "http://c.test", id: "c", region: "eu" });
    expect(c.cursor).toBe(11);
    c.close();
  });

  it("moves on at once after a 1001, and after a 4503 no sooner than its retryAfterMs", async () => {
    scriptDiscovery({ "https://chat.test": [{ edges: ["a", "b", "c"] }] });
    const { c, states, errors, socket, tried, welcome, nextAttempt } = client({ bootstrap: "https://chat.test" }, { backoff: { initialMs: 400, maxMs: 30_000 } });
    void c.connect();
    await welcome();
    // Going away: the first step of the backoff (attempt 0: at most initialMs).
    socket().serverCloses(1001);
    expect(states.at(-1)).toMatchObject({ state: "reconnecting", closeCode: 1001, attempt: 1 });
    expect(states.at(-1)!.delayMs).toBeLessThanOrEqual(400);
    await nextAttempt();
    expect(tried()).toEqual([ws("a"), ws("b")]);
    // b is full: it says when to come back, and the next attempt (on c) waits that long.
    socket().serverSends({ type: "error", code: "UNAVAILABLE", message: "this edge is full", temporary: true, retryAfterMs: 7_300 });
    socket().serverCloses(4503);
    expect(states.at(-1)).toMatchObject({ state: "reconnecting", closeCode: 4503, delayMs: 7_300, edge: "http://b.test" });
    expect(errors).toMatchObject([{ code: "UNAVAILABLE", retryAfterMs: 7_300 }]);
    await vi.advanceTimersByTimeAsync(7_299);
    expect(tried()).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(tried()).toEqual([ws("a"), ws("b"), ws("c")]);
    c.close();
  });

  it("stays on its edge after a close about the device (4409 too slow, 4401 token refused)", async () => {
    scriptDiscovery({ "https://chat.test": [{ edges: ["a", "b"] }] });
    const { c, socket, tried, welcome, nextAttempt } = client({ bootstrap: "https://chat.test" }, { token: () => "t" });
    void c.connect();
    await welcome();
    socket().serverCloses(4409);
    await nextAttempt();
    socket().serverCloses(4401);
    await nextAttempt();
    expect(tried()).toEqual([ws("a"), ws("a"), ws("a")]);
    c.close();
  });

  it("asks again before the next attempt once the list is older than maxAgeMs", async () => {
    const { asked } = scriptDiscovery({ "https://chat.test": [{ edges: ["a", "b"] }, { edges: ["b", "a"] }] });
    const { c, answers, socket, tried, welcome, nextAttempt } = client({ bootstrap: "https://chat.test", maxAgeMs: 10_000 });
    void c.connect();
    await welcome();
    await vi.advanceTimersByTimeAsync(9_000);
    socket().serverCloses(4409); // stays: the same edge, from a list still fresh (9.1 s old at the next attempt)
    await nextAttempt();
    expect(tried()).toEqual([ws("a"), ws("a")]);
    expect(asked).toHaveLength(1);
    socket().serverSends({ type: "welcome", v: 1, user: "u", device: "d", cursor: 10 });
    await vi.advanceTimersByTimeAsync(1_000);
    socket().serverCloses(4409); // the list is 10 s old: asked again, its first edge
    await nextAttempt();
    expect(answers.map((a) => a.reason)).toEqual(["first", "stale"]);
    expect(tried()).toEqual([ws("a"), ws("a"), ws("b")]);
    c.close();
  });

  it("asks the next bootstrap URL when one names no edge, refuses or does not answer in time, and asks the one that answered first next time", async () => {
    const { asked } = scriptDiscovery({ "http://w.test": [{ edges: [] }], "http://x.test": ["refused"], "http://y.test": ["hang"], "http://z.test": [{ edges: ["a"] }] });
    const { c, answers, socket, tried, welcome, nextAttempt } = client({ bootstrap: ["http://w.test", "http://x.test", "ws://y.test/ws", "http://z.test"], requestTimeoutMs: 2_000 });
    void c.connect();
    await vi.advanceTimersByTimeAsync(1_999);
    expect(tried()).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    await welcome();
    expect(asked.map((u) => new URL(u).origin)).toEqual(["http://w.test", "http://x.test", "http://y.test", "http://z.test"]);
    expect(answers).toMatchObject([{ from: "http://z.test", reason: "first" }]);
    expect(c.state).toBe("open");
    // a goes away: the list (one edge) is used up; z is asked first.
    socket().serverCloses(1001);
    await nextAttempt();
    expect(asked.slice(4).map((u) => new URL(u).origin)).toEqual(["http://z.test"]);
    expect(tried()).toEqual([ws("a"), ws("a")]);
    c.close();
  });

  it("no answer for a first attempt: an error, another try after a backoff; no answer with a list in hand: on through the list", async () => {
    const { asked } = scriptDiscovery({ "http://x.test": [{ status: 503, code: "UNAVAILABLE" }, { edges: ["a", "b"] }, "refused"] });
    const { c, states, errors, socket, tried, welcome, nextAttempt } = client({ bootstrap: "http://x.test" });
    const connected = c.connect();
    await vi.advanceTimersByTimeAsync(0);
    expect(errors).toMatchObject([{ code: "UNAVAILABLE", temporary: true, message: expect.stringContaining("http://x.test: UNAVAILABLE no edge is taking clients") }]);
    expect(states.at(-1)).toMatchObject({ state: "reconnecting", edge: undefined });
    expect(tried()).toEqual([]);
    await nextAttempt();
    await welcome();
    await connected;
    socket().serverCloses(1001);
    await nextAttempt();
    socket().serverCloses(1001);
    // Used up, and nobody answers (x refuses; so do a and b, the edges it heard of, b last).
    await nextAttempt();
    expect(asked.slice(2).map((u) => new URL(u).origin)).toEqual(["http://x.test", "http://a.test", "http://b.test"]);
    expect(errors.at(-1)).toMatchObject({ code: "UNAVAILABLE", message: expect.stringContaining("http://b.test: fetch failed") });
    expect(tried()).toEqual([ws("a"), ws("b"), ws("a")]);
    c.close();
  });

  it("sends HTTP requests (images) to the URL that answered discovery", async () => {
    const { requests } = scriptDiscovery({ "https://chat.test": [{ edges: ["a"] }] });
    const { c, welcome } = client({ bootstrap: ["https://gone.test", "https://chat.test"] });
    void c.connect();
    await welcome();
    await c.fetchImage("img_1", "thumb");
    expect(requests.at(-1)).toBe("https://chat.test/images/img_1/thumb");
    c.close();
  });

  it("close() abandons a discovery request in flight", async () => {
    const { signals } = scriptDiscovery({ "https://chat.test": ["hang"] });
    const { c, tried } = client({ bootstrap: "https://chat.test" });
    const connected = c.connect();
    await vi.advanceTimersByTimeAsync(0);
    c.close();
    await expect(connected).rejects.toMatchObject({ code: "CLOSED" });
    expect(signals.map((s) => s.aborted)).toEqual([true]);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(tried()).toEqual([]);
  });

  it("takes either url or discovery", () => {
    const base = { user: "u", device: "d", token: "t", WebSocket: ScriptedSocket };
    expect(() => new NatterClient(base)).toThrow(TypeError);
    expect(() => new NatterClient({ ...base, url: "http://a.test", discovery: { bootstrap: "http://a.test" } })).toThrow(/either `url` or `discovery`/);
    expect(() => new NatterClient({ ...base, discovery: { bootstrap: [] } })).toThrow(/at least one URL/);
    expect(() => new NatterClient({ ...base, discovery: { bootstrap: "ftp://a.test" } })).toThrow(TypeError);
  });

  it.each([
    [1001, true, true],
    [4503, false, true],
    [4503, true, true],
    [1006, true, true],
    [4408, false, true],
    [4409, true, false],
    [4429, true, false],
    [4401, false, false],
    [4400, false, false],
  ])("close %i (welcomed: %s) moves on: %s", (code, welcomed, expected) => {
    expect(movesOn(code, welcomed)).toBe(expected);
  });
});
