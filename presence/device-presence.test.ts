// The edge's write rule, on the in-memory store with a fake clock (and the rescue tick driven by
// the test every second): one write at connect, then at most one per ttl/2 however often the
// device heartbeats; the key lives until ttl after the last heartbeat; a leave removes it at once.
import { describe, expect, it, onTestFinished } from "vitest";
import { pino } from "pino";
import { type Logger, silentLogger } from "../core/logger.ts";
import { DevicePresence } from "./device-presence.ts";
import { MemoryPresence } from "./memory-presence.ts";
import type { PresenceStore, Touch } from "./store.ts";

const TTL_MS = 30_000;

function setup(opts: { failTouches?: number; log?: Logger } = {}) {
  const mem = new MemoryPresence({ ttlMs: TTL_MS });
  onTestFinished(() => mem.close());
  let now = 1_000_000;
  const touches: number[] = [];
  const ttls: number[] = [];
  let failures = opts.failTouches ?? 0;
  const store: PresenceStore = {
    ttlMs: TTL_MS,
    touch: async (u: string, d: string, prev?: number, ttlMs?: number): Promise<Touch> => {
      touches.push(now);
      ttls.push(ttlMs ?? TTL_MS);
      if (failures > 0) {
        failures--;
        throw new Error("NATS is down");
      }
      return mem.touch(u, d, prev, ttlMs);
    },
    leave: (u, d, r) => mem.leave(u, d, r),
    onlineDevices: (u) => mem.onlineDevices(u),
    changes: (h) => mem.changes(h),
    users: (u) => mem.users(u),
    setUser: (u, s, p) => mem.setUser(u, s, p),
  };
  const devices = new DevicePresence({ store, log: opts.log ?? silentLogger(), now: () => now, tickMs: 0 });
  let lastTick = now;
  return {
    mem,
    devices,
    touches,
    ttls,
    /** Moves the clock, running the rescue tick at every whole second on the way. */
    advance: async (ms: number) => {
      await devices.settle();
      const end = now + ms;
      while (lastTick + 1000 <= end) {
        lastTick += 1000;
        now = lastTick;
        devices.tick();
        await devices.settle();
      }
      now = end;
    },
    /** When the key expires: the last write's time plus its TTL. */
    expiry: () => touches[touches.length - 1]! + ttls[ttls.length - 1]!,
  };
}

describe("DevicePresence write rule", () => {
  it("heartbeats every ttl/3 for 2 minutes cost one write per 2·ttl/3 (≤ 120/ttl_s per minute)", async () => {
    const { devices, touches, advance } = setup();
    expect(devices.heartbeatMs).toBe(10_000);
    const h = devices.connect("alice", "phone");
    await advance(0);
    for (let t = 0; t < 120_000; t += devices.heartbeatMs) {
      await advance(devices.heartbeatMs);
      h.beat();
    }
    await advance(0);
    // Writes at 0, 20, 40, … 120 s: 1 at connect + 6 refreshes.
    expect(touches.map((t) => t - touches[0]!)).toEqual([0, 20_000, 40_000, 60_000, 80_000, 100_000, 120_000]);
    const perMinute = (touches.length - 1) / 2;
    expect(perMinute).toBeLessThanOrEqual(120 / (TTL_MS / 1000));
  });

  it("a burst of frames writes no more than once per ttl/2", async () => {
    const { devices, touches, advance } = setup();
    const h = devices.connect("alice", "phone");
    for (let i = 0; i < 600; i++) {
      await advance(100);
      h.beat();
    }
    await advance(0);
    // 60 s of a frame every 100 ms: connect + a write every 15 s.
    expect(touches).toHaveLength(5);
    for (let i = 1; i < touches.length; i++) expect(touches[i]! - touches[i - 1]!).toBeGreaterThanOrEqual(TTL_MS / 2);
  });

  it("a heartbeat late by up to 2·ttl/3 causes no expiry: the tick writes before the key runs out", async () => {
    const { devices, touches, advance, expiry } = setup();
    const h = devices.connect("alice", "phone");
    // A heartbeat just too early to write (14.9 s after the write), then a long silence.
    await advance(14_900);
    h.beat();
    await advance(20_000); // no heartbeat until 34.9 s: without the tick the key (30 s) would expire
    h.beat();
    await advance(10_000);
    // The tick wrote at 23 s (key left: 7 s) until 30 s after the 14.9 s heartbeat, and at 37 s (key
    // left: 7 s again) until 30 s after the 34.9 s one: each before the key ran out, one per heartbeat.
    expect(touches.map((t) => t - touches[0]!)).toEqual([0, 23_000, 37_000]);
    expect(expiry() - touches[0]!).toBe(64_000);
  });

  it("a device that stops heartbeating expires ttl after its last heartbeat (to the second), never later", async () => {
    const { devices, advance, expiry, touches } = setup();
    const h = devices.connect("alice", "phone");
    for (const t of [10_000, 10_000, 10_000, 2_500]) {
      await advance(t);
      h.beat();
    }
    const lastBeat = touches[0]! + 32_500;
    await advance(60_000);
    expect(expiry()).toBeGreaterThan(lastBeat + TTL_MS - 1000);
    expect(expiry()).toBeLessThanOrEqual(lastBeat + TTL_MS);
  });

  it("leave removes the key at once; two sockets of one device leave only when both have", async () => {
    const { mem, devices, advance } = setup();
    const a = devices.connect("bob", "laptop");
    const b = devices.connect("bob", "laptop");
    await advance(0);
    expect(await mem.onlineDevices("bob")).toEqual(["laptop"]);
    a.release("leave");
    await advance(0);
    expect(await mem.onlineDevices("bob")).toEqual(["laptop"]);
    b.release("leave");
    b.release("leave"); // idempotent
    await advance(0);
    expect(await mem.onlineDevices("bob")).toEqual([]);
    expect(devices.devices).toBe(0);
  });

  it("a socket the server asked to reconnect keeps the key (it expires within the TTL unless the device returns)", async () => {
    const { mem, devices, advance } = setup();
    devices.connect("carol", "tab").release("keep");
    await advance(0);
    expect(await mem.onlineDevices("carol")).toEqual(["tab"]);
  });

  it("a failed write is retried within a second, not after ttl/2", async () => {
    const { devices, touches, advance } = setup({ failTouches: 1 });
    const h = devices.connect("dave", "d");
    await advance(500);
    h.beat();
    await advance(600);
    h.beat();
    await advance(0);
    expect(touches.map((t) => t - touches[0]!)).toEqual([0, 1000]); // the tick retried
  });

  it("failed writes of many devices (NATS too slow for all of them) make one warn line per interval, not one per write", async () => {
    const lines: { level: number; msg: string; counts?: Record<string, number>; err?: { message: string } }[] = [];
    const log = pino({ level: "info" }, { write: (line: string) => lines.push(JSON.parse(line)) });
    const { devices, touches, advance } = setup({ failTouches: 600, log });
    for (let i = 0; i < 200; i++) devices.connect(`u${i}`, "d");
    await advance(1000); // the tick retries each
    await advance(1000); // and again
    expect(touches).toHaveLength(600);
    expect(lines).toEqual([]); // counted, not logged one by one
    await devices.close();
    expect(lines).toMatchObject([{ level: 40, counts: { touch: 600 }, err: { message: "NATS is down" } }]);
  });

  it.each([1, 42, 1234, 99_991, 2_024_113])("with a 2 s TTL, jittered heartbeats and slow writes, the key never lapses while the device heartbeats (seed %i)", async (first) => {
    const ttl = 2000;
    let now = 0;
    let seed = first;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    // Writes take 0–300 ms (a busy edge and NATS); the TTL counts from when the write landed.
    const inFlight: { at: number; land: () => void }[] = [];
    const landed: { at: number; ttlMs: number }[] = [];
    let revision = 0;
    const store = {
      ttlMs: ttl,
      touch: (_u: string, _d: string, _prev?: number, ttlMs = ttl): Promise<Touch> =>
        new Promise((resolve) => {
          inFlight.push({
            at: now + Math.floor(rnd() * 300),
            land: () => {
              landed.push({ at: now, ttlMs });
              resolve({ revision: ++revision, started: revision === 1 });
            },
          });
        }),
      leave: async () => true,
    } as unknown as PresenceStore;
    const devices = new DevicePresence({ store, log: silentLogger(), now: () => now, tickMs: 0 });
    const h = devices.connect("erin", "d");
    let nextBeat = 0;
    let beats = 0;
    for (now = 1; now <= 60_000; now++) {
      const due = inFlight.filter((w) => w.at <= now);
      for (const w of due) {
        inFlight.splice(inFlight.indexOf(w), 1);
        w.land();
      }
      for (let k = 0; k < 4; k++) await Promise.resolve(); // the edge's continuations run
      // Heartbeats every ttl/3 (666 ms), each up to 250 ms late or early.
      if (now >= nextBeat) {
        h.beat();
        beats++;
        nextBeat = now + 666 + Math.floor((rnd() - 0.5) * 500);
      }
      if (now % 200 === 0) devices.tick(); // ttl/10, as the edge runs it
    }
    expect(landed.length).toBeGreaterThan(20);
    for (let i = 1; i < landed.length; i++) {
      expect(landed[i]!.at, `write ${i} landed after the key of write ${i - 1} expired`).toBeLessThanOrEqual(landed[i - 1]!.at + landed[i - 1]!.ttlMs);
    }
    // Still bounded: at most one write per heartbeat.
    expect(landed.length).toBeLessThanOrEqual(beats);
  });
});
