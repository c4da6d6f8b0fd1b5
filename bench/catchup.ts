// npm run bench:catchup [-- --others 1000000] [--missed 20] [--devices 500]
// What a device's catch-up costs nats-server, in an inbox shared with a million other users'
// entries and in an empty one: a device `missed` messages behind is caught up the way the edge does
// it (streams/inbox.ts, through the users' chains), and the server's CPU is read from its threads'
// run time (/proc/<pid>/task/*/schedstat), idle subtracted. Two shapes:
//   - one device, warm: the same replay many times (the blocks it needs are in the server's cache);
//   - a reconnect burst: `devices` different devices, each `missed` behind, after 11 s of quiet
//     (past the server's 10 s block cache), caught up 64 at a time.
// For comparison it also times the scan by subject that catch-up used before chains, on the full
// inbox. Last line:
//   catchup: others=… missed=… warm_empty_us=… warm_full_us=… warm_ratio=… burst_empty_us=… burst_full_us=… burst_ratio=… scan_full_us=…
import { readdirSync, readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { loadConfig } from "../config/index.ts";
import { directBatch, encodeJson, ensureTopology, inboxStreamOf, inboxSubject, JetStreamRequests, stableHash, topologyOf } from "../nats/index.ts";
import { readInbox } from "../streams/index.ts";
import { InboxChains } from "../streams/inbox-chain.ts";
import { startNats } from "../test/harness/nats.ts";

const { values } = parseArgs({
  options: {
    others: { type: "string", default: "1000000" },
    missed: { type: "string", default: "20" },
    devices: { type: "string", default: "500" },
    reps: { type: "string", default: "200" },
  },
});
const OTHERS = Number(values.others);
const MISSED = Number(values.missed);
const DEVICES = Number(values.devices);
const REPS = Number(values.reps);
const say = (line: string) => process.stderr.write(`${line}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** nats-server's CPU so far, in ns (all threads). */
function serverNs(pid: number): number {
  let ns = 0;
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, "utf8").split(" ")[0]);
    } catch {
      // a thread that ended meanwhile
    }
  }
  return ns;
}

async function main(): Promise<void> {
  const nats = await startNats();
  const nc = await connect({ servers: nats.url, noAsyncTraces: true });
  try {
    // Two inbox shards: shard 0 is the full inbox, shard 1 the empty one (its devices only).
    const streams = { ...loadConfig({ env: {} }).streams, inboxShards: 2 };
    const t = topologyOf(streams);
    const jsm: JetStreamManager = await jetstreamManager(nc);
    await ensureTopology(jsm, streams);
    const requests = new JetStreamRequests(nc, { timeoutMs: 60_000 });
    const chains = new InboxChains(requests);
    const shardOf = (u: string) => stableHash(u) % 2;
    const usersIn = (shard: number, prefix: string, n: number) => {
      const out: string[] = [];
      for (let i = 0; out.length < n; i++) if (shardOf(`${prefix}${i}`) === shard) out.push(`${prefix}${i}`);
      return out;
    };
    const devicesFull = usersIn(0, "full", DEVICES);
    const devicesEmpty = usersIn(1, "empty", DEVICES);
    const entry = encodeJson({ v: 1, type: "msg", conv: "c", from: "x", device: "d", cid: "c", text: "x".repeat(120), ts: 0, id: 1 });
    const append = (u: string, id: string) => chains.append(inboxStreamOf(t, u), inboxSubject(t, u), entry, id);

    // The full inbox: OTHERS entries of 100,000 other users, the devices' entries spread among
    // the last 10 % of them (each device: a cursor entry, then MISSED entries).
    const others = usersIn(0, "other", 100_000);
    const cursors = new Map<string, number>();
    const heads = new Map<string, number>();
    const spreadFrom = Math.floor(OTHERS * 0.9);
    const per = Math.max(1, Math.floor((OTHERS - spreadFrom) / ((MISSED + 1) * DEVICES)));
    let k = 0;
    let window: Promise<unknown>[] = [];
    const t0 = Date.now();
    for (let i = 0; i < OTHERS; i++) {
      window.push(requests.publish(inboxSubject(t, others[i % others.length]!), entry, { msgID: `o${i}` }));
      if (i >= spreadFrom && i % per === 0 && k < (MISSED + 1) * DEVICES) {
        const u = devicesFull[k % DEVICES]!;
        const round = Math.floor(k / DEVICES);
        window.push(
          append(u, `${u}-${round}`).then((a) => {
            if (round === 0) cursors.set(u, a.seq);
            heads.set(u, Math.max(heads.get(u) ?? 0, a.seq));
          }),
        );
        k++;
      }
      if (window.length >= 2000) {
        await Promise.all(window);
        window = [];
      }
      if (i % 200_000 === 0 && i > 0) say(`  filled ${i} of ${OTHERS} in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    }
    await Promise.all(window);
    for (const u of devicesEmpty) {
      for (let r = 0; r <= MISSED; r++) {
        const a = await append(u, `${u}-${r}`);
        if (r === 0) cursors.set(u, a.seq);
        heads.set(u, a.seq);
      }
    }
    const info = await jsm.streams.info(inboxStreamOf(t, devicesFull[0]!));
    say(`full inbox: ${info.state.messages} entries (${(info.state.bytes / 1e6).toFixed(0)} MB) in ${((Date.now() - t0) / 1000).toFixed(0)} s; each device ${MISSED} behind`);

    const replay = async (u: string) => {
      let n = 0;
      for await (const _ of readInbox({ requests, jsm }, t, u, cursors.get(u)!, heads.get(u)!)) n++;
      if (n !== MISSED) throw new Error(`${u}: caught up ${n} items, not ${MISSED}`);
    };
    const scan = async (u: string) => {
      let n = 0;
      const it = await directBatch(jsm, inboxStreamOf(t, u), { seq: cursors.get(u)! + 1, next_by_subj: inboxSubject(t, u), batch: 256 });
      for await (const _ of it) n++;
      if (n !== MISSED) throw new Error(`${u}: scanned ${n} items, not ${MISSED}`);
    };
    const idleNsPerMs = async () => {
      const a = serverNs(nats.pid);
      await sleep(2000);
      return (serverNs(nats.pid) - a) / 2000;
    };
    const idle = await idleNsPerMs();
    /** Server µs per replay of `fn` over `users`, `conc` at a time. */
    const cost = async (users: string[], fn: (u: string) => Promise<void>, conc: number) => {
      const w0 = performance.now();
      const c0 = serverNs(nats.pid);
      let i = 0;
      await Promise.all(
        Array.from({ length: conc }, async () => {
          while (i < users.length) await fn(users[i++]!);
        }),
      );
      const ns = serverNs(nats.pid) - c0 - idle * (performance.now() - w0);
      return Math.max(0, ns) / users.length / 1000;
    };

    // Warm: one device, REPS times.
    await replay(devicesFull[0]!);
    await replay(devicesEmpty[0]!);
    const warmFull = await cost(Array(REPS).fill(devicesFull[0]!), replay, 1);
    const warmEmpty = await cost(Array(REPS).fill(devicesEmpty[0]!), replay, 1);
    const scanFull = await cost(Array(REPS).fill(devicesFull[0]!), scan, 1);
    say(`warm, one device: ${warmEmpty.toFixed(0)} µs empty inbox, ${warmFull.toFixed(0)} µs full (the scan by subject: ${scanFull.toFixed(0)} µs)`);

    // A burst of different devices after the server's block cache expired.
    await sleep(11_000);
    const burstFull = await cost(devicesFull, replay, 64);
    await sleep(11_000);
    const burstEmpty = await cost(devicesEmpty, replay, 64);
    say(`burst of ${DEVICES} devices after 11 s idle: ${burstEmpty.toFixed(0)} µs each in the empty inbox, ${burstFull.toFixed(0)} µs in the full one`);
    const r = (x: number) => x.toFixed(0);
    console.log(
      `catchup: others=${OTHERS} missed=${MISSED} warm_empty_us=${r(warmEmpty)} warm_full_us=${r(warmFull)} warm_ratio=${(warmFull / warmEmpty).toFixed(2)} ` +
        `burst_empty_us=${r(burstEmpty)} burst_full_us=${r(burstFull)} burst_ratio=${(burstFull / burstEmpty).toFixed(2)} scan_full_us=${r(scanFull)}`,
    );
    requests.close();
  } finally {
    await nc.close();
    await nats.stop();
  }
}

main().catch((err: unknown) => {
  say(`bench:catchup failed: ${(err as Error).message}`);
  process.exit(1);
});
