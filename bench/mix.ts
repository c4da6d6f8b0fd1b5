// npm run bench:mix [-- --clients 500] [--window 15] [--quick] [--timeout-s 240]
// natter on a chat-like mix: the workload the shared side-by-side driver runs against natter
// (peers/socketio/driver.mjs with adapters/natter.mjs), written here against docs/protocol.md.
//
// It starts a single-node natter (`natter start --dev`: its own process, with its embedded
// nats-server, on free ports, in a temp folder) with NATTER_EDGE__SENDS_PER_SECOND=10000, the
// schema's maximum, and NATTER_EDGE__MAX_IN_FLIGHT_PER_SOCKET=64: eight sender sockets carry every
// send, up to 32 in flight each, and this measures throughput, not the per-user send limit (50/s
// by default) or the in-flight bound (16).
//
// Users: receivers u0…u{C-1} (device "d") and senders s0…s7, one socket each; raw `ws` clients,
// hello without cursor, a ping every welcome.heartbeatMs. Sender i % 8 opens a 1:1 with u<i>;
// sender g % 8 creates group g with u{10g}…u{10g+9}. A send goes to a random 1:1 (75 %) or a random
// group (25 %) and its text is a JSON payload with the bench's id and the send time, so every
// delivery is checked: lost (an accepted message a recipient never got by the end of the drain),
// duplicated, out of order (per conversation, and the inbox cursor per device), wrong recipient.
// Senders' own copies are skipped by their first bytes; receivers ignore every other frame.
//
//   1. peak: closed loop with 8, then 32 sends in flight; 5 s warm-up, then a --window (15 s)
//      measured: deliveries/s = deliveries received in the window / its length. The better run
//      counts, with the CPU of natter's process (all its threads) and of its nats-server over its
//      window, in % of one core (/proc/<pid>/stat utime + stime).
//   2. half load: open loop at 50 % of that run's accepted msgs/s, sends on a fixed schedule (the
//      payload carries the scheduled time, so waiting in the bench counts as latency), at most 2,000
//      in flight (the rest is shed and reported); 5 s warm-up, then --window measured: p50 and p99 of
//      send → deliver over the messages scheduled in the window.
//   3. idle memory, on a fresh node (after load, V8 keeps the traffic's heap until its memory
//      reducer runs tens of seconds later, and new connections fill that freed space: a delta there
//      comes out near zero or negative): natter's RSS, settled 3 s, before and after 5,000 idle
//      authenticated clients connect (u0…u4999, heartbeating), over 5,000; no forced GC.
// After each traffic phase the bench waits up to 10 s for every accepted message's deliveries.
// Over 400 lines on purpose: one workload, its checks and its three phases read top to bottom,
// like the side-by-side driver it mirrors.
// --quick: 50 clients, 5 s windows, 2 s warm-ups, 500 connections for the idle figure.
// Both bench and natter hold a descriptor per socket: too low a `ulimit -n` stops the run at once.
//
// Last line (cpu in % of one core, latencies in ms):
//   mix: clients=… deliveries_per_s=… half_load_msgs_per_s=… p50_ms=… p99_ms=… lost=… dups=… cpu_node=… cpu_nats=… rss_kb_per_conn=…
// Exit 1 with one line on stderr when natter does not start, a delivery was lost, duplicated, out
// of order or misaddressed (after the summary line), or the run passes --timeout-s.
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { WebSocket } from "ws";
import { type BenchNode, CLK_TCK, cpuTicks, rssKb, startBenchNode, watchdog as benchWatchdog } from "./support.ts";

const { values } = parseArgs({
  options: {
    clients: { type: "string" },
    window: { type: "string" },
    quick: { type: "boolean", default: false },
    "timeout-s": { type: "string", default: "240" },
  },
});
const QUICK = values.quick;
const CLIENTS = Number(values.clients ?? (QUICK ? 50 : 500));
const WINDOW_MS = Number(values.window ?? (QUICK ? 5 : 15)) * 1000;
const WARMUP_MS = (QUICK ? 2 : 5) * 1000;
const CONNECTIONS_IDLE = QUICK ? 500 : 5000;
const TIMEOUT_S = Number(values["timeout-s"]);
const SENDERS = 8;
const GROUP_SIZE = 10;
const GROUP_SHARE = 0.25;
const IN_FLIGHT_TRIED = [8, 32];
const OPEN_LOOP_MAX_IN_FLIGHT = 2000;
const MAX_MESSAGES = 2_000_000;
const DRAIN_MS = 10_000;
const SETTLE_MS = 3000;
const REQUEST_TIMEOUT_MS = 15_000;
const WELCOME_TIMEOUT_MS = 30_000;
const PROGRESS_MS = 5000;
const CONNECT_BATCH = 100;
const PAD = "x".repeat(64);
const GROUPS = CLIENTS / GROUP_SIZE;
/** Throughput, not the send limit: the schema's maximum (default 50/s per device). */
const NODE_ENV = { NATTER_EDGE__SENDS_PER_SECOND: "10000", NATTER_EDGE__MAX_IN_FLIGHT_PER_SOCKET: "64" };
const say = (line: string) => process.stderr.write(`${line}\n`);

/** The soft limit on open files (`ulimit -n`): natter and the bench each hold a descriptor per socket. */
function openFileLimit(): number {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync("/proc/self/limits", "utf8"));
  return !m || m[1] === "unlimited" ? Number.POSITIVE_INFINITY : Number(m[1]);
}


// ---- bookkeeping ----

/** Every message sent, by the bench's id: whom it is for, whether natter accepted it, who got it. */
class Ledger {
  count = 0;
  readonly #group = new Uint8Array(MAX_MESSAGES);
  readonly #target = new Int32Array(MAX_MESSAGES); // receiver (1:1) or group index
  readonly #state = new Uint8Array(MAX_MESSAGES); // 0 in flight, 1 accepted, 2 refused
  readonly #got = new Uint16Array(MAX_MESSAGES); // one bit per recipient (group member i % 10)
  readonly #measured = new Uint8Array(MAX_MESSAGES);

  add(group: boolean, target: number, measured: boolean): number | undefined {
    if (this.count >= MAX_MESSAGES) return undefined;
    const id = this.count++;
    this.#group[id] = group ? 1 : 0;
    this.#target[id] = target;
    this.#measured[id] = measured ? 1 : 0;
    return id;
  }
  settle(id: number, accepted: boolean): void {
    this.#state[id] = accepted ? 1 : 2;
  }
  isGroup(id: number): boolean {
    return this.#group[id] === 1;
  }
  measured(id: number): boolean {
    return this.#measured[id] === 1;
  }
  /** Records that `receiver` got message `id`. */
  receive(id: number, receiver: number): "first" | "dup" | "wrong" {
    if (!(Number.isInteger(id) && id >= 0 && id < this.count)) return "wrong";
    const group = this.#group[id] === 1;
    if ((group ? Math.floor(receiver / GROUP_SIZE) : receiver) !== this.#target[id]) return "wrong";
    const bit = group ? 1 << (receiver % GROUP_SIZE) : 1;
    if (this.#got[id]! & bit) return "dup";
    this.#got[id]! |= bit;
    return "first";
  }
  /** Deliveries still owed for the accepted messages in [from, count). */
  missing(from = 0): number {
    let n = 0;
    for (let id = from; id < this.count; id++) {
      if (this.#state[id] !== 1) continue;
      const owed = (this.#group[id] === 1 ? (1 << GROUP_SIZE) - 1 : 1) & ~this.#got[id]!;
      for (let b = owed; b !== 0; b &= b - 1) n++;
    }
    return n;
  }
  /** Messages natter refused (an error reply) that were delivered anyway. */
  refusedButDelivered(): number {
    let n = 0;
    for (let id = 0; id < this.count; id++) if (this.#state[id] === 2 && this.#got[id] !== 0) n++;
    return n;
  }
}

const ledger = new Ledger();
const tally = { sent: 0, accepted: 0, refused: 0, shed: 0, delivered: 0, lost: 0, dups: 0, wrong: 0, outOfOrder: 0, strayErrors: 0 };
const refusals = new Map<string, number>();
const closes = new Map<string, number>();
const count = (m: Map<string, number>, key: string) => m.set(key, (m.get(key) ?? 0) + 1);
const lastCursor = new Float64Array(CLIENTS).fill(-1);
const lastDmId = new Float64Array(CLIENTS).fill(-1);
const lastGroupId = new Float64Array(CLIENTS).fill(-1);
let latencies = new Float64Array(1 << 16);
let latencyCount = 0;
/** Set when a sender's socket closed under load: the phase stops and the run fails with it. */
let broken: string | undefined;

/** A receiver's `msg` frame: checks the delivery and keeps its latency when the message is measured. */
function onDelivery(receiver: number, frame: Buffer): void {
  const at = performance.now();
  let f: { cursor: number; id: number; text: string };
  let p: { id: number; ts: number };
  try {
    f = JSON.parse(String(frame));
    p = JSON.parse(f.text);
  } catch {
    tally.wrong++; // not a message of this run
    return;
  }
  const got = ledger.receive(p.id, receiver);
  if (got === "wrong") {
    tally.wrong++;
    return;
  }
  if (got === "dup") {
    tally.dups++;
    return;
  }
  tally.delivered++;
  const last = ledger.isGroup(p.id) ? lastGroupId : lastDmId;
  if (f.id <= last[receiver]! || f.cursor <= lastCursor[receiver]!) tally.outOfOrder++;
  last[receiver] = Math.max(last[receiver]!, f.id);
  lastCursor[receiver] = Math.max(lastCursor[receiver]!, f.cursor);
  if (ledger.measured(p.id)) {
    if (latencyCount === latencies.length && latencies.length < 1 << 24) {
      const more = new Float64Array(latencies.length * 2);
      more.set(latencies);
      latencies = more;
    }
    if (latencyCount < latencies.length) latencies[latencyCount++] = at - p.ts;
  }
}

// ---- the wire ----

type Frame = { type: string; ref?: string; code?: string; message?: string; heartbeatMs?: number; conv?: { id: string }; dup?: boolean };
const MSG_PREFIX = Buffer.from('{"type":"msg"');

/** One device over a raw `ws` socket: hello, heartbeat, requests by `ref`; `msg` frames to `onMsg`. */
class Device {
  readonly ws: WebSocket;
  readonly welcome: Promise<void>;
  readonly #pending = new Map<string, { resolve: (f: Frame) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  #phase: NodeJS.Timeout | undefined;
  #beat: NodeJS.Timeout | undefined;
  #ref = 0;
  #closing = false;

  constructor(url: string, user: string, token: string, device: string, onMsg?: (frame: Buffer) => void) {
    this.ws = new WebSocket(`${url.replace(/^http/, "ws")}/ws`, { perMessageDeflate: false });
    this.welcome = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${user}: no welcome within ${WELCOME_TIMEOUT_MS / 1000} s`)), WELCOME_TIMEOUT_MS);
      let welcomed = false;
      this.ws.on("error", (err) => {
        if (!welcomed) reject(new Error(`${user}: ${err.message}`));
      });
      this.ws.on("close", (code, reason) => {
        clearTimeout(timer);
        this.#stopHeartbeat();
        for (const p of this.#pending.values()) {
          clearTimeout(p.timer);
          p.reject(new Error(`socket closed ${code}`));
        }
        this.#pending.clear();
        if (!welcomed) reject(new Error(`${user}: closed ${code} ${String(reason)} before welcome`));
        else if (!this.#closing) count(closes, `${code}${reason.length ? ` ${String(reason)}` : ""}`);
      });
      this.ws.on("message", (data: Buffer) => {
        if (data.length > MSG_PREFIX.length && MSG_PREFIX.equals(data.subarray(0, MSG_PREFIX.length))) return onMsg?.(data);
        const f = JSON.parse(String(data)) as Frame;
        const waiter = f.ref === undefined ? undefined : this.#pending.get(f.ref);
        if (waiter) {
          this.#pending.delete(f.ref!);
          clearTimeout(waiter.timer);
          return f.type === "error" ? waiter.reject(new Error(`${f.code}: ${f.message}`)) : waiter.resolve(f);
        }
        if (f.type === "welcome") {
          welcomed = true;
          clearTimeout(timer);
          this.#startHeartbeat(f.heartbeatMs ?? 0);
          return resolve();
        }
        if (f.type === "error") {
          if (!welcomed) return reject(new Error(`${user}: ${f.code}: ${f.message}`));
          tally.strayErrors++;
        }
      });
    });
    this.ws.once("open", () => this.ws.send(JSON.stringify({ type: "hello", v: 1, token, device })));
  }

  request(frame: Record<string, unknown>, ref = `r${++this.#ref}`): Promise<Frame> {
    return new Promise((resolve, reject) => {
      if (this.ws.readyState !== WebSocket.OPEN) return reject(new Error("socket not open"));
      const timer = setTimeout(() => {
        this.#pending.delete(ref);
        reject(new Error(`no reply within ${REQUEST_TIMEOUT_MS / 1000} s`));
      }, REQUEST_TIMEOUT_MS);
      this.#pending.set(ref, { resolve, reject, timer });
      this.ws.send(JSON.stringify({ ...frame, ref }));
    });
  }

  close(): void {
    this.#closing = true;
    this.#stopHeartbeat();
    this.ws.close(1000);
  }

  /** A `ping` every heartbeatMs from a random phase, as a real client keeps its presence. */
  #startHeartbeat(every: number): void {
    if (!(every > 0)) return;
    const beat = () => {
      if (this.ws.readyState === WebSocket.OPEN) this.ws.send('{"type":"ping"}');
    };
    this.#phase = setTimeout(() => {
      beat();
      this.#beat = setInterval(beat, every);
    }, Math.random() * every);
  }

  #stopHeartbeat(): void {
    clearTimeout(this.#phase);
    clearInterval(this.#beat);
  }
}

async function devToken(url: string, user: string): Promise<string> {
  const r = await fetch(`${url}/dev/token`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ user }) });
  if (!r.ok) throw new Error(`POST /dev/token answered ${r.status}`);
  return ((await r.json()) as { token: string }).token;
}

/** fn(0…n-1), at most `width` at a time. */
async function pooled(n: number, width: number, fn: (k: number) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < n) await fn(next++);
  };
  await Promise.all(Array.from({ length: Math.min(width, n) }, lane));
}

/** A device per user, CONNECT_BATCH at a time, each resolved on its `welcome`; pushed to `into` as opened. */
async function connectAll(url: string, users: string[], tokens: string[], into: Device[], onMsg?: (k: number) => (frame: Buffer) => void): Promise<Device[]> {
  const devices: Device[] = [];
  for (let k = 0; k < users.length; k += CONNECT_BATCH) {
    const batch = users.slice(k, k + CONNECT_BATCH).map((u, j) => new Device(url, u, tokens[k + j]!, "d", onMsg?.(k + j)));
    into.push(...batch);
    devices.push(...batch);
    await Promise.all(batch.map((d) => d.welcome));
  }
  return devices;
}

// ---- load ----

let rng = 0x9e3779b9;
/** xorshift32 in [0, 1): the same mix on every run. */
function random(): number {
  rng ^= rng << 13;
  rng ^= rng >>> 17;
  rng ^= rng << 5;
  return (rng >>> 0) / 4294967296;
}

interface Chat {
  senders: Device[];
  dmConv: string[];
  groupConv: string[];
  cidPrefix: string;
}

/** One send of the mix, `ts` its (scheduled) time; resolves once natter answered, never rejects. */
async function sendOne(chat: Chat, ts: number, measured: boolean): Promise<void> {
  const group = random() < GROUP_SHARE;
  const target = Math.floor(random() * (group ? GROUPS : CLIENTS));
  const id = ledger.add(group, target, measured);
  if (id === undefined) return;
  tally.sent++;
  const conv = group ? chat.groupConv[target]! : chat.dmConv[target]!;
  const cid = `${chat.cidPrefix}-${id}`;
  const text = JSON.stringify({ id, ts, pad: PAD });
  const sender = chat.senders[target % SENDERS]!;
  try {
    const ack = await sender.request({ type: "send", conv, cid, text }, cid);
    if (ack.type !== "ack" || ack.dup) throw new Error(`${ack.type}${ack.dup ? " (dup)" : ""} instead of a new message's ack`);
    ledger.settle(id, true);
    tally.accepted++;
  } catch (err) {
    ledger.settle(id, false);
    tally.refused++;
    count(refusals, (err as Error).message.slice(0, 80));
    if (sender.ws.readyState !== WebSocket.OPEN) broken ??= `sender s${target % SENDERS}'s socket closed during the run`;
  }
}

interface Snapshot {
  t: number;
  delivered: number;
  accepted: number;
  nodeTicks: number;
  natsTicks: number;
  bench: NodeJS.CpuUsage;
}

function snapshot(node: BenchNode, natsPid: number): Snapshot {
  return { t: performance.now(), delivered: tally.delivered, accepted: tally.accepted, nodeTicks: cpuTicks(node.pid), natsTicks: cpuTicks(natsPid), bench: process.cpuUsage() };
}

/** "  <label> 10 s: sent …, accepted …, refused …, … deliveries/s" every PROGRESS_MS while a phase runs. */
function progress(label: string): () => void {
  const start = { t: performance.now(), ...tally };
  let prev = start;
  const timer = setInterval(() => {
    const now = { t: performance.now(), ...tally };
    const rate = Math.round(((now.delivered - prev.delivered) * 1000) / (now.t - prev.t));
    say(
      `  ${label} ${Math.round((now.t - start.t) / 1000)} s: sent ${now.sent - start.sent}, accepted ${now.accepted - start.accepted}, ` +
        `refused ${now.refused - start.refused}, ${rate} deliveries/s`,
    );
    prev = now;
  }, PROGRESS_MS);
  return () => clearInterval(timer);
}

/** Waits (at most DRAIN_MS) until every accepted message since `from` reached all its recipients; what is still owed then is lost. */
async function drain(from: number): Promise<void> {
  const t0 = performance.now();
  let owed = ledger.missing(from);
  while (owed > 0 && performance.now() - t0 < DRAIN_MS) {
    await sleep(100);
    owed = ledger.missing(from);
  }
  tally.lost += owed;
  const secs = ((performance.now() - t0) / 1000).toFixed(1);
  say(owed === 0 ? `  drained in ${secs} s` : `  ${owed} deliveries still missing after ${secs} s`);
}

interface Peak {
  inFlight: number;
  deliveriesPerS: number;
  acceptedPerS: number;
  cpuNode: number;
  cpuNats: number;
}

/** Closed loop with `inFlight` sends outstanding: warm-up, then the measured window. */
async function peak(chat: Chat, node: BenchNode, natsPid: number, inFlight: number): Promise<Peak> {
  const from = ledger.count;
  let running = true;
  const lane = async () => {
    while (running && !broken && ledger.count < MAX_MESSAGES) await sendOne(chat, performance.now(), false);
  };
  const lanes = Array.from({ length: inFlight }, lane);
  const stopProgress = progress(`peak ×${inFlight}`);
  await sleep(WARMUP_MS);
  const a = snapshot(node, natsPid);
  await sleep(WINDOW_MS);
  const b = snapshot(node, natsPid);
  running = false;
  await Promise.all(lanes);
  stopProgress();
  if (broken) throw new Error(broken);
  const secs = (b.t - a.t) / 1000;
  const cpu = (ticks: number) => (100 * ticks) / CLK_TCK / secs;
  const bench = (b.bench.user + b.bench.system - a.bench.user - a.bench.system) / 1e4 / secs;
  const result = {
    inFlight,
    deliveriesPerS: (b.delivered - a.delivered) / secs,
    acceptedPerS: (b.accepted - a.accepted) / secs,
    cpuNode: cpu(b.nodeTicks - a.nodeTicks),
    cpuNats: cpu(b.natsTicks - a.natsTicks),
  };
  say(
    `peak ×${inFlight}: ${Math.round(result.deliveriesPerS)} deliveries/s, ${Math.round(result.acceptedPerS)} msgs/s accepted; ` +
      `CPU natter ${result.cpuNode.toFixed(0)} %, nats-server ${result.cpuNats.toFixed(0)} %, bench ${bench.toFixed(0)} % of a core`,
  );
  await drain(from);
  return result;
}

/** Open loop at `rate` msgs/s on a fixed schedule; p50/p99 of the messages scheduled in the window. */
async function halfLoad(chat: Chat, rate: number): Promise<{ p50: number; p99: number }> {
  const from = ledger.count;
  const t0 = performance.now();
  const [w0, w1] = [t0 + WARMUP_MS, t0 + WARMUP_MS + WINDOW_MS];
  const last = Math.floor(((w1 - t0) * rate) / 1000);
  const pending = new Set<Promise<void>>();
  let k = 0;
  let shed = 0;
  latencyCount = 0;
  const stopProgress = progress(`half load ${rate}/s`);
  while (k < last && !broken && ledger.count < MAX_MESSAGES) {
    const due = Math.min(last, Math.floor(((performance.now() - t0) * rate) / 1000));
    for (; k < due; k++) {
      if (pending.size >= OPEN_LOOP_MAX_IN_FLIGHT) {
        shed++;
        continue;
      }
      const ts = t0 + (k * 1000) / rate;
      const p = sendOne(chat, ts, ts >= w0 && ts < w1).finally(() => pending.delete(p));
      pending.add(p);
    }
    await sleep(1);
  }
  await Promise.all(pending);
  stopProgress();
  if (broken) throw new Error(broken);
  tally.shed += shed;
  await drain(from);
  const sorted = latencies.subarray(0, latencyCount).sort();
  const pct = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
  const result = { p50: pct(0.5), p99: pct(0.99) };
  say(`half load: ${rate} msgs/s offered, ${shed} shed; ${sorted.length} deliveries measured: p50 ${result.p50.toFixed(2)} ms, p99 ${result.p99.toFixed(2)} ms`);
  return result;
}

/** natter's RSS per idle connection: settled before and after `n` idle authenticated clients connect. */
async function idleRss(node: BenchNode, n: number, devices: Device[]): Promise<number> {
  const users = Array.from({ length: n }, (_, k) => `u${k}`);
  const tokens: string[] = new Array(n);
  await pooled(n, 32, async (k) => {
    tokens[k] = await devToken(node.url, users[k]!);
  });
  await sleep(SETTLE_MS);
  const before = rssKb(node.pid);
  const t0 = performance.now();
  await connectAll(node.url, users, tokens, devices);
  const connectS = (performance.now() - t0) / 1000;
  await sleep(SETTLE_MS);
  const after = rssKb(node.pid);
  const perConn = (after - before) / n;
  say(`idle: ${n} clients in ${connectS.toFixed(1)} s; natter RSS ${(before / 1024).toFixed(1)} → ${(after / 1024).toFixed(1)} MB, ${perConn.toFixed(1)} KB per connection`);
  return perConn;
}

interface Traffic {
  best: Peak;
  rate: number;
  half: { p50: number; p99: number };
}

/** Phases 1 and 2 on `node`: set-up, the peaks, the half load. */
async function traffic(node: BenchNode, natsPid: number, devices: Device[]): Promise<Traffic> {
  const started = performance.now();
  const receivers = Array.from({ length: CLIENTS }, (_, i) => `u${i}`);
  const senderUsers = Array.from({ length: SENDERS }, (_, s) => `s${s}`);
  const tokens: string[] = new Array(CLIENTS);
  await pooled(CLIENTS, 32, async (i) => {
    tokens[i] = await devToken(node.url, receivers[i]!);
  });
  const senders = await connectAll(node.url, senderUsers, await Promise.all(senderUsers.map((u) => devToken(node.url, u))), devices);
  const chat: Chat = { senders, dmConv: new Array(CLIENTS), groupConv: new Array(GROUPS), cidPrefix: `m${Date.now().toString(36)}` };
  const conv = (f: Frame) => {
    if (f.type !== "conv" || !f.conv) throw new Error(`expected conv, got ${JSON.stringify(f).slice(0, 200)}`);
    return f.conv.id;
  };
  await pooled(CLIENTS, 64, async (i) => {
    chat.dmConv[i] = conv(await senders[i % SENDERS]!.request({ type: "dm.open", peer: receivers[i] }));
  });
  await pooled(GROUPS, 64, async (g) => {
    const members = receivers.slice(g * GROUP_SIZE, (g + 1) * GROUP_SIZE);
    chat.groupConv[g] = conv(await senders[g % SENDERS]!.request({ type: "group.create", name: `g${g}`, members }));
  });
  await connectAll(node.url, receivers, tokens, devices, (i) => (frame) => onDelivery(i, frame));
  say(`${CLIENTS} receivers and ${SENDERS} senders connected; ${CLIENTS} 1:1 and ${GROUPS} groups (${((performance.now() - started) / 1000).toFixed(1)} s)`);

  const peaks: Peak[] = [];
  for (const n of IN_FLIGHT_TRIED) peaks.push(await peak(chat, node, natsPid, n));
  const best = peaks.reduce((a, b) => (b.deliveriesPerS > a.deliveriesPerS ? b : a));
  const rate = Math.max(1, Math.round(best.acceptedPerS / 2));
  say(`best peak: ${best.inFlight} in flight; half load = ${rate} msgs/s`);
  return { best, rate, half: await halfLoad(chat, rate) };
}

async function main(): Promise<number> {
  if (!(Number.isInteger(CLIENTS) && CLIENTS >= GROUP_SIZE && CLIENTS % GROUP_SIZE === 0 && CLIENTS <= 5000)) {
    throw new Error(`--clients must be a multiple of ${GROUP_SIZE}, ${GROUP_SIZE}…5000`);
  }
  if (!(WINDOW_MS >= 1000 && WINDOW_MS <= 60_000 && TIMEOUT_S >= 10 && TIMEOUT_S <= 3600)) throw new Error("--window 1…60 (s), --timeout-s 10…3600");
  const connections = Math.max(CLIENTS + SENDERS, CONNECTIONS_IDLE);
  const fdsNeeded = connections + 500;
  const fds = openFileLimit();
  if (fds < fdsNeeded) throw new Error(`the open-file limit (ulimit -n) is ${fds}; ${connections} connections need ${fdsNeeded}: run \`ulimit -n ${fdsNeeded}\` first`);

  const started = performance.now();
  const devices: Device[] = [];
  const closeDevices = () => {
    for (const d of devices.splice(0)) d.close();
  };
  let node: BenchNode | undefined;
  const watchdog = benchWatchdog("mix", TIMEOUT_S, () => node, () => {
    for (const d of devices) d.ws.terminate();
  });
  try {
    node = await startBenchNode(NODE_ENV);
    const natsPid = node.natsPid();
    say(`natter at ${node.url} (pid ${node.pid}, nats-server pid ${natsPid}); ${CLIENTS} receivers, ${SENDERS} senders, ${GROUPS} groups, windows ${WINDOW_MS / 1000} s`);
    const { best, rate, half } = await traffic(node, natsPid, devices);
    closeDevices();
    await node.stop();

    // A loaded process keeps the traffic's heap until V8's memory reducer runs, tens of seconds
    // later, and new connections fill that freed space: RSS deltas there mean nothing (they come
    // out near zero or negative). The idle figure gets a fresh node, as the side-by-side's
    // --rss-only run does.
    node = await startBenchNode(NODE_ENV);
    say(`idle: a fresh natter at ${node.url} (pid ${node.pid}) for the idle figure`);
    const rssPerConn = await idleRss(node, CONNECTIONS_IDLE, devices);

    const lost = tally.lost;
    const late = lost - ledger.missing();
    const refusedButDelivered = ledger.refusedButDelivered();
    say(
      `checks: ${tally.sent} sent, ${tally.accepted} accepted, ${tally.refused} refused, ${tally.shed} shed; ${tally.delivered} deliveries, ` +
        `${lost} lost (${late} of them arrived later), ${tally.dups} duplicated, ${tally.outOfOrder} out of order, ${tally.wrong} to a wrong recipient, ` +
        `${refusedButDelivered} refused but delivered, ${tally.strayErrors} error frames without a request`,
    );
    if (refusals.size) say(`refusals: ${[...refusals].map(([m, n]) => `${n}× ${m}`).join("; ")}`);
    if (closes.size) say(`sockets natter closed: ${[...closes].map(([c, n]) => `${n}× ${c}`).join("; ")}`);
    say(`${((performance.now() - started) / 1000).toFixed(0)} s in all`);
    process.stdout.write(
      `mix: clients=${CLIENTS} deliveries_per_s=${Math.round(best.deliveriesPerS)} half_load_msgs_per_s=${rate} ` +
        `p50_ms=${half.p50.toFixed(2)} p99_ms=${half.p99.toFixed(2)} lost=${lost} dups=${tally.dups} ` +
        `cpu_node=${best.cpuNode.toFixed(1)} cpu_nats=${best.cpuNats.toFixed(1)} rss_kb_per_conn=${rssPerConn.toFixed(1)}\n`,
    );
    const wrong = [`${lost} lost`, `${tally.dups} duplicated`, `${tally.outOfOrder} out of order`, `${tally.wrong} misaddressed`].filter((s) => !s.startsWith("0 "));
    if (wrong.length) {
      say(`bench:mix failed: deliveries ${wrong.join(", ")}`);
      return 1;
    }
    return 0;
  } finally {
    closeDevices();
    await node?.stop();
    clearTimeout(watchdog);
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    say(`bench:mix failed: ${(err as Error).message}`);
    process.exitCode = 1;
  },
);
