// npm run bench:reconnect [-- --url http://host:port] [--missed 1000] [--runs 3] [--timeout-s 120]
// (--timeout-s: the longest one run may take, its sends, fan-out and catch-up together.)
// What the client SDK costs: its size (esbuild minified + gzip), and a device's reconnect after
// it missed N messages: from `connect()` to the last missed message emitted, with the frames and
// bytes on the wire. Without --url it starts the run command's natter (`natter start --dev`, its
// own process on free ports, in a temp folder). Each run: the device goes away, a sender stores N
// messages in a 1:1 (the receiver's second device, online, confirms the fan-out is done), then
// the device comes back with its stored cursor. Last line:
//   reconnect: missed=… runs=… welcome_ms=… caught_up_ms=… frames_in=… bytes_in=… frames_out=… sdk_min_bytes=… sdk_gzip_bytes=…
import { parseArgs } from "node:util";
import { WebSocket } from "ws";
import { MemoryCursorStore, NatterClient, devToken } from "../client/src/index.js";
import { sdkSize } from "../scripts/build-client.ts";
import { startBenchNode } from "./support.ts";

const { values } = parseArgs({
  options: {
    url: { type: "string" },
    missed: { type: "string", default: "1000" },
    runs: { type: "string", default: "3" },
    "timeout-s": { type: "string", default: "120" },
  },
});
const MISSED = Math.min(Number(values.missed), 100_000);
const RUNS = Math.min(Number(values.runs), 20);
const RUN_TIMEOUT_MS = Number(values["timeout-s"]) * 1000;
const say = (line: string) => process.stderr.write(`${line}\n`);

/** The `ws` WebSocket, counting what crosses the wire. */
const wire = { framesIn: 0, bytesIn: 0, framesOut: 0 };
class CountingWebSocket extends WebSocket {
  constructor(url: string) {
    super(url, { perMessageDeflate: false });
    this.on("message", (data: Buffer) => {
      wire.framesIn++;
      wire.bytesIn += data.length;
    });
  }
  override send(data: string): void {
    wire.framesOut++;
    super.send(data);
  }
}

/** Resolves with check()'s first defined value; rejects at `deadline`, saying what was awaited and how far it got. */
function until<T>(what: () => string, deadline: number, check: () => T | undefined): Promise<T> {
  return new Promise((resolve, reject) => {
    const tick = () => {
      const v = check();
      if (v !== undefined) return resolve(v);
      if (Date.now() > deadline) return reject(new Error(`timed out waiting for ${what()}`));
      setTimeout(tick, 2);
    };
    tick();
  });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const node = values.url ? { url: values.url, stop: async () => {} } : await startBenchNode({ NATTER_EDGE__SENDS_PER_SECOND: "10000" });
  const clients: NatterClient[] = [];
  try {
    const make = (user: string, device: string, opts: { store?: MemoryCursorStore; counted?: boolean; window?: number } = {}) => {
      const c = new NatterClient({
        url: node.url,
        user,
        device,
        token: () => devToken(node.url, user),
        WebSocket: opts.counted ? CountingWebSocket : WebSocket,
        cursorStore: opts.store ?? new MemoryCursorStore(),
        sendWindow: opts.window ?? 1,
      });
      clients.push(c);
      return c;
    };
    const suffix = Date.now().toString(36);
    const [receiver, senderName] = [`rc-r-${suffix}`, `rc-s-${suffix}`];
    // 16 sends in flight: natter's default edge.maxInFlightPerSocket (one more is refused RATE_LIMITED).
    const sender = make(senderName, "d", { window: 16 });
    const watcher = make(receiver, "watcher");
    let watched = 0;
    watcher.on("message", () => watched++);
    await Promise.all([sender.connect(), watcher.connect()]);
    const dm = await sender.openDm(receiver);
    const store = new MemoryCursorStore();
    const first = make(receiver, "phone", { store });
    await first.connect();
    first.close();

    const results: { welcome: number; caughtUp: number; framesIn: number; bytesIn: number; framesOut: number }[] = [];
    for (let run = 1; run <= RUNS; run++) {
      const deadline = Date.now() + RUN_TIMEOUT_MS;
      // The device is away: N messages are stored and fanned out to its inbox.
      const target = watched + MISSED;
      const sends: Promise<unknown>[] = [];
      for (let i = 0; i < MISSED; i++) sends.push(sender.send(dm.id, `run ${run} message ${i} ${"x".repeat(40)}`));
      const acks = (await Promise.all(sends)) as { id: number }[];
      const last = Math.max(...acks.map((a) => a.id));
      await until(() => `the fan-out in run ${run} (the receiver's other device got ${watched - (target - MISSED)} of ${MISSED})`, deadline, () => (watched >= target ? true : undefined));

      // It comes back with its stored cursor.
      Object.assign(wire, { framesIn: 0, bytesIn: 0, framesOut: 0 });
      const device = make(receiver, "phone", { store, counted: true });
      let got = 0;
      let lastAt = 0;
      device.on("message", (m) => {
        got++;
        if (m.id === last) lastAt = performance.now();
      });
      const t0 = performance.now();
      await device.connect();
      const welcome = performance.now() - t0;
      await until(() => `the catch-up in run ${run} (${got} of ${MISSED} messages)`, deadline, () => (lastAt > 0 ? true : undefined));
      const caughtUp = lastAt - t0;
      if (got !== MISSED) throw new Error(`run ${run}: got ${got} messages, expected ${MISSED}`);
      results.push({ welcome, caughtUp, ...wire });
      say(`run ${run}: welcome ${welcome.toFixed(1)} ms, caught up on ${MISSED} in ${caughtUp.toFixed(1)} ms; frames in ${wire.framesIn} (${wire.bytesIn} bytes), out ${wire.framesOut}`);
      device.close();
    }
    const size = await sdkSize();
    console.log(
      `reconnect: missed=${MISSED} runs=${RUNS} welcome_ms=${median(results.map((r) => r.welcome)).toFixed(1)} ` +
        `caught_up_ms=${median(results.map((r) => r.caughtUp)).toFixed(1)} frames_in=${median(results.map((r) => r.framesIn))} ` +
        `bytes_in=${median(results.map((r) => r.bytesIn))} frames_out=${median(results.map((r) => r.framesOut))} ` +
        `sdk_min_bytes=${size.minified} sdk_gzip_bytes=${size.gzipped}`,
    );
  } finally {
    for (const c of clients) c.close();
    await node.stop();
  }
}

await main();
