// npm run bench:storm [-- --clients 5000] [--missed 20] [--timeout-s 300] [--natter-log file]
// A reconnect storm (issue 14): every device of one edge comes back at the same moment, each
// `missed` messages behind, and must be caught up by natter's default admission control.
//
// It starts a single-node natter (`natter start --dev`: its own process with its embedded
// nats-server, on free ports, in a temp folder) with natter's DEFAULT limits except
// NATTER_EDGE__MAX_PENDING_PER_ADDRESS=0: every bench client comes from 127.0.0.1, one address
// with thousands of sockets waiting to say hello, which a real edge never sees (its clients come
// from many addresses). Everything else is what a deployment gets: edge.maxHellosInProgress (128),
// the per-user budget (50 sends/s), 16 frames in flight per socket, the socket cap under the
// open-file limit.
//
// Set-up (not measured): users u0…u{C-1}, one device "d" each, and sender users s0…s7 (device
// "s"). The senders create groups of 100 members (the sender and 99 users) and later send to them,
// paced under natter's documented limits: 40 sends/s per sender (the budget is 50; group.create
// costs 10, a send 1: docs/protocol.md, "Frame costs"), at most 8 frames in flight per socket (16
// allowed), a RATE_LIMITED send retried after 1 s with the same cid. Then each device connects
// once (raw `ws`, a dev token from POST /dev/token, hello without cursor; 64 at a time, under
// edge.maxHellosInProgress), keeps welcome.cursor and leaves (close 1000). Then each group gets
// `missed` messages, so every user is exactly `missed` behind (the fan-out writes C × missed inbox
// copies); the bench waits until the workers' fan-out consumers have nothing pending (their lag on
// the workers' GET /metrics) and closes the senders.
//
// The storm (measured): all C sockets are opened in one tick to the one edge, each sending hello
// with its stored cursor as soon as it is open. A device turned away — an `error` frame with
// `retryAfterMs` (or a temporary UNAVAILABLE/TIMEOUT), then close 4503 — waits retryAfterMs (else
// 0.5–1 s) and comes back from the newest cursor it received, as the SDK does: counted in
// `retried`, not in errors. Any other `error` frame (INTERNAL above all), any other close, a
// missing, duplicate, foreign or out-of-order message, or a device not caught up by the deadline
// counts in `errors` (a device that met an error still comes back, so `resumed` says whether it
// recovered). A device's time runs from the storm's start to its last missed message, each one
// checked against its group's acked ids: every id once, ascending in cursor and in id. Meanwhile
// natter's RSS (its process, the workers' thread included; its nats-server reported apart) is read
// every 100 ms, the edge's GET /readyz is asked every ~100 ms (a 503, a failure or no answer
// within 2 s counts as not ready), and GET /discovery every second (discovery_missing: answers
// without the edge, its registration lapsed; discovery_failed: no answer within 2 s). The kernel's
// ListenOverflows counter (/proc/net/netstat, every socket of the network namespace: run nothing
// else) says how many connections found the edge's listen queue full (listen_overflows). The CPU
// natter's process (all its threads) and its nats-server used from the storm's start to its end
// (cpu_natter_s, cpu_nats_s: user + system) says what the storm cost whatever else ran on the
// machine. Devices heartbeat every welcome.heartbeatMs, as the SDK does.
// After the last device is caught up the bench listens 2 s more for late duplicates.
//
// Last line (times in ms from the storm's start, RSS in MB):
//   storm: clients=… resumed=… missed_each=… p50_ms=… p99_ms=… max_ms=… retried=… errors=… peak_rss_mb=… retried_clients=… not_ready=…
//     readyz_samples=… readyz_max_ms=… discovery_missing=… discovery_failed=… rss_before_mb=… peak_nats_rss_mb=…
//     log_warn=… log_error=… listen_overflows=… cpu_natter_s=… cpu_nats_s=…   (one line)
// How to read it: done means resumed = clients and errors = 0 (every missed message delivered once
// and in order), not_ready = 0 and discovery_missing = 0 (the edge stayed ready and registered),
// and peak_rss_mb bounded (rss_before_mb is natter before the storm: the difference is what the
// storm cost). `retried` counts the hellos admission turned away (retried_clients: the devices
// turned away at least once); p99_ms and max_ms say how long the last devices waited for their messages. natter's own log lines during the storm are counted
// by level (log_warn, log_error), so a flooded log shows; the stderr summary lists them by message
// (--natter-log keeps every line of the run in a file).
// Exit 1 (after the last line) when done is not met; with one line on stderr when natter does not
// start, the set-up fails, or the run passes --timeout-s.
import { appendFileSync, readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { WebSocket } from "ws";
import { type BenchNode, CLK_TCK, cpuTicks, devToken, openFileLimit, pooled, rssKb, startBenchNode, watchdog as benchWatchdog } from "./support.ts";

const { values } = parseArgs({
  options: {
    clients: { type: "string", default: "5000" },
    missed: { type: "string", default: "20" },
    "timeout-s": { type: "string", default: "300" },
    "natter-log": { type: "string" },
  },
});
const CLIENTS = Number(values.clients);
const MISSED = Number(values.missed);
const TIMEOUT_S = Number(values["timeout-s"]);
/** natter's log lines (JSON) are appended there too. */
const LOG_FILE = values["natter-log"];
/** A group: its sender and this many users (100 members, the most a group has). */
const PER_GROUP = 99;
const SENDERS = 8;
/** Per sender, under the budget of 50 sends/s; the burst kept low so that the pacing holds from the start. */
const SEND_RATE = 40;
const SEND_BURST = 40;
/** Frames in flight per sender socket (edge.maxInFlightPerSocket is 16). */
const SENDER_IN_FLIGHT = 8;
/** Costs in sends (docs/protocol.md, "Frame costs"). */
const COST = { "group.create": 10, send: 1 } as const;
const RATE_LIMITED_RETRY_MS = 1000;
const MAX_ATTEMPTS = 30;
/** Set-up connections at a time (edge.maxHellosInProgress is 128). */
const CONNECT_WIDTH = 64;
const REQUEST_TIMEOUT_MS = 30_000;
const SAMPLE_MS = 100;
const READYZ_TIMEOUT_MS = 2000;
const DISCOVERY_EVERY_MS = 1000;
const PROGRESS_MS = 5000;
const LINGER_MS = 2000;
/** What the watchdog leaves for stopping natter after the storm's deadline. */
const STOP_MARGIN_MS = 20_000;
const NODE_ENV = { NATTER_EDGE__MAX_PENDING_PER_ADDRESS: "0" };
const say = (line: string) => process.stderr.write(`${line}\n`);

/** The kernel's count of connections dropped because a listen queue was full (all sockets of this network namespace). */
function listenOverflows(): number {
  try {
    const lines = readFileSync("/proc/net/netstat", "utf8").split("\n").filter((l) => l.startsWith("TcpExt:"));
    const [names, nums] = [lines[0]?.split(" ") ?? [], lines[1]?.split(" ") ?? []];
    const i = names.indexOf("ListenOverflows");
    return i > 0 ? Number(nums[i]) : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

const count = (m: Map<string, number>, key: string) => m.set(key, (m.get(key) ?? 0) + 1);
const listed = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${n}× ${k}`).join("; ");
const wsUrl = (url: string) => `${url.replace(/^http/, "ws")}/ws`;

type Frame = {
  type: string;
  ref?: string;
  code?: string;
  message?: string;
  temporary?: boolean;
  retryAfterMs?: number;
  cursor?: number;
  heartbeatMs?: number;
  conv?: string | { id: string };
  id?: number;
  dup?: boolean;
};

// ---- natter's log ----

/** natter's log lines, counted by level and message (JSON lines from pino). */
const natterLog = { warn: 0, error: 0, byMessage: new Map<string, number>(), errorsShown: 0 };
function onLogLine(line: string): void {
  if (LOG_FILE) appendFileSync(LOG_FILE, `${line}\n`);
  let rec: { level?: number; msg?: string };
  try {
    rec = JSON.parse(line);
  } catch {
    say(`natter: ${line}`);
    return;
  }
  const level = rec.level ?? 0;
  if (level >= 50) natterLog.error++;
  else if (level >= 40) natterLog.warn++;
  else return;
  count(natterLog.byMessage, `${level >= 50 ? "error" : "warn"}: ${rec.msg ?? "?"}`);
  if (level >= 50 && natterLog.errorsShown++ < 5) say(`natter error: ${line.slice(0, 600)}`);
}

// ---- set-up: senders ----

/** A sender's socket: requests by ref, paced under the user's budget and the in-flight bound. */
class Sender {
  readonly ws: WebSocket;
  readonly welcome: Promise<void>;
  readonly #pending = new Map<string, { resolve: (f: Frame) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  #ref = 0;
  #tokens = SEND_BURST;
  #at = performance.now();
  #gate: Promise<void> = Promise.resolve();
  readonly user: string;

  constructor(url: string, user: string, token: string) {
    this.user = user;
    this.ws = new WebSocket(wsUrl(url), { perMessageDeflate: false });
    this.welcome = new Promise((resolve, reject) => {
      this.ws.on("open", () => this.ws.send(JSON.stringify({ type: "hello", v: 1, token, device: "s" })));
      this.ws.on("error", (err) => reject(new Error(`${user}: ${err.message}`)));
      this.ws.on("close", (code) => {
        reject(new Error(`${user}: closed ${code} before welcome`));
        for (const p of this.#pending.values()) {
          clearTimeout(p.timer);
          p.reject(new Error(`${user}: socket closed ${code}`));
        }
        this.#pending.clear();
      });
      this.ws.on("message", (data: Buffer) => {
        const f = JSON.parse(String(data)) as Frame;
        if (f.type === "welcome") return resolve();
        const waiter = f.ref === undefined ? undefined : this.#pending.get(f.ref);
        if (!waiter) return; // its own copies of the group's messages, the groups' events
        this.#pending.delete(f.ref!);
        clearTimeout(waiter.timer);
        waiter.resolve(f);
      });
    });
  }

  /** Waits until the budget (SEND_RATE/s, as the user's own budget refills) can pay `cost`. */
  #pace(cost: number): Promise<void> {
    const turn = this.#gate.then(async () => {
      for (;;) {
        const now = performance.now();
        this.#tokens = Math.min(SEND_BURST, this.#tokens + ((now - this.#at) / 1000) * SEND_RATE);
        this.#at = now;
        if (this.#tokens >= cost) break;
        await sleep(((cost - this.#tokens) / SEND_RATE) * 1000 + 1);
      }
      this.#tokens -= cost;
    });
    this.#gate = turn;
    return turn;
  }

  /** One request; RATE_LIMITED (nothing done) is tried again after a second, any other error throws. */
  async request(frame: Record<string, unknown> & { type: keyof typeof COST }): Promise<Frame> {
    for (let attempt = 1; ; attempt++) {
      await this.#pace(COST[frame.type]);
      const ref = String(++this.#ref);
      const reply = await new Promise<Frame>((resolve, reject) => {
        const timer = setTimeout(() => {
          this.#pending.delete(ref);
          reject(new Error(`${this.user}: no answer to ${frame.type} within ${REQUEST_TIMEOUT_MS / 1000} s`));
        }, REQUEST_TIMEOUT_MS);
        this.#pending.set(ref, { resolve, reject, timer });
        this.ws.send(JSON.stringify({ ...frame, ref }));
      });
      if (reply.type !== "error") return reply;
      if (reply.code !== "RATE_LIMITED" || attempt >= MAX_ATTEMPTS) throw new Error(`${this.user}: ${frame.type} refused: ${reply.code} ${reply.message}`);
      await sleep(RATE_LIMITED_RETRY_MS);
    }
  }
}

/** `jobs` spread over the senders, SENDER_IN_FLIGHT lanes each. */
async function onSenders<T>(senders: Sender[], jobs: T[], senderOf: (job: T) => number, run: (s: Sender, job: T) => Promise<void>): Promise<void> {
  await Promise.all(
    senders.map(async (s, k) => {
      const mine = jobs.filter((j) => senderOf(j) === k);
      await pooled(mine.length, SENDER_IN_FLIGHT, (i) => run(s, mine[i]!));
    }),
  );
}

/** A device's first connect: hello without cursor, welcome.cursor kept, close 1000. Refusals under load are waited out. */
async function learnCursor(url: string, token: string, deadline: number): Promise<number> {
  for (;;) {
    const r = await new Promise<{ cursor?: number; retryAfterMs?: number; why?: string }>((resolve) => {
      const ws = new WebSocket(wsUrl(url), { perMessageDeflate: false });
      let retryAfterMs: number | undefined;
      let settled = false;
      const done = (v: { cursor?: number; retryAfterMs?: number; why?: string }) => {
        if (!settled) resolve(v);
        settled = true;
      };
      ws.on("open", () => ws.send(JSON.stringify({ type: "hello", v: 1, token, device: "d" })));
      ws.on("message", (data: Buffer) => {
        const f = JSON.parse(String(data)) as Frame;
        if (f.type === "welcome") {
          done({ cursor: f.cursor! });
          ws.close(1000);
        } else if (f.type === "error") {
          if (f.retryAfterMs !== undefined) retryAfterMs = f.retryAfterMs;
          else done({ why: `${f.code}: ${f.message}` });
        }
      });
      ws.on("error", () => undefined); // the close follows
      ws.on("close", (code) => done(code === 4503 && retryAfterMs !== undefined ? { retryAfterMs } : { why: `closed ${code} before welcome` }));
    });
    if (r.cursor !== undefined) return r.cursor;
    if (r.retryAfterMs === undefined) throw new Error(`set-up connect failed: ${r.why}`);
    if (performance.now() + r.retryAfterMs > deadline) throw new Error("set-up connects did not finish in time");
    await sleep(r.retryAfterMs);
  }
}

/** Sum of the fan-out consumers' pending messages (unprocessed + ack pending) on the workers' /metrics. */
async function fanoutPending(workersUrl: string): Promise<number> {
  const text = await (await fetch(`${workersUrl}/metrics`)).text();
  let n = 0;
  let seen = false;
  for (const line of text.split("\n")) {
    if (!line.startsWith("natter_consumer_pending_messages{") || !line.includes('consumer="fanout"')) continue;
    seen = true;
    n += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  if (!seen) throw new Error("the workers' /metrics has no natter_consumer_pending_messages for the fan-out");
  return n;
}

async function fanoutDone(workersUrl: string, deadline: number): Promise<void> {
  let zeros = 0;
  while (zeros < 2) {
    if (performance.now() > deadline) throw new Error("the fan-out did not finish in time");
    zeros = (await fanoutPending(workersUrl)) === 0 ? zeros + 1 : 0;
    await sleep(200);
  }
}

// ---- the storm ----

const tally = { resumed: 0, retried: 0, retriedClients: 0, errors: 0, opens: 0 };
const retryReasons = new Map<string, number>();
const errorKinds = new Map<string, number>();
function fail(kind: string): void {
  tally.errors++;
  count(errorKinds, kind);
}

/** One device in the storm: hello with its cursor, the missed messages checked, retries as told. */
class StormClient {
  readonly #url: string;
  readonly #token: string;
  readonly #conv: string;
  /** Its group's acked message ids, ascending: what it must receive, in this order. */
  readonly #expected: readonly number[];
  readonly #t0: number;
  #cursor: number;
  #got = 0;
  doneAt = Number.NaN;
  #ws: WebSocket | undefined;
  #beat: NodeJS.Timeout | undefined;
  #retry: { retryAfterMs: number | undefined; code: string } | undefined;
  #stopped = false;
  #retried = false;
  #timer: NodeJS.Timeout | undefined;

  constructor(url: string, token: string, cursor: number, conv: string, expected: readonly number[], t0: number) {
    this.#url = url;
    this.#token = token;
    this.#cursor = cursor;
    this.#conv = conv;
    this.#expected = expected;
    this.#t0 = t0;
  }

  open(): void {
    if (this.#stopped) return;
    tally.opens++;
    this.#retry = undefined;
    const ws = new WebSocket(wsUrl(this.#url), { perMessageDeflate: false, handshakeTimeout: 60_000 });
    this.#ws = ws;
    ws.on("open", () => ws.send(JSON.stringify({ type: "hello", v: 1, token: this.#token, device: "d", cursor: this.#cursor })));
    ws.on("message", (data: Buffer) => this.#frame(JSON.parse(String(data)) as Frame));
    ws.on("error", (err) => count(retryReasons, `socket error ${(err as { code?: string }).code ?? err.message}`));
    ws.on("close", (code) => this.#closed(ws, code));
  }

  #frame(f: Frame): void {
    switch (f.type) {
      case "welcome":
        if (f.cursor !== this.#cursor) fail(`welcome.cursor ${f.cursor} for hello cursor ${this.#cursor}`);
        clearInterval(this.#beat);
        if (f.heartbeatMs) this.#beat = setInterval(() => this.#ws?.readyState === WebSocket.OPEN && this.#ws.send('{"type":"ping"}'), f.heartbeatMs);
        return;
      case "msg": {
        if (f.conv !== this.#conv) return fail("a message of another conversation");
        if (!(typeof f.cursor === "number" && f.cursor > this.#cursor)) return fail("a message at or before the cursor (duplicate or out of order)");
        const want = this.#expected[this.#got];
        if (want === undefined) return fail("more messages than were sent");
        if (f.id !== want) return fail(f.id! < want ? "a duplicate message" : "a message missing (a later one came first)");
        this.#cursor = f.cursor;
        this.#got++;
        if (this.#got === this.#expected.length) {
          this.doneAt = performance.now() - this.#t0;
          tally.resumed++;
        }
        return;
      }
      case "error":
        if (f.code === "INTERNAL" || !f.temporary) return fail(`error ${f.code}`);
        if (f.retryAfterMs !== undefined || f.code === "UNAVAILABLE" || f.code === "TIMEOUT" || f.code === "TOO_MANY_CONNECTIONS") {
          this.#retry = { retryAfterMs: f.retryAfterMs, code: f.code! };
          return;
        }
        return fail(`error ${f.code}`);
      case "pong":
        return;
      default:
        return fail(`an unexpected ${f.type} frame`);
    }
  }

  #closed(ws: WebSocket, code: number): void {
    if (ws !== this.#ws) return;
    clearInterval(this.#beat);
    this.#ws = undefined;
    if (this.#stopped) return;
    let delay: number;
    if (code === 4503 && this.#retry) {
      tally.retried++;
      if (!this.#retried) tally.retriedClients++;
      this.#retried = true;
      count(retryReasons, `${this.#retry.code} ${this.#retry.retryAfterMs === undefined ? "without" : "with"} retryAfterMs`);
      delay = this.#retry.retryAfterMs ?? 500 + Math.random() * 500;
    } else {
      fail(`close ${code}${this.#retry ? ` after ${this.#retry.code}` : ""}`);
      delay = 500 + Math.random() * 500;
    }
    this.#timer = setTimeout(() => this.open(), delay);
  }

  get done(): boolean {
    return this.#got === this.#expected.length;
  }

  /** Stops for good: a clean close, no more reconnects. Counts a device not caught up as an error. */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    clearTimeout(this.#timer);
    clearInterval(this.#beat);
    if (!this.done) fail("not caught up by the deadline");
    this.#ws?.close(1000);
  }
}

/** natter's RSS and the edge's /readyz and /discovery, sampled while the storm runs. */
class Watch {
  peakRssKb = 0;
  peakNatsRssKb = 0;
  readyzSamples = 0;
  notReady = 0;
  readyzMaxMs = 0;
  discoverySamples = 0;
  discoveryMissing = 0;
  discoveryFailed = 0;
  readonly reasons = new Map<string, number>();
  #running = true;
  readonly #loops: Promise<void>[];

  constructor(node: BenchNode, natsPid: number) {
    const rss = async () => {
      while (this.#running) {
        try {
          this.peakRssKb = Math.max(this.peakRssKb, rssKb(node.pid));
          this.peakNatsRssKb = Math.max(this.peakNatsRssKb, rssKb(natsPid));
        } catch {
          // the process is gone: the run fails elsewhere
        }
        await sleep(SAMPLE_MS);
      }
    };
    const readyz = async () => {
      while (this.#running) {
        const t = performance.now();
        let why: string | undefined;
        try {
          const r = await fetch(`${node.url}/readyz`, { signal: AbortSignal.timeout(READYZ_TIMEOUT_MS) });
          const body = (await r.json()) as { checks?: Record<string, { ok: boolean; detail?: string }> };
          if (!r.ok) {
            why = Object.entries(body.checks ?? {})
              .filter(([, c]) => !c.ok)
              .map(([k, c]) => `${k}: ${c.detail ?? "not ok"}`)
              .join(", ");
          }
        } catch (err) {
          why = (err as Error).name === "TimeoutError" ? `no answer within ${READYZ_TIMEOUT_MS} ms` : (err as Error).message;
        }
        const ms = performance.now() - t;
        this.readyzSamples++;
        this.readyzMaxMs = Math.max(this.readyzMaxMs, ms);
        if (why !== undefined) {
          this.notReady++;
          count(this.reasons, `readyz ${why}`);
        }
        await sleep(Math.max(0, SAMPLE_MS - ms));
      }
    };
    const discovery = async () => {
      while (this.#running) {
        try {
          const r = await fetch(`${node.url}/discovery?limit=100`, { signal: AbortSignal.timeout(READYZ_TIMEOUT_MS) });
          const body = (await r.json()) as { edges?: { url: string }[] };
          this.discoverySamples++;
          if (!body.edges?.some((e) => e.url === node.url)) {
            this.discoveryMissing++;
            count(this.reasons, `discovery without this edge (${r.status})`);
          }
        } catch (err) {
          this.discoverySamples++;
          this.discoveryFailed++;
          count(this.reasons, `discovery failed: ${(err as Error).name === "TimeoutError" ? `no answer within ${READYZ_TIMEOUT_MS} ms` : (err as Error).message}`);
        }
        await sleep(DISCOVERY_EVERY_MS);
      }
    };
    this.#loops = [rss(), readyz(), discovery()];
  }

  async stop(): Promise<void> {
    this.#running = false;
    await Promise.all(this.#loops);
  }
}

const pct = (sorted: Float64Array, q: number) => (sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!);

async function main(): Promise<number> {
  if (!(Number.isInteger(CLIENTS) && CLIENTS >= 1 && CLIENTS <= 50_000)) throw new Error("--clients 1…50000");
  if (!(Number.isInteger(MISSED) && MISSED >= 1 && MISSED <= 1000)) throw new Error("--missed 1…1000");
  if (!(TIMEOUT_S >= 30 && TIMEOUT_S <= 3600)) throw new Error("--timeout-s 30…3600");
  const fdsNeeded = 2 * CLIENTS + 500;
  const fds = openFileLimit();
  if (fds < fdsNeeded) throw new Error(`the open-file limit (ulimit -n) is ${fds}; ${CLIENTS} clients need ${fdsNeeded} (natter and the bench hold one per socket each): run \`ulimit -n ${fdsNeeded}\` first`);

  const started = performance.now();
  const deadline = started + TIMEOUT_S * 1000 - STOP_MARGIN_MS;
  const groups = Math.ceil(CLIENTS / PER_GROUP);
  const senderCount = Math.min(SENDERS, groups);
  const sockets: WebSocket[] = [];
  const clients: StormClient[] = [];
  let node: BenchNode | undefined;
  const watchdog = benchWatchdog("storm", TIMEOUT_S, () => node, () => {
    for (const c of clients) c.stop();
    for (const ws of sockets) ws.terminate();
  });
  try {
    node = await startBenchNode(NODE_ENV, { onLogLine });
    const natsPid = node.natsPid();
    say(`natter at ${node.url} (pid ${node.pid}, nats-server pid ${natsPid}); ${CLIENTS} clients, ${MISSED} missed each, ${groups} groups, ${senderCount} senders`);

    // ---- set-up ----
    const t0 = performance.now();
    const users = Array.from({ length: CLIENTS }, (_, i) => `u${i}`);
    const tokens: string[] = new Array(CLIENTS);
    await pooled(CLIENTS, 32, async (i) => {
      tokens[i] = await devToken(node!.url, users[i]!);
    });
    const senders: Sender[] = [];
    for (let k = 0; k < senderCount; k++) {
      const s = new Sender(node.url, `s${k}`, await devToken(node.url, `s${k}`));
      sockets.push(s.ws);
      senders.push(s);
      await s.welcome;
    }
    const groupIds = Array.from({ length: groups }, (_, g) => g);
    const senderOf = (g: number) => g % senderCount;
    const convOf: string[] = new Array(groups);
    await onSenders(senders, groupIds, senderOf, async (s, g) => {
      const members = users.slice(g * PER_GROUP, (g + 1) * PER_GROUP);
      const f = await s.request({ type: "group.create", name: `storm ${g}`, members });
      if (f.type !== "conv" || typeof f.conv !== "object") throw new Error(`group.create answered ${f.type}`);
      convOf[g] = f.conv.id;
    });
    await fanoutDone(node.workersUrl, deadline);
    say(`set-up: ${groups} groups of up to ${PER_GROUP + 1} members (${((performance.now() - t0) / 1000).toFixed(1)} s)`);

    const cursors = new Float64Array(CLIENTS);
    await pooled(CLIENTS, CONNECT_WIDTH, async (i) => {
      cursors[i] = await learnCursor(node!.url, tokens[i]!, deadline);
    });
    say(`set-up: ${CLIENTS} devices connected once for their cursor (${((performance.now() - t0) / 1000).toFixed(1)} s)`);

    const acked: number[][] = groupIds.map(() => []);
    const sends = groupIds.flatMap((g) => Array.from({ length: MISSED }, (_, k) => ({ g, k })));
    await onSenders(senders, sends, (j) => senderOf(j.g), async (s, { g, k }) => {
      const f = await s.request({ type: "send", conv: convOf[g], cid: `storm-${g}-${k}`, text: `storm ${g} #${k}` });
      if (f.type !== "ack" || typeof f.id !== "number") throw new Error(`send answered ${f.type}`);
      acked[g]!.push(f.id);
    });
    for (const ids of acked) ids.sort((a, b) => a - b);
    await fanoutDone(node.workersUrl, deadline);
    for (const s of senders) s.ws.close(1000);
    await sleep(2000); // the senders' leaves, the last writes: the storm starts on a quiet node
    const rssBefore = rssKb(node.pid);
    say(
      `set-up: ${sends.length} messages sent, ${CLIENTS * MISSED} inbox copies written; natter RSS ${(rssBefore / 1024).toFixed(0)} MB ` +
        `(${((performance.now() - t0) / 1000).toFixed(1)} s in all)`,
    );
    const logBefore = { warn: natterLog.warn, error: natterLog.error };
    natterLog.byMessage.clear();

    // ---- the storm ----
    const overflowsBefore = listenOverflows();
    const cpuBefore = { natter: cpuTicks(node.pid), nats: cpuTicks(natsPid) };
    const watch = new Watch(node, natsPid);
    const stormT0 = performance.now();
    for (let i = 0; i < CLIENTS; i++) {
      const g = Math.floor(i / PER_GROUP);
      clients.push(new StormClient(node.url, tokens[i]!, cursors[i]!, convOf[g]!, acked[g]!, stormT0));
    }
    for (const c of clients) c.open(); // one tick
    say(`storm: ${CLIENTS} sockets opened in ${(performance.now() - stormT0).toFixed(0)} ms`);
    const progress = setInterval(() => {
      say(
        `  storm ${Math.round((performance.now() - stormT0) / 1000)} s: resumed ${tally.resumed}/${CLIENTS}, retried ${tally.retried}, errors ${tally.errors}, ` +
          `not ready ${watch.notReady}/${watch.readyzSamples}, natter RSS ${(watch.peakRssKb / 1024).toFixed(0)} MB peak, log ${natterLog.warn - logBefore.warn} warn ${natterLog.error - logBefore.error} error`,
      );
    }, PROGRESS_MS);
    while (tally.resumed < CLIENTS && performance.now() < deadline) await sleep(50);
    const stormMs = performance.now() - stormT0;
    if (tally.resumed === CLIENTS) await sleep(LINGER_MS); // late duplicates
    clearInterval(progress);
    await watch.stop();
    for (const c of clients) c.stop();
    const overflows = listenOverflows() - overflowsBefore;
    const cpuS = (ticks: number) => (ticks / CLK_TCK).toFixed(1);
    const cpu = { natter: cpuS(cpuTicks(node.pid) - cpuBefore.natter), nats: cpuS(cpuTicks(natsPid) - cpuBefore.nats) };

    const times = Float64Array.from(clients.filter((c) => c.done).map((c) => c.doneAt)).sort();
    const r0 = (x: number) => (Number.isNaN(x) ? "NaN" : x.toFixed(0));
    say(
      `storm: ${tally.resumed}/${CLIENTS} caught up in ${(stormMs / 1000).toFixed(1)} s; ${tally.opens} sockets opened; ` +
        `readyz ${watch.readyzSamples} samples, ${watch.notReady} not ready, slowest ${watch.readyzMaxMs.toFixed(0)} ms; discovery ${watch.discoverySamples} samples, ${watch.discoveryMissing} without the edge, ${watch.discoveryFailed} failed`,
    );
    if (retryReasons.size) say(`retries and socket errors: ${listed(retryReasons)}`);
    if (errorKinds.size) say(`errors: ${listed(errorKinds)}`);
    if (watch.reasons.size) say(`not ready / not registered: ${listed(watch.reasons)}`);
    const logWarn = natterLog.warn - logBefore.warn;
    const logError = natterLog.error - logBefore.error;
    if (natterLog.byMessage.size) say(`natter log during the storm: ${listed(natterLog.byMessage)}`);
    say(`${((performance.now() - started) / 1000).toFixed(0)} s in all`);
    process.stdout.write(
      `storm: clients=${CLIENTS} resumed=${tally.resumed} missed_each=${MISSED} p50_ms=${r0(pct(times, 0.5))} p99_ms=${r0(pct(times, 0.99))} ` +
        `max_ms=${r0(times[times.length - 1] ?? Number.NaN)} retried=${tally.retried} errors=${tally.errors} peak_rss_mb=${Math.round(watch.peakRssKb / 1024)} ` +
        `retried_clients=${tally.retriedClients} not_ready=${watch.notReady} readyz_samples=${watch.readyzSamples} readyz_max_ms=${r0(watch.readyzMaxMs)} discovery_missing=${watch.discoveryMissing} discovery_failed=${watch.discoveryFailed} ` +
        `rss_before_mb=${Math.round(rssBefore / 1024)} peak_nats_rss_mb=${Math.round(watch.peakNatsRssKb / 1024)} log_warn=${logWarn} log_error=${logError} listen_overflows=${overflows} ` +
        `cpu_natter_s=${cpu.natter} cpu_nats_s=${cpu.nats}\n`,
    );
    const wrong = [
      tally.resumed < CLIENTS && `${CLIENTS - tally.resumed} devices not caught up`,
      tally.errors > 0 && `${tally.errors} errors`,
      watch.notReady > 0 && `${watch.notReady} not-ready samples`,
      watch.discoveryMissing > 0 && `${watch.discoveryMissing} discovery answers without the edge`,
    ].filter(Boolean);
    if (wrong.length) {
      say(`bench:storm: not done: ${wrong.join(", ")}`);
      return 1;
    }
    return 0;
  } finally {
    for (const c of clients) c.stop();
    for (const ws of sockets) ws.close(1000);
    await node?.stop();
    clearTimeout(watchdog);
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    say(`bench:storm failed: ${(err as Error).message}`);
    process.exitCode = 1;
  },
);
