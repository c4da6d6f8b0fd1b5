// npm run bench:burst [-- --url http://host:port] [--messages 10000] [--members 20] [--senders 20]
// A burst of messages from several senders into one group of 20 members, 2 connected devices
// each, over real WebSockets. Without --url it starts a single-node natter (its own process, on
// free ports, in a temp folder) and reports that process's RSS. Last line:
//   burst: sent=… acked=… devices=… delivered_min=… gaps=… dups=… seconds=… msgs_per_s=… deliveries_per_s=…
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { WebSocket } from "ws";
import { REPO_ROOT } from "../config/index.ts";

const { values } = parseArgs({
  options: {
    url: { type: "string" },
    messages: { type: "string", default: "10000" },
    members: { type: "string", default: "20" },
    senders: { type: "string", default: "20" },
    window: { type: "string", default: "16" },
    "timeout-s": { type: "string", default: "300" },
  },
});
const MESSAGES = Number(values.messages);
const MEMBERS = Number(values.members);
const SENDERS = Math.min(Number(values.senders), MEMBERS);
const WINDOW = Number(values.window);
const DEADLINE = Date.now() + Number(values["timeout-s"]) * 1000;
const say = (line: string) => process.stderr.write(`${line}\n`);

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Math.round(Number(m[1]) / 1024) : NaN;
}

async function startNode(): Promise<{ url: string; pid: number; stop: () => Promise<void> }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "natter-bench-"));
  const [edge, nats, mon, workers] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const proc = spawn(process.execPath, ["--import", "tsx", "bin/natter.ts", "start", "--dev"], {
    cwd: REPO_ROOT,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      NATTER_DATA_DIR: dir,
      NATTER_EDGE__PORT: String(edge),
      NATTER_NATS__EMBEDDED__PORT: String(nats),
      NATTER_NATS__EMBEDDED__HTTP_PORT: String(mon),
      NATTER_WORKERS__HTTP_PORT: String(workers),
      NATTER_EDGE__SENDS_PER_SECOND: "10000",
      NATTER_LOG__LEVEL: "warn",
      NATTER_LOG__PRETTY: "false",
    },
    stdio: ["ignore", "inherit", "inherit"],
  });
  const url = `http://127.0.0.1:${edge}`;
  const until = Date.now() + 60_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`natter exited (${proc.exitCode}) before it was ready`);
    if (Date.now() > until) throw new Error("natter was not ready within 60 s");
    const ok = await fetch(`${url}/readyz`).then((r) => r.ok, () => false);
    if (ok) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    url,
    pid: proc.pid!,
    stop: async () => {
      const exited = new Promise((r) => proc.once("exit", r));
      proc.kill("SIGINT");
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

type Frame = { type: string; ref?: string; [k: string]: unknown };

class Device {
  readonly ws: WebSocket;
  readonly ids: number[] = [];
  #waiters = new Map<string, (f: Frame) => void>();
  #ref = 0;
  #welcome: Promise<void>;
  constructor(url: string, token: string, device: string) {
    this.ws = new WebSocket(`${url.replace(/^http/, "ws")}/ws`, { perMessageDeflate: false });
    this.#welcome = new Promise((resolve, reject) => {
      this.ws.once("error", reject);
      this.ws.once("close", (code) => reject(new Error(`closed ${code}`)));
      this.ws.on("message", (data) => {
        const f = JSON.parse(String(data)) as Frame;
        if (f.type === "msg") this.ids.push(f.id as number);
        else if (f.type === "welcome") resolve();
        else if (f.ref !== undefined) {
          const w = this.#waiters.get(f.ref);
          this.#waiters.delete(f.ref);
          w?.(f);
        }
      });
    });
    this.ws.once("open", () => this.ws.send(JSON.stringify({ type: "hello", v: 1, token, device })));
  }
  ready(): Promise<void> {
    return this.#welcome;
  }
  request(frame: Frame): Promise<Frame> {
    const ref = String(++this.#ref);
    return new Promise((resolve) => {
      this.#waiters.set(ref, resolve);
      this.ws.send(JSON.stringify({ ...frame, ref }));
    });
  }
}

async function main(): Promise<void> {
  const node = values.url ? undefined : await startNode();
  const url = values.url ?? node!.url;
  say(`target ${url}${node ? ` (natter pid ${node.pid})` : ""}; ${MESSAGES} messages, ${MEMBERS} members × 2 devices, ${SENDERS} senders, window ${WINDOW}`);
  try {
    const run = `b${Date.now().toString(36)}`;
    const users = Array.from({ length: MEMBERS }, (_, i) => `${run}_u${i}`);
    const tokens = await Promise.all(
      users.map(async (u) => {
        const r = await fetch(`${url}/dev/token`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ user: u }) });
        if (!r.ok) throw new Error(`POST /dev/token answered ${r.status}: start natter with --dev`);
        return ((await r.json()) as { token: string }).token;
      }),
    );
    const devices = users.flatMap((_, i) => [new Device(url, tokens[i]!, "a"), new Device(url, tokens[i]!, "b")]);
    await Promise.all(devices.map((d) => d.ready()));
    const created = await devices[0]!.request({ type: "group.create", name: run, members: users.slice(1) });
    if (created.type !== "conv") throw new Error(`group.create failed: ${JSON.stringify(created)}`);
    const conv = (created.conv as { id: string }).id;
    say(`${devices.length} devices connected; group ${conv}`);

    const acked: number[] = [];
    let sent = 0;
    const t0 = performance.now();
    const progress = setInterval(() => say(`  sent ${sent}, acked ${acked.length}, min delivered ${Math.min(...devices.map((d) => d.ids.length))}`), 2000);
    const perSender = Math.ceil(MESSAGES / SENDERS);
    await Promise.all(
      Array.from({ length: SENDERS }, async (_, s) => {
        const dev = devices[s * 2]!;
        const total = Math.min(perSender, MESSAGES - s * perSender);
        let next = 0;
        const lane = async () => {
          while (next < total && Date.now() < DEADLINE) {
            const k = next++;
            sent++;
            const ack = await dev.request({ type: "send", conv, cid: `${s}-${k}`, text: `message ${k} from sender ${s}` });
            if (ack.type === "ack") acked.push(ack.id as number);
            else say(`  send failed: ${JSON.stringify(ack)}`);
          }
        };
        await Promise.all(Array.from({ length: WINDOW }, lane));
      }),
    );
    const expected = new Set(acked);
    const last = Math.max(...acked);
    while (Date.now() < DEADLINE && devices.some((d) => (d.ids[d.ids.length - 1] ?? 0) < last)) await new Promise((r) => setTimeout(r, 20));
    const seconds = (performance.now() - t0) / 1000;
    clearInterval(progress);

    let gaps = 0;
    let dups = 0;
    let outOfOrder = 0;
    for (const d of devices) {
      const got = new Set(d.ids);
      dups += d.ids.length - got.size;
      for (const id of expected) if (!got.has(id)) gaps++;
      for (let i = 1; i < d.ids.length; i++) if (d.ids[i]! <= d.ids[i - 1]!) outOfOrder++;
    }
    const delivered = devices.reduce((n, d) => n + d.ids.length, 0);
    const deliveredMin = Math.min(...devices.map((d) => d.ids.length));
    if (node) say(`natter process RSS: ${rssMb(node.pid)} MB (edge + workers in one process); out-of-order deliveries: ${outOfOrder}`);
    for (const d of devices) d.ws.close();
    process.stdout.write(
      `burst: sent=${sent} acked=${acked.length} devices=${devices.length} delivered_min=${deliveredMin} gaps=${gaps} dups=${dups} ` +
        `seconds=${seconds.toFixed(2)} msgs_per_s=${Math.round(acked.length / seconds)} deliveries_per_s=${Math.round(delivered / seconds)}\n`,
    );
  } finally {
    await node?.stop();
  }
}

main().catch((err: unknown) => {
  say(`bench:burst failed: ${(err as Error).message}`);
  process.exit(1);
});
