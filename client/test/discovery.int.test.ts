// The SDK's failover through discovery, on real servers: two edges on one NATS — one in this
// process with the workers, one a child process with none — and clients that found the child
// edge through GET /discovery. The child is killed with -9 (no drain, no goodbye: its entry stays
// in discovery until the TTL) while messages flow; each client must land on the other edge and
// receive every message sent before and during the failover exactly once, in order. One client
// goes on through the list it has; the other asks discovery again (maxAgeMs 0) with the dead edge
// as its first bootstrap URL, and its token is held back until five more messages are stored, so
// that some are certainly sent while it is between edges.
import { describe, expect, it, onTestFinished } from "vitest";
import { WebSocket } from "ws";
import { useNats } from "../../test/harness/nats.ts";
import { recordProcess } from "../../test/harness/processes.ts";
import { spawnNatter } from "../../test/support/natter-process.ts";
import { TEST_SECRET, testConfig, useNode } from "../../test/support/node.ts";
import { NatterClient, type ChatMessage, type DiscoveryEvent, type NatterClientOptions, type StateChange } from "../src/index.js";

const TTL_S = 2;
const BACKOFF = { initialMs: 100, maxMs: 1_000 };
const nats = useNats();
// The surviving edge runs the workers (fan-out to inboxes), so delivery goes on without the child.
const west = useNode(() => testConfig(nats.url, { edge: { port: 0, id: "west-1", region: "west" }, discovery: { ttlSec: TTL_S } }));

interface Probe {
  client: NatterClient;
  messages: ChatMessage[];
  /** Every state change, with when it happened. */
  states: (StateChange & { at: number })[];
  answers: DiscoveryEvent[];
}

function sdk(user: string, device: string, opts: Partial<NatterClientOptions>): Probe {
  const client = new NatterClient({ user, device, token: () => west.token(user), WebSocket, backoff: BACKOFF, ...opts });
  onTestFinished(() => client.close());
  const probe: Probe = { client, messages: [], states: [], answers: [] };
  client.on("message", (m) => probe.messages.push(m));
  client.on("state", (s) => probe.states.push({ ...s, at: Date.now() }));
  client.on("discovery", (d) => probe.answers.push(d));
  return probe;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("failover through discovery", () => {
  it("an edge killed with -9 under connected clients: they go on on the other edge and miss nothing", async () => {
    const east = await spawnNatter({
      NATTER_NATS__SERVERS: nats.url,
      NATTER_WORKERS__ENABLED: "false",
      NATTER_EDGE__ID: "east-1",
      NATTER_EDGE__REGION: "east",
      NATTER_AUTH__JWT_SECRET: TEST_SECRET,
      NATTER_DISCOVERY__TTL_SEC: String(TTL_S),
      NATTER_LOG__LEVEL: "warn",
    });
    recordProcess(east.proc.pid!, "natter", east.dataDir);
    onTestFinished(() => east.stop());
    // Both edges registered: a client of region east is sent to east-1 first, then west-1.
    const ranked = async () => ((await (await fetch(`${west.url}/discovery?region=east`)).json()) as { edges?: { id: string }[] }).edges?.map((e) => e.id);
    await expect.poll(ranked, { timeout: 15_000 }).toEqual(["east-1", "west-1"]);

    let held: Promise<void> | undefined;
    let release = () => {};
    // (A list that never goes stale here, however slow the machine: this one only goes through it.)
    const listed = sdk("fo-r", "listed", { discovery: { bootstrap: west.url, region: "east", maxAgeMs: 3_600_000 } });
    const asking = sdk("fo-r", "asking", {
      discovery: { bootstrap: [east.url, west.url], region: "east", maxAgeMs: 0 },
      token: async () => {
        await held;
        return west.token("fo-r");
      },
    });
    await Promise.all([listed.client.connect(), asking.client.connect()]);
    for (const r of [listed, asking]) expect(r.client.edge).toEqual({ url: east.url, id: "east-1", region: "east" });

    // A sender on the surviving edge writes all along, paced well under the send budget.
    const sender = sdk("fo-s", "d", { url: west.url });
    const dm = await sender.client.openDm("fo-r");
    const acked: number[] = [];
    let stop = false;
    const writing = (async () => {
      for (let i = 0; !stop; i++) {
        acked.push((await sender.client.send(dm.id, `m${i}`)).id);
        await sleep(50);
      }
    })();
    writing.catch(() => undefined); // awaited below; a test that failed before then closes the sender under it
    onTestFinished(() => {
      stop = true;
    });
    const got = (r: Probe) => r.messages.filter((m) => m.conv === dm.id).map((m) => m.id);
    for (const r of [listed, asking]) await expect.poll(() => got(r).length).toBeGreaterThanOrEqual(3);

    held = new Promise<void>((r) => (release = r));
    onTestFinished(() => release());
    const killedAt = Date.now();
    await east.kill();
    const onWest = (r: Probe) => r.states.find((s) => s.at >= killedAt && s.state === "open" && s.edge === west.url);
    // The cause: the dropped socket, then a welcome on the other edge (the deadline is a safety net).
    await expect.poll(() => onWest(listed), { timeout: 60_000 }).toBeDefined();
    // The asker is off east-1 and cannot be on an edge without its token: five messages stored meanwhile.
    await expect.poll(() => asking.states.some((s) => s.at >= killedAt && s.state === "reconnecting")).toBe(true);
    const offlineFrom = acked.length;
    await expect.poll(() => acked.length, { timeout: 20_000 }).toBeGreaterThanOrEqual(offlineFrom + 5);
    expect(asking.client.state).toBe("reconnecting");
    const releasedAt = Date.now();
    release();
    await expect.poll(() => onWest(asking), { timeout: 60_000 }).toBeDefined();
    const sentAtFailover = acked.length;
    await expect.poll(() => acked.length, { timeout: 20_000 }).toBeGreaterThanOrEqual(sentAtFailover + 5);
    stop = true;
    await writing;

    for (const r of [listed, asking]) {
      await expect.poll(() => got(r).at(-1), { timeout: 20_000 }).toBe(acked.at(-1));
      expect(got(r)).toEqual(acked); // every message once, in order
      const cursors = r.messages.map((m) => m.cursor);
      expect(cursors).toEqual([...cursors].sort((a, b) => a - b));
      expect(new Set(cursors).size).toBe(cursors.length);
      expect(r.client.edge).toEqual({ url: west.url, id: "west-1", region: "west" });
      // It left east-1 because the socket dropped (no 1001: nobody said goodbye).
      expect(r.states.find((s) => s.at >= killedAt && s.state === "reconnecting")).toMatchObject({ closeCode: 1006, edge: east.url });
    }
    // The list-keeper went on to the next edge it had, without asking.
    expect(listed.answers.map((a) => a.reason)).toEqual(["first"]);
    // The asker asked again; east-1 (its first bootstrap URL, dead) was asked last, west-1 answered.
    const reasked = asking.answers.at(-1)!;
    expect(reasked).toMatchObject({ from: west.url, reason: "stale" });
    expect(reasked.edges[0]!.id).toBe("west-1");

    console.log(
      `failover after kill -9: the list-keeper on west-1 after ${onWest(listed)!.at - killedAt} ms, the asker ${onWest(asking)!.at - releasedAt} ms ` +
        `after its token was released (discovery TTL ${TTL_S * 1000} ms, backoff at most ${BACKOFF.maxMs} ms); ${acked.length} messages: ` +
        `${offlineFrom} before the asker was off, ${sentAtFailover - offlineFrom} while it was, ${acked.length - sentAtFailover} after both were back`,
    );
  });
});
