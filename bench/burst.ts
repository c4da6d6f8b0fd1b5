// npm run bench:burst [-- --url http://host:port] [--messages 10000] [--members 20] [--senders 20]
// A burst of messages from several senders into one group of 20 members, 2 connected devices
// each, over real WebSockets. Without --url it starts a single-node natter (its own process, on
// free ports, in a temp folder) and reports that process's RSS. Last line:
//   burst: sent=… acked=… devices=… delivered_min=… gaps=… dups=… seconds=… msgs_per_s=… deliveries_per_s=…
import { parseArgs } from "node:util";
import { WebSocket } from "ws";
import { rssMb, startBenchNode } from "./support.ts";

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
  const node = values.url ? undefined : await startBenchNode({ NATTER_EDGE__SENDS_PER_SECOND: "10000", ...(process.env.BENCH_NO_PUSH ? { NATTER_PUSH__ENABLED: "false" } : {}) });
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
