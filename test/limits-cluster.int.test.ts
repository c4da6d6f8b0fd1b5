// Limits per user across a cluster of two edges on one NATS: every frame type is charged to one
// budget per user wherever its devices are, a socket has a bounded number of frames in flight,
// and a user's (N+1)th connection is refused with 4503. Costs come from docs/protocol.md.
import { describe, expect, it, onTestFinished } from "vitest";
import { loadConfig } from "../config/index.ts";
import { presenceSubject, topologyOf } from "../nats/index.ts";
import { DEVICES_HEADER } from "../presence/index.ts";
import { useNats } from "./harness/nats.ts";
import { testConfig, useNode } from "./support/node.ts";
import { DOCUMENTED_FRAME_COSTS } from "./support/protocol-doc.ts";
import { type Frame, TestClient } from "./support/ws-client.ts";

const RATE = 10; // sends per second per user: a burst of 20
const MAX_IN_FLIGHT = 4;
const nats = useNats();
const edge = { sendsPerSecond: RATE, maxInFlightPerSocket: MAX_IN_FLIGHT, maxConnectionsPerUser: 2, badFramesPerMinute: 10_000 };
const edges = [useNode(() => testConfig(nats.url, { edge, push: { enabled: false } })), useNode(() => testConfig(nats.url, { edge, push: { enabled: false }, workers: { enabled: false } }))];

async function connect(on: number, user: string, device: string): Promise<TestClient> {
  const c = await TestClient.connect(edges[on]!.url, { token: await edges[on]!.token(user), device });
  onTestFinished(() => c.close());
  return c;
}

const topology = topologyOf(loadConfig({ env: {} }).streams);

/**
 * The presence worker's counts of `user`'s online devices, as the edges receive them: next(n)
 * resolves at the first count n received since subscribing (or since the last next()).
 */
function deviceCounts(user: string): { next(count: number): Promise<void> } {
  const sub = edges[0]!.node.nc.subscribe(presenceSubject(topology, user));
  onTestFinished(() => sub.unsubscribe());
  const seen: number[] = [];
  let waiter: { count: number; resolve: () => void } | undefined;
  const check = () => {
    const at = waiter ? seen.indexOf(waiter.count) : -1;
    if (at < 0) return;
    seen.splice(0, at + 1);
    const w = waiter!;
    waiter = undefined;
    w.resolve();
  };
  void (async () => {
    for await (const m of sub) {
      const n = m.headers?.get(DEVICES_HEADER);
      if (!n) continue;
      seen.push(Number(n));
      check();
    }
  })();
  return {
    next: (count) =>
      new Promise((resolve) => {
        waiter = { count, resolve };
        check();
      }),
  };
}

/** A device on each edge, both online, and both edges told so (each grants half of the user's budget). */
async function twoDevices(user: string): Promise<[TestClient, TestClient]> {
  const counts = deviceCounts(user);
  const a = await connect(0, user, "phone");
  await counts.next(1); // the phone's presence key lives: the second edge's hello sees it
  const b = await connect(1, user, "laptop");
  await counts.next(2);
  // Every message the server sent each edge's connection before this round trip has been handled.
  await Promise.all(edges.map((e) => e.node.nc.flush()));
  return [a, b];
}

/** A frame of `type` that the server charges and answers without harm (most are refused as not a member). */
function frameOf(type: string, i: number): Frame {
  switch (type) {
    case "ping":
    case "convs":
      return { type };
    case "send":
      return { type, conv: "lim_nowhere", cid: `c${i}`, text: "x" };
    case "receipt":
      return { type, conv: "lim_nowhere", read: 1 };
    case "typing":
      return { type, conv: `lim_nowhere${i}` };
    case "history":
    case "members":
    case "receipts":
    case "group.leave":
      return { type, conv: "lim_nowhere" };
    case "presence":
      return { type, users: ["lim_someone"] };
    case "dm.open":
      return { type, peer: "lim_peer" };
    case "group.create":
      return { type, name: "g", members: [] };
    case "group.add":
    case "group.remove":
      return { type, conv: "lim_nowhere", user: "lim_peer" };
    case "push.register":
      return { type, kind: "webhook", url: "https://push.example/hook" };
    case "push.remove":
      return { type, id: "p1" };
    case "token":
      return { type, token: "not-a-token" };
    default:
      throw new Error(`no test frame for ${type}`);
  }
}

const isBudgetRefusal = (f: Frame) => f.type === "error" && f.code === "RATE_LIMITED" && String(f.message).startsWith("too many requests");

describe("limits per user across two edges", () => {
  it.each(Object.entries(DOCUMENTED_FRAME_COSTS))("charges %s (%f sends) to one budget per user, wherever its devices are", async (type, cost) => {
    const user = `lim_${type.replace(".", "_")}`;
    const devices = await twoDevices(user);
    let sent = 0;
    let granted = 0;
    const refusedOn = [0, 0];
    const started = Date.now();
    // Rounds of MAX_IN_FLIGHT frames on each device, until both edges refused some (bounded).
    for (let round = 0; round < 500 && (refusedOn[0] === 0 || refusedOn[1] === 0 || round < 10); round++) {
      const replies = await Promise.all(
        devices.flatMap((d, di) =>
          Array.from({ length: MAX_IN_FLIGHT }, async () => {
            const r = await d.request(frameOf(type, sent++));
            if (isBudgetRefusal(r)) refusedOn[di]!++;
            else granted++;
            return r;
          }),
        ),
      );
      for (const r of replies) expect(r.code, JSON.stringify(r)).not.toBe("INTERNAL");
    }
    const seconds = (Date.now() - started) / 1000;
    expect(refusedOn[0]).toBeGreaterThan(0);
    expect(refusedOn[1]).toBeGreaterThan(0);
    // One budget: its burst plus what refilled meanwhile (the test's clock spans the server's).
    expect(granted * cost).toBeLessThanOrEqual(2 * RATE + RATE * seconds + 1e-6);
  });

  it("answers frames past edge.maxInFlightPerSocket with RATE_LIMITED, and takes them again as replies go out", async () => {
    const c = await connect(0, "lim_inflight", "d");
    const batch = (from: number) => Array.from({ length: 6 * MAX_IN_FLIGHT }, (_, i) => JSON.stringify({ type: "history", conv: "lim_nowhere", ref: `h${from + i}` }));
    // One write: the edge reads every frame before any reply can free a slot.
    const socket = (c.ws as unknown as { _socket: { cork(): void; uncork(): void } })._socket;
    const write = (frames: string[]) => {
      socket.cork();
      for (const f of frames) c.sendRaw(f);
      socket.uncork();
    };
    write(batch(0));
    await c.waitFor((f) => f.ref === `h${6 * MAX_IN_FLIGHT - 1}`);
    await Promise.all(Array.from({ length: 6 * MAX_IN_FLIGHT }, (_, i) => c.waitFor((f) => f.ref === `h${i}`)));
    const answers = c.frames.filter((f) => typeof f.ref === "string" && f.ref.startsWith("h"));
    const handled = answers.filter((f) => !(f.code === "RATE_LIMITED" && String(f.message).includes("in flight")));
    expect(handled.map((f) => f.ref).sort()).toEqual(["h0", "h1", "h2", "h3"]);
    for (const f of handled) expect(f).toMatchObject({ code: "NOT_MEMBER" });
    // Once those are answered, the socket takes frames again.
    expect(await c.request({ type: "history", conv: "lim_nowhere" })).toMatchObject({ code: "NOT_MEMBER" });
  });

  it("refuses a user's third connection with TOO_MANY_CONNECTIONS and 4503 on either edge, and takes it once a device left", async () => {
    const user = "lim_conns";
    const [, laptop] = await twoDevices(user);
    for (const on of [0, 1]) {
      const third = await TestClient.connect(edges[on]!.url, { token: await edges[on]!.token(user), device: "tablet", expectClose: true });
      expect((await third.closed).code).toBe(4503);
      expect(third.frames).toHaveLength(1);
      expect(third.frames[0]).toMatchObject({ type: "error", code: "TOO_MANY_CONNECTIONS", temporary: true });
      expect(third.frames[0]!.retryAfterMs).toBeGreaterThan(0);
    }
    // The phone reconnecting is not a third connection.
    const phone = await connect(0, user, "phone");
    expect(phone.frames[0]).toMatchObject({ type: "welcome" });
    const counts = deviceCounts(user);
    await laptop.close();
    await counts.next(1);
    const tablet = await connect(1, user, "tablet");
    expect(tablet.frames[0]).toMatchObject({ type: "welcome" });
  });
});
