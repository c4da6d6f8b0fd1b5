// The one suite every PresenceStore must pass (NATS KV and in-memory), so they cannot drift.
// `make` is called once per test with the device TTL; the store it returns is closed when the test
// finishes. Tests use fresh user ids, so several may share one bucket (and one durable feed: each
// test only looks at the changes of its own users).
import { randomBytes } from "node:crypto";
import { describe, expect, onTestFinished, test, vi } from "vitest";
import type { DeviceChange, PresenceStore } from "../../presence/index.ts";

export interface PresenceStoreHandle {
  store: PresenceStore;
  close(): Promise<void> | void;
}

export function presenceStoreConformance(name: string, make: (ttlSec: number) => Promise<PresenceStoreHandle> | PresenceStoreHandle): void {
  describe(`PresenceStore conformance: ${name}`, () => {
    const TTL_S = 2;

    async function open(): Promise<{ store: PresenceStore; user: (n?: number) => string }> {
      const h = await make(TTL_S);
      onTestFinished(() => h.close());
      const ns = `p${randomBytes(5).toString("hex")}`;
      return { store: h.store, user: (n = 0) => `${ns}_${n}` };
    }

    /** Collects the changes of users starting with `prefix` from a fresh feed (stopped after the test). */
    async function watch(store: PresenceStore, prefix: string, handler?: (c: DeviceChange) => Promise<void>): Promise<DeviceChange[]> {
      const seen: DeviceChange[] = [];
      const feed = await store.changes(async (c) => {
        if (!c.user.startsWith(prefix)) return;
        await handler?.(c);
        seen.push(c);
      });
      onTestFinished(() => feed.stop());
      return seen;
    }

    test("a touch starts a device key; a touch with its revision refreshes it", async () => {
      const { store, user } = await open();
      expect(store.ttlMs).toBe(TTL_S * 1000);
      const u = user();
      expect(await store.onlineDevices(u)).toEqual([]);
      const first = await store.touch(u, "d1");
      expect(first.started).toBe(true);
      const again = await store.touch(u, "d1", first.revision);
      expect(again.started).toBe(false);
      expect(again.revision).toBeGreaterThan(first.revision);
      expect((await store.touch(u, "d2")).started).toBe(true);
      expect((await store.onlineDevices(u)).sort()).toEqual(["d1", "d2"]);
      expect(await store.onlineDevices(user(1))).toEqual([]);
    });

    test("a writer without the current revision continues a live key: it does not start it again", async () => {
      const { store, user } = await open();
      const u = user();
      const a = await store.touch(u, "d");
      expect((await store.touch(u, "d")).started).toBe(false);
      expect((await store.touch(u, "d", a.revision + 1000)).started).toBe(false);
    });

    test("leave removes a key only at its revision; a later touch starts it again", async () => {
      const { store, user } = await open();
      const u = user();
      const r1 = await store.touch(u, "d");
      const r2 = await store.touch(u, "d", r1.revision);
      expect(await store.leave(u, "d", r1.revision)).toBe(false);
      expect(await store.onlineDevices(u)).toEqual(["d"]);
      expect(await store.leave(u, "d", r2.revision)).toBe(true);
      expect(await store.onlineDevices(u)).toEqual([]);
      expect(await store.leave(u, "d", r2.revision)).toBe(false);
      expect((await store.touch(u, "d", r2.revision)).started).toBe(true);
      expect(await store.onlineDevices(u)).toEqual(["d"]);
    });

    test("changes: a start and a leave, in order; refreshes and continuations are not changes", async () => {
      const { store, user } = await open();
      const u = user();
      const seen = await watch(store, u);
      const before = Date.now();
      const r1 = await store.touch(u, "d");
      const r2 = await store.touch(u, "d", r1.revision);
      await store.touch(u, "d");
      const r3 = await store.touch(u, "d", r2.revision);
      await store.touch(u, "e");
      await store.leave(u, "d", r3.revision + 10); // stale: not removed
      const cur = await store.touch(u, "d");
      await store.leave(u, "d", cur.revision);
      await vi.waitFor(() => expect(seen).toHaveLength(3), { timeout: 5000 });
      expect(seen.map((c) => [c.device, c.online])).toEqual([
        ["d", true],
        ["e", true],
        ["d", false],
      ]);
      for (const c of seen) {
        expect(c.user).toBe(u);
        expect(c.at).toBeGreaterThanOrEqual(before - 1000);
        expect(c.at).toBeLessThanOrEqual(Date.now() + 1000);
      }
    });

    test("a key expires ttl after its last write, and the expiry is a change (no sweeper)", async () => {
      const { store, user } = await open();
      const u = user();
      const seen = await watch(store, u);
      const r = await store.touch(u, "d");
      await new Promise((res) => setTimeout(res, 1000));
      const refreshedAt = Date.now();
      await store.touch(u, "d", r.revision);
      await vi.waitFor(() => expect(seen.filter((c) => !c.online)).toHaveLength(1), { timeout: TTL_S * 1000 + 3000, interval: 20 });
      const expiredAfter = Date.now() - refreshedAt;
      expect(expiredAfter).toBeGreaterThanOrEqual(TTL_S * 1000 - 100);
      expect(expiredAfter).toBeLessThan(TTL_S * 1000 + 1000);
      expect(await store.onlineDevices(u)).toEqual([]);
      expect(seen.map((c) => c.online)).toEqual([true, false]);
      // After an expiry the old revision no longer refreshes: the next touch starts the key.
      expect((await store.touch(u, "d", r.revision)).started).toBe(true);
    });

    test("a touch may give a shorter TTL (whole seconds, rounded up)", async () => {
      const { store, user } = await open();
      const u = user();
      const seen = await watch(store, u);
      const at = Date.now();
      await store.touch(u, "d", undefined, 700); // 1 s
      await vi.waitFor(() => expect(seen.filter((c) => !c.online)).toHaveLength(1), { timeout: 4000, interval: 20 });
      expect(Date.now() - at).toBeGreaterThanOrEqual(900);
      expect(Date.now() - at).toBeLessThan(TTL_S * 1000);
    });

    test("a change is delivered again until its handler resolves", async () => {
      const { store, user } = await open();
      const u = user();
      let failures = 0;
      const seen = await watch(store, u, async () => {
        if (failures++ === 0) throw new Error("handler failed once");
      });
      await store.touch(u, "d");
      await vi.waitFor(() => expect(seen).toHaveLength(1), { timeout: 5000 });
      expect(failures).toBe(2);
    });

    test("a new feed resumes where the last one stopped (durable)", async () => {
      const { store, user } = await open();
      const u = user();
      const first: DeviceChange[] = [];
      const feed = await store.changes(async (c) => {
        if (c.user === u) first.push(c);
      });
      const r = await store.touch(u, "d");
      await vi.waitFor(() => expect(first).toHaveLength(1), { timeout: 5000 });
      await feed.stop();
      await store.leave(u, "d", r.revision);
      const seen = await watch(store, u);
      await vi.waitFor(() => expect(seen).toHaveLength(1), { timeout: 5000 });
      expect(seen[0]).toMatchObject({ user: u, device: "d", online: false });
    });

    test("user records change only by compare-and-set", async () => {
      const { store, user } = await open();
      const [a, b] = [user(1), user(2)];
      expect((await store.users([a, b])).size).toBe(0);
      const r1 = await store.setUser(a, { online: true, since: 1000 }, 0);
      expect(r1).toBeGreaterThan(0);
      expect(await store.setUser(a, { online: false, lastSeen: 2000 }, 0)).toBeNull();
      const r2 = await store.setUser(a, { online: false, lastSeen: 2000 }, r1!);
      expect(r2).toBeGreaterThan(r1!);
      const got = await store.users([a, b, a]);
      expect([...got.keys()]).toEqual([a]);
      expect(got.get(a)).toEqual({ state: { online: false, lastSeen: 2000 }, revision: r2 });
    });
  });
}
