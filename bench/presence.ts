// npm run bench:presence [-- --seconds 120] [--devices 1000] [--ttl 30]
// 1,000 devices (500 users × 2) connect over real WebSockets to a single-node natter (its own
// process with its embedded nats-server, on free ports, in a temp folder) and heartbeat every
// welcome.heartbeatMs (ttl/3), each at its own phase. After a warm-up of one ttl (the connect
// writes and every device's first refresh), the KV writes are counted for --seconds on the
// presence bucket's stream (its last sequence: every write, removal and expiry marker is one):
// the steady state, the worst case. Target: ≤ 120 / ttl_s per device per minute (one write per
// ttl/2). Last line:
//   presence: devices=… ttl_s=… heartbeat_s=… kv_writes_per_device_per_min=…
import { parseArgs } from "node:util";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { WebSocket } from "ws";
import { names, scanFiltered } from "../nats/index.ts";
import { startBenchNode } from "./support.ts";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "120" },
    devices: { type: "string", default: "1000" },
    ttl: { type: "string", default: "30" },
  },
});
const SECONDS = Number(values.seconds);
const DEVICES = Number(values.devices);
const TTL_S = Number(values.ttl);
if (!(SECONDS > 0 && SECONDS <= 3600 && DEVICES >= 2 && DEVICES <= 20_000 && TTL_S >= 2 && TTL_S <= 3600)) {
  throw new Error("--seconds 1..3600, --devices 2..20000, --ttl 2..3600");
}
const say = (line: string) => process.stderr.write(`${line}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));



class Device {
  readonly ws: WebSocket;
  heartbeatMs = 0;
  pongs = 0;
  readonly welcome: Promise<void>;
  #timer: NodeJS.Timeout | undefined;
  constructor(url: string, token: string, device: string) {
    this.ws = new WebSocket(`${url.replace(/^http/, "ws")}/ws`, { perMessageDeflate: false });
    this.welcome = new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("no welcome within 30 s")), 30_000);
      this.ws.once("error", reject);
      this.ws.once("close", (code) => reject(new Error(`closed ${code}`)));
      this.ws.on("message", (data) => {
        const f = JSON.parse(String(data)) as { type: string; heartbeatMs?: number };
        if (f.type === "welcome") {
          clearTimeout(t);
          this.heartbeatMs = f.heartbeatMs ?? 0;
          resolve();
        } else if (f.type === "pong") this.pongs++;
      });
    });
    this.ws.once("open", () => this.ws.send(JSON.stringify({ type: "hello", v: 1, token, device })));
  }
  /** Heartbeats every heartbeatMs from a random phase, until stop(). */
  start(): void {
    const beat = () => {
      if (this.ws.readyState === WebSocket.OPEN) this.ws.send('{"type":"ping"}');
    };
    this.#timer = setTimeout(() => {
      beat();
      this.#timer = setInterval(beat, this.heartbeatMs);
    }, Math.random() * this.heartbeatMs);
  }
  stop(): void {
    clearTimeout(this.#timer);
    clearInterval(this.#timer);
    this.ws.close();
  }
}

/** Every message of the presence bucket's stream so far (its last sequence). */
async function writesSoFar(jsm: JetStreamManager): Promise<number> {
  return (await jsm.streams.info(names.kvStream(names.presenceBucket))).state.last_seq;
}

/** Device keys that live now (PUT) and those that expired or were removed (markers, tombstones). */
async function keys(jsm: JetStreamManager): Promise<{ live: number; gone: number }> {
  let live = 0;
  let gone = 0;
  const seen = new Set<string>();
  const scan = scanFiltered(jsm, names.kvStream(names.presenceBucket), names.kvStreamSubjects(names.presenceBucket), { page: 1000, maxPages: 100 });
  for await (const sm of scan) {
    // A key rewritten while this pages ahead shows up again: count each key once.
    if (seen.has(sm.subject)) continue;
    seen.add(sm.subject);
    if (sm.header?.has("Nats-Marker-Reason") || sm.header?.has("KV-Operation")) gone++;
    else live++;
  }
  return { live, gone };
}

async function main(): Promise<void> {
  const node = await startBenchNode({ NATTER_PRESENCE__TTL_SEC: String(TTL_S) });
  const nc = await node.opsConnect();
  const devices: Device[] = [];
  try {
    const jsm = await jetstreamManager(nc);
    const run = `p${Date.now().toString(36)}`;
    const users = Array.from({ length: Math.ceil(DEVICES / 2) }, (_, i) => `${run}_u${i}`);
    say(`natter at ${node.url}; ${DEVICES} devices (${users.length} users), ttl ${TTL_S} s, ${SECONDS} s`);
    for (let i = 0; i < DEVICES; i += 100) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(100, DEVICES - i) }, async (_, k) => {
          const n = i + k;
          const user = users[Math.floor(n / 2)]!;
          const r = await fetch(`${node.url}/dev/token`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ user }) });
          const { token } = (await r.json()) as { token: string };
          const d = new Device(node.url, token, n % 2 === 0 ? "phone" : "laptop");
          devices.push(d);
          await d.welcome;
          return d;
        }),
      );
      for (const d of batch) d.start();
    }
    const heartbeatMs = devices[0]!.heartbeatMs;
    if (!(heartbeatMs > 0)) throw new Error("welcome carried no heartbeatMs: is presence enabled?");
    await sleep(1000); // the connect writes land
    const connected = await writesSoFar(jsm);
    say(`${devices.length} devices connected and heartbeating every ${heartbeatMs} ms; ${connected} KV writes so far (the connects); warming up for ${TTL_S} s`);
    await sleep(TTL_S * 1000);
    const t0 = performance.now();
    const w0 = await writesSoFar(jsm);
    say(`measuring for ${SECONDS} s (${w0 - connected} writes during the warm-up)`);
    const end = Date.now() + SECONDS * 1000;
    while (Date.now() < end) {
      await sleep(Math.min(10_000, end - Date.now()));
      const w = await writesSoFar(jsm);
      say(`  ${Math.round((performance.now() - t0) / 1000)} s: ${w - w0} KV writes; ${devices.reduce((n, d) => n + d.pongs, 0)} heartbeats answered`);
    }
    const minutes = (performance.now() - t0) / 60_000;
    const writes = (await writesSoFar(jsm)) - w0;
    const k = await keys(jsm);
    say(`device keys at the end: ${k.live} live, ${k.gone} expired or removed (expected ${DEVICES} and 0)`);
    say(`target: ≤ ${(120 / TTL_S).toFixed(2)} writes per device per minute (one per ttl/2)`);
    process.stdout.write(
      `presence: devices=${DEVICES} ttl_s=${TTL_S} heartbeat_s=${(heartbeatMs / 1000).toFixed(2).replace(/\.?0+$/, "")} ` +
        `kv_writes_per_device_per_min=${(writes / DEVICES / minutes).toFixed(2)}\n`,
    );
  } finally {
    for (const d of devices) d.stop();
    await nc.close();
    await node.stop();
  }
}

main().catch((err: unknown) => {
  say(`bench:presence failed: ${(err as Error).message}`);
  process.exit(1);
});
