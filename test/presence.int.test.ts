// Presence across several edges on one NATS, with a 2 s TTL: a silent device goes offline through
// the KV expiry marker, a graceful disconnect at once; a user is online while any device is; only
// contacts hear live and only contacts and co-members may ask; a kill -9'd edge's 100 users go
// offline within the TTL and discovery stops returning that edge.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it, onTestFinished } from "vitest";
import { REPO_ROOT } from "../config/index.ts";
import { kvKeySubject, names, presenceDeviceKey } from "../nats/index.ts";
import { testNatsCredentialsEnv, useNats } from "./harness/nats.ts";
import { freePorts, recordProcess } from "./harness/processes.ts";
import { TEST_SECRET, testConfig, useNode } from "./support/node.ts";
import { TestClient, type Frame } from "./support/ws-client.ts";

const TTL_S = 2;
const nats = useNats();
const settings = (extra: Record<string, unknown> = {}) => ({
  presence: { ttlSec: TTL_S, markerTtlSec: 30 },
  discovery: { ttlSec: TTL_S },
  ...extra,
});
// Two edges; only the first runs the workers (fan-out, persister, presence). A watcher opens 100
// conversations at once: a budget for that (dm.open costs 2 sends).
const edges = [
  useNode(() => testConfig(nats.url, settings({ edge: { port: 0, id: "edge-0", sendsPerSecond: 1000 } }))),
  useNode(() => testConfig(nats.url, settings({ edge: { port: 0, id: "edge-1", sendsPerSecond: 1000 }, workers: { enabled: false } }))),
];

/**
 * A connected device that heartbeats like a real client — a ping every `heartbeatMs` of its
 * welcome (TTL/3) while the socket is open — unless `silent`: then it sends only what a test makes
 * it send.
 */
async function client(edge: number, user: string, device: string, opts: { silent?: boolean } = {}): Promise<TestClient> {
  const e = edges[edge]!;
  const c = await TestClient.connect(e.url, { token: await e.token(user), device });
  onTestFinished(() => c.close());
  if (!opts.silent) {
    const welcome = c.frames.find((f) => f.type === "welcome")!;
    expect(welcome.heartbeatMs).toBeGreaterThan(0);
    const heartbeats = setInterval(() => {
      if (c.ws.readyState === c.ws.OPEN) c.sendRaw(JSON.stringify({ type: "ping" }));
    }, welcome.heartbeatMs as number);
    onTestFinished(() => clearInterval(heartbeats));
    void c.closed.then(() => clearInterval(heartbeats));
  }
  return c;
}

type Entry = { user: string; online: boolean; lastSeen?: number; rev: number };
/** Live presence entries a client received about `user` (frames without ref), in order. */
const live = (c: TestClient, user: string): Entry[] =>
  c.frames.filter((f) => f.type === "presence" && f.ref === undefined).flatMap((f) => (f.users as Entry[]).filter((e) => e.user === user));
/** The first live presence frame about `user` with that state, among those received from index `from` on. */
const waitLive = (c: TestClient, user: string, online: boolean, timeoutMs = 10_000, from = 0): Promise<Frame> => {
  const earlier = new Set(c.frames.slice(0, from));
  return c.waitFor(
    (f) => !earlier.has(f) && f.type === "presence" && f.ref === undefined && (f.users as Entry[]).some((e) => e.user === user && e.online === online),
    timeoutMs,
  );
};
/** The last record of a device's presence key (a write, a removal, or an expiry marker). */
const lastDeviceRecord = (user: string, device: string) =>
  edges[0]!.node.jsm.direct
    .getMessage(names.kvStream(names.presenceBucket), { last_by_subj: kvKeySubject(names.presenceBucket, presenceDeviceKey(user, device)) })
    .catch(() => null);
/** Whether a device's presence key is live (its last record is a write, not a removal or expiry). */
async function deviceKeyLive(user: string, device: string): Promise<boolean> {
  const last = await lastDeviceRecord(user, device);
  return last !== null && (last.header?.get("KV-Operation") ?? "") === "" && !last.header?.get("Nats-Marker-Reason");
}
/** The stream sequence of a device's graceful leave, once its key's last record is that PURGE. */
async function leaveSeq(user: string, device: string): Promise<number> {
  let seq = 0;
  await expect
    .poll(async () => {
      const last = await lastDeviceRecord(user, device);
      seq = last?.seq ?? 0;
      return [last?.header?.get("KV-Operation"), last?.header?.has("Nats-Marker-Reason") ?? false];
    })
    .toEqual(["PURGE", false]);
  return seq;
}
/** Whether the presence worker has handled (acked) every change of the presence stream up to `seq`. */
async function workerHandled(seq: number): Promise<boolean> {
  const info = await (await edges[0]!.ops()).consumers.info(names.kvStream(names.presenceBucket), names.presenceConsumer);
  return info.ack_floor.stream_seq >= seq;
}

async function ask(c: TestClient, frame: Record<string, unknown>): Promise<Entry[]> {
  const r = await c.request({ type: "presence", ...frame });
  expect(r.type, JSON.stringify(r)).toBe("presence");
  return r.users as Entry[];
}

describe("presence", () => {
  it("a device that stops heartbeating is reported offline to a contact within TTL + 1 s, through the expiry marker", async () => {
    const bob = await client(1, "bob", "laptop");
    await bob.request({ type: "dm.open", peer: "alice" });
    const sentAt = Date.now();
    const alice = await client(0, "alice", "phone", { silent: true }); // its hello is its last frame: then silence
    // Its key is written when it is welcomed: the TTL runs from then, not from before the connect.
    const welcomedAt = Date.now();
    expect(alice.frames[0]).toMatchObject({ type: "welcome", heartbeatMs: Math.floor((TTL_S * 1000) / 3) });
    await waitLive(bob, "alice", true);
    const off = await waitLive(bob, "alice", false, (TTL_S + 3) * 1000);
    expect(Date.now() - sentAt).toBeGreaterThanOrEqual((TTL_S * 1000) / 2);
    expect(Date.now() - welcomedAt).toBeLessThanOrEqual(TTL_S * 1000 + 1000);
    // What ended it is the limit marker the server wrote when the key expired: no sweeper.
    const last = await edges[0]!.node.jsm.direct.getMessage(names.kvStream(names.presenceBucket), {
      last_by_subj: kvKeySubject(names.presenceBucket, presenceDeviceKey("alice", "phone")),
    });
    expect(last?.header.get("Nats-Marker-Reason")).toBe("MaxAge");
    const [offEntry] = off.users as Entry[];
    expect(offEntry!.lastSeen).toBeGreaterThanOrEqual(sentAt);
    // The socket stayed open: its next heartbeat brings the device back, with a newer rev (a new
    // online frame, after the offline one).
    const seenBeforePing = bob.frames.length;
    expect((await alice.request({ type: "ping" })).type).toBe("pong");
    await waitLive(bob, "alice", true, 10_000, seenBeforePing);
    expect(live(bob, "alice").map((e) => e.online)).toEqual([true, false, true]);
    const revs = live(bob, "alice").map((e) => e.rev);
    expect(revs).toEqual([...revs].sort((a, b) => a - b));
    expect(new Set(revs).size).toBe(revs.length);
  });

  it("heartbeats keep a device online well past the TTL", async () => {
    // The watcher is dora's contact before she connects; then only her own pings (every TTL/3,
    // from her welcome on) keep her key alive.
    const watcher = await client(1, "dwatch", "d");
    await watcher.request({ type: "dm.open", peer: "dora" });
    const dora = await client(0, "dora", "d", { silent: true });
    const until = Date.now() + TTL_S * 2500;
    while (Date.now() < until) {
      await dora.request({ type: "ping" });
      await new Promise((r) => setTimeout(r, (TTL_S * 1000) / 3));
    }
    await waitLive(watcher, "dora", true);
    expect(await deviceKeyLive("dora", "d")).toBe(true);
    expect(await ask(watcher, { users: ["dora"] })).toEqual([expect.objectContaining({ user: "dora", online: true })]);
    expect(live(watcher, "dora").map((e) => e.online)).toEqual([true]);
  });

  it("one user with two devices: one leaves and the user stays online; both leave and it goes offline at once, with a last seen", async () => {
    const dave = await client(0, "dave", "d");
    await dave.request({ type: "dm.open", peer: "carol" });
    const phone = await client(0, "carol", "phone");
    const laptop = await client(1, "carol", "laptop");
    await waitLive(dave, "carol", true);
    // The laptop's key is written just after its welcome: wait for it, or the phone leaving first
    // is (rightly) an offline moment.
    await expect.poll(() => deviceKeyLive("carol", "laptop")).toBe(true);
    await phone.close();
    // Once the worker has handled the phone's leave (the laptop still live), carol is online still.
    const phoneLeft = await leaveSeq("carol", "phone");
    await expect.poll(() => workerHandled(phoneLeft)).toBe(true);
    expect(await ask(dave, { users: ["carol"] })).toEqual([expect.objectContaining({ user: "carol", online: true })]);
    expect(live(dave, "carol").map((e) => e.online)).toEqual([true]);
    const leftAt = Date.now();
    await laptop.close();
    const off = await waitLive(dave, "carol", false, (TTL_S + 3) * 1000);
    const offAfter = Date.now() - leftAt;
    // Graceful: what ended it is the laptop's leave (a PURGE), not its key expiring (a MaxAge
    // marker), and the offline carries that leave's time as last seen...
    await leaveSeq("carol", "laptop");
    const leave = (await lastDeviceRecord("carol", "laptop"))!;
    const entry = (off.users as Entry[])[0]!;
    expect(entry.lastSeen).toBe(leave.time.getTime());
    expect(entry.lastSeen).toBeGreaterThanOrEqual(leftAt);
    // ...so it comes at once, not after the TTL.
    expect(offAfter).toBeLessThan(TTL_S * 1000);
    expect(live(dave, "carol").map((e) => e.online)).toEqual([true, false]);
    expect(await ask(dave, { users: ["carol"] })).toEqual([entry]);
  });

  it("only contacts hear live and may ask by name; co-members are fetched by conversation, never pushed", async () => {
    const erin = await client(0, "erin", "d");
    const g = (await erin.request({ type: "group.create", name: "team", members: ["frank", "gina"] })).conv as { id: string };
    const frank = await client(1, "frank", "d");
    expect(await ask(erin, { users: ["frank", "nobody"] })).toEqual([]); // not contacts: left out
    // Frank's connect reaches the user record through the presence worker: eventually, quickly.
    await expect
      .poll(async () => (await ask(erin, { conv: g.id })).map((e) => [e.user, e.online]).sort(), { timeout: 5000 })
      .toEqual([
        ["frank", true],
        ["gina", false],
      ]);
    const members = await ask(erin, { conv: g.id });
    expect(members.find((e) => e.user === "gina")).toEqual({ user: "gina", online: false, rev: 0 });
    await frank.close();
    await expect.poll(async () => (await ask(erin, { conv: g.id })).find((e) => e.user === "frank")?.online, { timeout: 5000 }).toBe(false);
    expect(live(erin, "frank")).toEqual([]);
    // Asking about a conversation one is not in, or in two ways at once, is refused.
    const mallory = await client(1, "mallory", "d");
    expect(await mallory.request({ type: "presence", conv: g.id })).toMatchObject({ type: "error", code: "NOT_MEMBER" });
    expect(await mallory.request({ type: "presence", conv: g.id, users: ["erin"] })).toMatchObject({ type: "error", code: "BAD_FRAME" });
    expect(await mallory.request({ type: "presence" })).toMatchObject({ type: "error", code: "BAD_FRAME" });
    expect(await mallory.request({ type: "presence", users: ["a.b"] })).toMatchObject({ type: "error", code: "BAD_FRAME" });
    // Once a 1:1 conversation exists, each side is the other's contact.
    await mallory.request({ type: "dm.open", peer: "erin" });
    expect(await ask(mallory, { users: ["erin"] })).toEqual([expect.objectContaining({ user: "erin", online: true })]);
  });
});

describe("an edge killed with -9", () => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "natter-presence-child-"));
  let child: ChildProcess | undefined;
  afterAll(() => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    rmSync(dataDir, { recursive: true, force: true });
  });

  async function startChildEdge(): Promise<{ proc: ChildProcess; url: string; exited: Promise<unknown> }> {
    const [port] = await freePorts(1);
    let out = "";
    const proc = spawn(process.execPath, ["--import", "tsx", "bin/natter.ts", "start"], {
      cwd: REPO_ROOT,
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        NATTER_DATA_DIR: dataDir,
        NATTER_NATS__SERVERS: nats.url,
        ...testNatsCredentialsEnv(),
        NATTER_WORKERS__ENABLED: "false",
        NATTER_EDGE__PORT: String(port),
        NATTER_EDGE__ID: "doomed",
        NATTER_AUTH__JWT_SECRET: TEST_SECRET,
        NATTER_PRESENCE__TTL_SEC: String(TTL_S),
        NATTER_DISCOVERY__TTL_SEC: String(TTL_S),
        NATTER_LOG__LEVEL: "warn",
        NATTER_LOG__PRETTY: "false",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child = proc;
    recordProcess(proc.pid!, "natter", "natter edge (presence test child)");
    proc.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    proc.stderr!.on("data", (d: Buffer) => (out += d.toString()));
    const exited = new Promise((resolve) => proc.once("exit", resolve));
    const url = `http://127.0.0.1:${port}`;
    await expect
      .poll(
        async () => {
          if (proc.exitCode !== null) throw new Error(`the child edge exited (${proc.exitCode}):\n${out}`);
          return (await fetch(`${url}/readyz`).catch(() => undefined))?.status;
        },
        { timeout: 45_000, interval: 200 },
      )
      .toBe(200);
    return { proc, url, exited };
  }

  const discovered = async (): Promise<string[]> => {
    const r = await fetch(`${edges[0]!.url}/discovery?limit=100`);
    return ((await r.json()) as { edges: { id: string }[] }).edges.map((e) => e.id);
  };

  it("all 100 of its users go offline within the TTL, and discovery stops returning it", async () => {
    const doomed = await startChildEdge();
    const watcher = await client(0, "kwatch", "d");
    const users = Array.from({ length: 100 }, (_, i) => `k${i}`);
    for (const u of users) await watcher.request({ type: "dm.open", peer: u });
    // Every device heartbeats (a ping every TTL/3) from the moment it is connected, as clients do,
    // until its edge dies: not only once all 100 are in (connecting them may take longer than the TTL).
    const sockets: TestClient[] = [];
    const heartbeats = setInterval(() => {
      for (const s of sockets) if (s.ws.readyState === s.ws.OPEN) s.sendRaw(JSON.stringify({ type: "ping" }));
    }, (TTL_S * 1000) / 3);
    onTestFinished(() => clearInterval(heartbeats));
    onTestFinished(() => Promise.all(sockets.map((s) => s.close())).then(() => undefined));
    await Promise.all(
      users.map(async (u) => {
        sockets.push(await TestClient.connect(doomed.url, { token: await edges[0]!.token(u), device: "d" }));
      }),
    );
    await expect.poll(async () => (await ask(watcher, { users })).filter((e) => e.online).length, { timeout: 10_000 }).toBe(100);
    await expect.poll(discovered, { timeout: 5000 }).toContain("doomed");
    // Online for longer than the TTL: the heartbeats keep the keys alive.
    await new Promise((r) => setTimeout(r, TTL_S * 1500));
    expect((await ask(watcher, { users })).filter((e) => e.online)).toHaveLength(100);
    expect(live(watcher, "k0").map((e) => e.online)).toEqual([true]);

    const killedAt = Date.now();
    const seenBeforeKill = watcher.frames.length;
    doomed.proc.kill("SIGKILL");
    await doomed.exited;
    // Offline as told after the kill (a frame from before it cannot count).
    const offlineSinceKill = (): number =>
      new Set(
        watcher.frames
          .slice(seenBeforeKill)
          .filter((f) => f.type === "presence" && f.ref === undefined)
          .flatMap((f) => (f.users as Entry[]).filter((e) => !e.online).map((e) => e.user)),
      ).size;
    await expect.poll(offlineSinceKill, { timeout: (TTL_S + 5) * 1000, interval: 50 }).toBe(100);
    const allOffline = Date.now() - killedAt;
    // Each key's last write was before the kill, so it expires within the TTL of it; the slack is
    // the server's expiry timer and the worker's handling.
    expect(allOffline).toBeLessThanOrEqual(TTL_S * 1000 + 500);
    expect((await ask(watcher, { users })).filter((e) => e.online)).toEqual([]);
    await expect.poll(discovered, { timeout: (TTL_S + 3) * 1000, interval: 100 }).not.toContain("doomed");
    expect(Date.now() - killedAt).toBeLessThanOrEqual(TTL_S * 1000 + 2000); // TTL + discovery's 1 s cache
    console.log(`kill -9: 100 users offline after ${allOffline} ms; discovery dropped the edge after ${Date.now() - killedAt} ms (TTL ${TTL_S} s)`);
  });
});
