import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import { afterEach, describe, expect, it, vi } from "vitest";
import { silentLogger } from "../core/logger.ts";
import { EdgeRegistry, rankEdges, type EdgeInfo } from "./edges.ts";

const edge = (id: string, region: string, connections: number, capacity = 100, draining = false): EdgeInfo => ({
  id,
  url: `https://${id}.example`,
  region,
  connections,
  capacity,
  draining,
  ts: 0,
});

describe("rankEdges", () => {
  const edges = [edge("eu-1", "eu", 50), edge("eu-2", "eu", 10), edge("us-1", "us", 0), edge("eu-3", "eu", 5, 100, true), edge("eu-4", "eu", 100)];

  it("puts the client's region first, then the lowest load; never a draining edge; full edges last", () => {
    expect(rankEdges(edges, "eu", 10).map((e) => e.id)).toEqual(["eu-2", "eu-1", "us-1", "eu-4"]);
    expect(rankEdges(edges, "us", 10).map((e) => e.id)).toEqual(["us-1", "eu-2", "eu-1", "eu-4"]);
  });

  it("ranks by load ratio, not by connections; without a region by load alone", () => {
    const mixed = [edge("big", "eu", 300, 1000), edge("small", "eu", 20, 50)];
    expect(rankEdges(mixed, undefined, 5).map((e) => [e.id, e.load])).toEqual([
      ["big", 0.3],
      ["small", 0.4],
    ]);
  });

  it("returns at most `limit`, ties broken by id", () => {
    const ties = [edge("b", "eu", 1), edge("a", "eu", 1), edge("c", "eu", 1)];
    expect(rankEdges(ties, "eu", 2).map((e) => e.id)).toEqual(["a", "b"]);
    expect(rankEdges([], "eu", 3)).toEqual([]);
  });
});

describe("EdgeRegistry.register", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("refreshes every ttl/3, and a refresh that failed again after a second, so slow answers do not let the entry expire", async () => {
    vi.useFakeTimers({ now: 0 });
    const writes: number[] = [];
    let failures = 0;
    const js = {
      publish: async () => {
        writes.push(Date.now());
        if (failures > 0) {
          failures--;
          throw new Error("timeout");
        }
        return { seq: writes.length };
      },
    } as unknown as JetStreamClient;
    const registry = new EdgeRegistry({ js, jsm: {} as JetStreamManager, ttlSec: 15, log: silentLogger() });
    const self = { id: "e1", url: "http://e1", region: "eu", capacity: 10, connections: () => 0, draining: () => false, healthy: async () => true };
    const registration = await registry.register(self);
    await vi.advanceTimersByTimeAsync(5000);
    expect(writes).toEqual([0, 5000]);
    failures = 2; // NATS too slow for the next two
    await vi.advanceTimersByTimeAsync(5000);
    await vi.advanceTimersByTimeAsync(2000);
    await vi.advanceTimersByTimeAsync(5000);
    expect(writes).toEqual([0, 5000, 10_000, 11_000, 12_000, 17_000]);
    await registration.close();
  });
});
