// npm run bench:conns [-- --connections N] [--settle-s 30] [--timeout-s 900] [--heap-dir DIR]
// What an idle connection costs natter in memory (issue 16: 20,000 connections at ≤ 16 KB each).
//
// It starts a single-node natter (`natter start --dev`: its own process with its embedded
// nats-server, on free ports, in a temp folder) with natter's default limits except
// NATTER_EDGE__MAX_PENDING_PER_ADDRESS=0 (every bench socket comes from 127.0.0.1, one address with
// thousands of sockets, which a real edge never sees). natter's RSS is read once it is ready and
// has been idle for a few seconds (rss_before_mb). Then `connections` users (default 20,000, or as
// many as the open-file limit leaves room for, saying so; an explicit number beyond it is
// refused), one device each with a dev token from POST /dev/token, open a WebSocket each and say
// hello, 64 at a time (under edge.maxHellosInProgress); a device turned away with `retryAfterMs` comes back after it, as the
// SDK does. Each device heartbeats (`ping`) every welcome.heartbeatMs, as the SDK does, so every
// device stays online and its presence key alive: that is what a connected device costs, not a
// silent socket. Once all are connected natter is left alone for `settle-s` seconds (no forced
// GC: the figure is what the kernel sees), and its RSS is the median of the samples of the last
// half of that time (rss_settled_mb). Any close or error frame of a connected device counts in
// `dropped`.
//
// Last line (RSS of natter's process: its edge and its workers' thread; its nats-server apart):
//   conns: connections=… connected=… rss_kb_per_conn=… rss_before_mb=… rss_settled_mb=… nats_rss_mb=… connect_s=… dropped=…
// rss_kb_per_conn = (rss_settled − rss_before) / connected. Exit 1 after the last line when not
// every device connected or one dropped; one line on stderr when natter does not start or the run
// passes --timeout-s. With --heap-dir, natter's main thread writes a heap snapshot there before
// the connections and one once they are all connected (open them in Chrome's DevTools, Memory,
// and compare): where the bytes of a connection go. Snapshots take seconds and memory of their own:
// figures of such a run are not comparable with a plain one.
import { mkdirSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { WebSocket } from "ws";
import { watchdog as benchWatchdog, devToken, openFileLimit, pooled, rssKb, startBenchNode } from "./support.ts";

const { values } = parseArgs({
  options: {
    connections: { type: "string" },
    "settle-s": { type: "string", default: "30" },
    "timeout-s": { type: "string", default: "900" },
    "heap-dir": { type: "string" },
  },
});
/** What the bench opens unless told otherwise, as far as the open-file limit allows. */
const DEFAULT_CONNECTIONS = 20_000;
/** Descriptors natter keeps for its own files and NATS connections (its socket cap is the open-file limit less these). */
const RESERVED_FDS = 512;
const SETTLE_S = Number(values["settle-s"]);
const TIMEOUT_S = Number(values["timeout-s"]);
/** Where natter's main-thread heap snapshots go (before and with the connections), if asked. */
const HEAP_DIR = values["heap-dir"] ? path.resolve(values["heap-dir"]) : undefined;
/** Hellos at a time (edge.maxHellosInProgress is 128). */
const WIDTH = 64;
const IDLE_BEFORE_MS = 5000;
const SAMPLE_MS = 1000;
const PROGRESS_MS = 5000;
const HELLO_TIMEOUT_MS = 30_000;
const MAX_ATTEMPTS = 20;
const say = (line: string) => process.stderr.write(`${line}\n`);

type Frame = { type: string; code?: string; message?: string; retryAfterMs?: number; heartbeatMs?: number };

const devices: WebSocket[] = [];
let dropped = 0;
/** Set when the bench closes its devices: those closes are not drops. */
let stopping = false;

/** Asks natter (started with --heapsnapshot-signal) for a heap snapshot; resolves with its file once written. */
async function heapSnapshot(pid: number, dir: string): Promise<string> {
  const files = () => readdirSync(dir).filter((f) => f.endsWith(".heapsnapshot"));
  const known = new Set(files());
  process.kill(pid, "SIGUSR2");
  for (let size = -1; ; await sleep(1000)) {
    const file = files().find((f) => !known.has(f));
    if (!file) continue;
    const now = statSync(path.join(dir, file)).size;
    if (now > 0 && now === size) return path.join(dir, file);
    size = now;
  }
}
const droppedWhy = new Map<string, number>();
const drop = (why: string) => {
  dropped++;
  droppedWhy.set(why, (droppedWhy.get(why) ?? 0) + 1);
};

/** One device: connected and heartbeating once this settles; a refusal with retryAfterMs is waited out and retried. */
async function connectDevice(wsUrl: string, token: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const outcome = await new Promise<{ ok: true } | { ok: false; retryAfterMs?: number; why: string }>((resolve) => {
      const ws = new WebSocket(wsUrl);
      let welcomed = false;
      let retryAfterMs: number | undefined;
      const timer = setTimeout(() => {
        ws.terminate();
        resolve({ ok: false, why: "no welcome in time" });
      }, HELLO_TIMEOUT_MS);
      ws.on("open", () => ws.send(JSON.stringify({ type: "hello", v: 1, token, device: "d" })));
      ws.on("message", (data) => {
        const f = JSON.parse(String(data)) as Frame;
        if (f.type === "welcome" && !welcomed) {
          welcomed = true;
          clearTimeout(timer);
          if (f.heartbeatMs) {
            const beat = setInterval(() => ws.readyState === WebSocket.OPEN && ws.send('{"type":"ping"}'), f.heartbeatMs);
            ws.once("close", () => clearInterval(beat));
          }
          devices.push(ws);
          resolve({ ok: true });
        } else if (f.type === "error") {
          if (welcomed) drop(`error ${f.code}`);
          else retryAfterMs = f.retryAfterMs;
        }
      });
      ws.on("error", () => {});
      ws.on("close", (code) => {
        if (welcomed) {
          if (!stopping) drop(`close ${code}`);
          return;
        }
        clearTimeout(timer);
        resolve({ ok: false, retryAfterMs, why: `close ${code} before welcome` });
      });
    });
    if (outcome.ok) return;
    if (attempt >= MAX_ATTEMPTS) throw new Error(`a device was refused ${attempt} times (last: ${outcome.why})`);
    await sleep(outcome.retryAfterMs ?? 500 + Math.random() * 500);
  }
}

async function main(): Promise<number> {
  // natter and the bench each hold one descriptor per socket, beside RESERVED_FDS of their own.
  const fds = openFileLimit();
  const fits = Math.max(0, fds - RESERVED_FDS);
  let CONNECTIONS = values.connections === undefined ? DEFAULT_CONNECTIONS : Number(values.connections);
  if (CONNECTIONS > fits) {
    const raise = `run \`ulimit -n ${CONNECTIONS + RESERVED_FDS}\` first (where the hard limit, \`ulimit -Hn\`, is lower, raise it as root)`;
    if (values.connections !== undefined) throw new Error(`the open-file limit (ulimit -n) is ${fds}; ${CONNECTIONS} connections need ${CONNECTIONS + RESERVED_FDS}: ${raise}, or ask for at most --connections ${fits}`);
    say(`the open-file limit (ulimit -n) is ${fds}: it allows ${fits} of the ${CONNECTIONS} connections, so ${fits} it is; for all of them, ${raise}`);
    CONNECTIONS = fits;
  }
  if (HEAP_DIR) mkdirSync(HEAP_DIR, { recursive: true });
  const node = await startBenchNode({ NATTER_EDGE__MAX_PENDING_PER_ADDRESS: "0", ...(HEAP_DIR ? { NODE_OPTIONS: `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${HEAP_DIR}` } : {}) });
  const watchdog = benchWatchdog("conns", TIMEOUT_S, () => node, () => {
    for (const ws of devices) ws.terminate();
  });
  try {
    await sleep(IDLE_BEFORE_MS);
    if (HEAP_DIR) say(`heap snapshot before: ${await heapSnapshot(node.pid, HEAP_DIR)}`);
    const before = rssKb(node.pid);
    say(`natter at ${node.url}: ${(before / 1024).toFixed(0)} MB before; opening ${CONNECTIONS} connections, ${WIDTH} at a time`);
    const run = `c${Date.now().toString(36)}`;
    const wsUrl = `${node.url.replace(/^http/, "ws")}/ws`;
    const t0 = performance.now();
    const progress = setInterval(() => say(`  ${devices.length} connected, natter ${(rssKb(node.pid) / 1024).toFixed(0)} MB`), PROGRESS_MS);
    try {
      await pooled(CONNECTIONS, WIDTH, async (k) => connectDevice(wsUrl, await devToken(node.url, `${run}_${k}`)));
    } finally {
      clearInterval(progress);
    }
    const connectS = (performance.now() - t0) / 1000;
    say(`${devices.length} connected in ${connectS.toFixed(1)} s; settling ${SETTLE_S} s`);
    const samples: number[] = [];
    if (HEAP_DIR) say(`heap snapshot with ${devices.length} connections: ${await heapSnapshot(node.pid, HEAP_DIR)}`);
    for (let waited = 0; waited < SETTLE_S * 1000; waited += SAMPLE_MS) {
      await sleep(SAMPLE_MS);
      samples.push(rssKb(node.pid));
    }
    const last = samples.slice(Math.floor(samples.length / 2)).sort((a, b) => a - b);
    const settled = last[Math.floor(last.length / 2)] ?? rssKb(node.pid);
    const nats = rssKb(node.natsPid());
    const perConn = (settled - before) / Math.max(1, devices.length);
    if (dropped > 0) say(`dropped: ${[...droppedWhy].map(([w, n]) => `${n}× ${w}`).join("; ")}`);
    console.log(
      `conns: connections=${CONNECTIONS} connected=${devices.length} rss_kb_per_conn=${perConn.toFixed(1)} rss_before_mb=${(before / 1024).toFixed(0)} rss_settled_mb=${(settled / 1024).toFixed(0)} nats_rss_mb=${(nats / 1024).toFixed(0)} connect_s=${connectS.toFixed(1)} dropped=${dropped}`,
    );
    return devices.length === CONNECTIONS && dropped === 0 ? 0 : 1;
  } finally {
    stopping = true;
    for (const ws of devices) ws.close(1000);
    clearTimeout(watchdog);
    await node.stop();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    say(`bench:conns failed: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
