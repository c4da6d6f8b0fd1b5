// Protocol fuzzing against a real edge (`natter start` as its own process): frames generated from
// the protocol's own schemas and mutated — wrong types, missing and extra fields, deep nesting,
// huge numbers, long and control-character strings, invalid UTF-8, binary frames, oversize frames
// with more data behind them, frames before and right behind hello. Every frame must get a
// documented answer (a reply, an error code from docs/protocol.md's table, or a close code from
// its table), the one each mutation calls for, never INTERNAL and never the input echoed back;
// the process stays up with a bounded RSS, logs client mistakes at most at warn and rate-limited,
// and a second pair of clients keeps chatting throughout.
//
// Seeded: NATTER_TEST_FUZZ_SEED=<n> replays a run; the seed is printed and named in every failure.
import { randomInt } from "node:crypto";
import { WebSocket } from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { authenticatedCase, firstFrameCase, FrameFuzzer, MARKER, type FuzzCase, type RawFrame } from "./support/fuzz.ts";
import { devToken, spawnNatter, type NatterProcess } from "./support/natter-process.ts";
import { DOCUMENTED_CLOSE_CODES, DOCUMENTED_ERRORS, DOCUMENTED_SERVER_FRAMES } from "./support/protocol-doc.ts";
import { TestClient } from "./support/ws-client.ts";

const SEED = process.env.NATTER_TEST_FUZZ_SEED ? Number(process.env.NATTER_TEST_FUZZ_SEED) : randomInt(2 ** 31);
const FRAMES = 3000;
const FIRST_FRAMES = 300;
const PIPELINED_SOCKETS = 60;
/** The loops stop here even when a slow machine has not sent every frame yet. */
const BUDGET_MS = 100_000;
const MAX_PAYLOAD = 64 * 1024; // edge.maxPayloadBytes (default)
const HARD_MAX = 4 * MAX_PAYLOAD; // ws closes 1009 past this
const limits = { maxPayloadBytes: MAX_PAYLOAD, hardMaxBytes: HARD_MAX };

type Frame = { type: string; ref?: string; code?: string; message?: string; cursor?: unknown; [k: string]: unknown };
type Answer = { frame: Frame } | { close: number };

/** A raw socket: sends bytes as given, and answers "what came back next" (inbox items skipped). */
class Probe {
  readonly ws: WebSocket;
  readonly #queue: Answer[] = [];
  #wake: (() => void) | undefined;
  closed = false;

  private constructor(ws: WebSocket) {
    this.ws = ws;
    ws.on("message", (data) => {
      const f = JSON.parse(data.toString()) as Frame;
      // Inbox items (messages, membership, receipts) of the fuzz user's own conversations arrive
      // whenever they happen: they answer no frame.
      if (typeof f.cursor === "number" && f.type !== "welcome") return;
      this.#push({ frame: f });
    });
    ws.on("close", (code) => {
      this.closed = true;
      this.#push({ close: code });
    });
    ws.on("error", () => {});
  }

  #push(a: Answer): void {
    this.#queue.push(a);
    this.#wake?.();
  }

  static async open(url: string): Promise<Probe> {
    const ws = new WebSocket(`${url.replace(/^http/, "ws")}/ws`);
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
    });
    return new Probe(ws);
  }

  send(f: RawFrame): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    this.ws.send(f.data, { binary: f.binary ?? false });
  }

  async next(what: string, timeoutMs = 15_000): Promise<Answer> {
    const deadline = Date.now() + timeoutMs;
    while (this.#queue.length === 0) {
      if (Date.now() > deadline) throw new Error(`seed ${SEED}: no answer within ${timeoutMs} ms to ${what}`);
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        setTimeout(resolve, 100);
      });
      this.#wake = undefined;
    }
    return this.#queue.shift()!;
  }

  close(): void {
    if (!this.closed) this.ws.terminate();
  }
}

let natter: NatterProcess;
const seen = { errors: new Map<string, number>(), closes: new Map<number, number>(), replies: new Map<string, number>() };
const count = <K>(m: Map<K, number>, k: K) => m.set(k, (m.get(k) ?? 0) + 1);

beforeAll(async () => {
  console.log(`fuzz: seed ${SEED} (NATTER_TEST_FUZZ_SEED=${SEED} replays it)`);
  // Thousands of bad frames on one socket: the bad-frame limit (its own test in limits.int.test.ts)
  // would close it every 30 frames; 10,000 (the most allowed) is more than a run sends.
  natter = await spawnNatter({ NATTER_EDGE__BAD_FRAMES_PER_MINUTE: "10000", NATTER_LOG__LEVEL: "info" });
}, 90_000);
afterAll(async () => {
  // A natter that died mid-run: what it said last is the first thing to read.
  if (natter && natter.proc.exitCode !== null) console.error(`natter exited ${natter.proc.exitCode} during the fuzz:\n${natter.output().slice(-6000)}`);
  await natter?.stop();
});

/** Checks one answer against what the case calls for; returns a description of a violation or undefined. */
function violation(c: FuzzCase, a: Answer): string | undefined {
  if ("close" in a) {
    count(seen.closes, a.close);
    if (!DOCUMENTED_CLOSE_CODES.has(a.close)) return `close ${a.close} is not in docs/protocol.md's close-code table`;
    if ("close" in c.expect && c.expect.close !== a.close) return `expected close ${c.expect.close}, got close ${a.close}`;
    if ("error" in c.expect) return `expected error ${c.expect.error.join("|")}, got close ${a.close}`;
    return undefined;
  }
  const f = a.frame;
  if (f.type === "error") {
    count(seen.errors, String(f.code));
    if (f.code === "INTERNAL") return `INTERNAL: ${f.message}`;
    if (!DOCUMENTED_ERRORS.has(String(f.code))) return `error ${f.code} is not in docs/protocol.md's error table`;
    if (String(f.message).includes(MARKER)) return `the error message echoes the input: ${JSON.stringify(f.message)}`;
    if ("error" in c.expect && !c.expect.error.includes(String(f.code))) return `expected error ${c.expect.error.join("|")}, got ${f.code} (${f.message})`;
    if ("close" in c.expect) return `expected close ${c.expect.close}, got error ${f.code} (${f.message})`;
    return undefined;
  }
  count(seen.replies, f.type);
  if (!DOCUMENTED_SERVER_FRAMES.has(f.type)) return `reply type ${f.type} is not in docs/protocol.md's server frames`;
  if (!("any" in c.expect)) return `expected ${JSON.stringify(c.expect)}, got a ${f.type} frame`;
  return undefined;
}

function show(c: FuzzCase): string {
  const first = c.frames[0]!;
  const text = typeof first.data === "string" ? first.data : first.data.toString("utf8");
  return `${c.kind}: ${JSON.stringify(text.length > 200 ? `${text.slice(0, 200)}… (${text.length} chars)` : text)}`;
}

describe("protocol fuzz against a running edge", () => {
  it("answers every generated and mutated frame as documented, stays up and bounded, and keeps a chat going", async () => {
    const fz = new FrameFuzzer(SEED);
    const started = Date.now();
    const budgetLeft = () => Date.now() - started < BUDGET_MS;
    const problems: string[] = [];
    const fuzzToken = await devToken(natter.url, "fz_user");

    // A chat between two other users, paced well inside the send rate, for the whole run.
    const chatA = await TestClient.connect(natter.url, { token: await devToken(natter.url, "chat_a"), device: "d" });
    const chatB = await TestClient.connect(natter.url, { token: await devToken(natter.url, "chat_b"), device: "d" });
    const dm = (await chatA.request({ type: "dm.open", peer: "chat_b" })).conv as { id: string };
    let fuzzing = true;
    const acked: number[] = [];
    const chat = (async () => {
      for (let i = 0; fuzzing || i < 3; i++) {
        const ack = await chatA.request({ type: "send", conv: dm.id, cid: `c${i}`, text: `line ${i}` }, 15_000);
        if (ack.type !== "ack") throw new Error(`seed ${SEED}: the chat's send ${i} got ${JSON.stringify(ack)}`);
        acked.push(Number(ack.id));
        await chatB.waitFor((f) => f.type === "msg" && f.id === ack.id, 15_000);
        await new Promise((r) => setTimeout(r, 100));
      }
    })();

    const rss: number[] = [natter.rssKb()];
    const sampler = setInterval(() => {
      if (natter.proc.exitCode === null) rss.push(natter.rssKb());
    }, 250);
    const logLinesBefore = natter.logLines().length;
    let frames = 0;
    try {
      // 1. One authenticated socket, frame after frame (a close is answered by a new socket).
      const authed = async () => {
        const p = await Probe.open(natter.url);
        p.send({ data: JSON.stringify({ type: "hello", v: 1, token: fuzzToken, device: "fz" }) });
        const w = await p.next("hello");
        expect("frame" in w && w.frame.type, `seed ${SEED}: hello answered ${JSON.stringify(w)}`).toBe("welcome");
        return p;
      };
      let sock = await authed();
      for (let i = 0; i < FRAMES && budgetLeft(); i++, frames++) {
        const c = authenticatedCase(fz, `k${i}`, limits);
        for (const f of c.frames) sock.send(f);
        const a = await sock.next(show(c));
        const v = violation(c, a);
        if (v) problems.push(`frame ${i}, ${show(c)} → ${v}`);
        if ("close" in a) sock = await authed();
      }
      sock.close();

      // 2. Fresh sockets whose first frame is a hello (good or bad) or anything else.
      for (let i = 0; i < FIRST_FRAMES && budgetLeft(); i++, frames++) {
        const c = firstFrameCase(fz, fuzzToken, limits);
        const p = await Probe.open(natter.url);
        for (const f of c.frames) p.send(f);
        // Error frames may precede the close; the close code is the verdict.
        for (;;) {
          const a = await p.next(show(c));
          if ("frame" in a && a.frame.type === "welcome") {
            if (!("any" in c.expect)) problems.push(`first frame ${i}, ${show(c)} → welcomed`);
            break;
          }
          if ("frame" in a && a.frame.type !== "error") {
            problems.push(`first frame ${i}, ${show(c)} → answered ${a.frame.type} before the session was authenticated`);
            break;
          }
          const v = "close" in a ? violation(c, a) : violation({ ...c, expect: { any: true } }, a);
          if (v) problems.push(`first frame ${i}, ${show(c)} → ${v}`);
          if ("close" in a) break;
        }
        p.close();
      }

      // 3. Frames pipelined right behind hello: nothing is answered before welcome, then each is.
      for (let i = 0; i < PIPELINED_SOCKETS && budgetLeft(); i++) {
        const cases: FuzzCase[] = [];
        while (cases.length < 4) {
          const c = authenticatedCase(fz, `p${i}-${cases.length}`, limits);
          if (!("close" in c.expect)) cases.push(c);
        }
        const p = await Probe.open(natter.url);
        p.send({ data: JSON.stringify({ type: "hello", v: 1, token: fuzzToken, device: `fzp${i}` }) });
        for (const c of cases) p.send(c.frames[0]!);
        frames += cases.length;
        const w = await p.next(`hello with ${cases.length} frames behind it`);
        if (!("frame" in w) || w.frame.type !== "welcome") problems.push(`pipelined ${i}: first answer ${JSON.stringify(w)} instead of welcome`);
        for (let k = 0; k < cases.length; k++) {
          const a = await p.next(`pipelined ${i}, answer ${k + 1} of ${cases.length}`);
          const v = violation({ kind: "pipelined", frames: [], expect: { any: true } }, a);
          if (v) problems.push(`pipelined ${i}, answer ${k + 1} → ${v}`);
        }
        p.close();
      }
    } finally {
      fuzzing = false;
      clearInterval(sampler);
    }
    await chat;
    const seconds = (Date.now() - started) / 1000;
    console.log(
      `fuzz: seed ${SEED}: ${frames} frames in ${seconds.toFixed(1)} s; chat ${acked.length} messages; ` +
        `errors ${JSON.stringify(Object.fromEntries(seen.errors))}; closes ${JSON.stringify(Object.fromEntries(seen.closes))}; ` +
        `replies ${JSON.stringify(Object.fromEntries(seen.replies))}; RSS ${Math.round(rss[0]! / 1024)} → max ${Math.round(Math.max(...rss) / 1024)} MB`,
    );

    expect(problems, `seed ${SEED}`).toEqual([]);
    expect(frames, `seed ${SEED}: frames sent within the budget`).toBeGreaterThanOrEqual(500);
    // Every documented outcome class showed up (the mutations are not all silently valid).
    expect([...seen.closes.keys()].sort()).toEqual(expect.arrayContaining([1007, 1009, 4400, 4401]));
    expect([...seen.errors.keys()]).toEqual(expect.arrayContaining(["BAD_FRAME", "BAD_JSON", "UNKNOWN_TYPE", "FRAME_TOO_LARGE"]));

    // The process is up and healthy, its memory bounded.
    expect(natter.proc.exitCode, natter.output().slice(-2000)).toBeNull();
    expect((await fetch(`${natter.url}/healthz`)).status).toBe(200);
    expect(Math.max(...rss) - rss[0]!, `seed ${SEED}: RSS grew from ${rss[0]} KiB`).toBeLessThan(256 * 1024);

    // The chat went on throughout: every message acked, delivered once, in order.
    expect(acked.length).toBeGreaterThan(0);
    const got = chatB.messages().filter((m) => m.conv === dm.id).map((m) => Number(m.id));
    expect(got).toEqual(acked);
    chatA.ws.close();
    chatB.ws.close();

    // Client mistakes: never above warn, and summarised at most once per 10 s (plus slack for
    // anything else worth a warning on a loaded machine).
    const lines = natter.logLines().slice(logLinesBefore);
    expect(lines.filter((l) => l.level >= 50), `seed ${SEED}: error-level log lines`).toEqual([]);
    expect(lines.filter((l) => l.level === 40).length, `seed ${SEED}: warn lines`).toBeLessThanOrEqual(Math.ceil(seconds / 10) + 5);
  }, 300_000);
});
