// Service discovery across three edges on one NATS: every edge registers in the `edges` bucket
// and answers GET /discovery — same region first, then the lowest load, full edges last, never a
// draining edge; a draining edge refuses new sockets; a graceful close removes it at once.
import { describe, expect, it, onTestFinished } from "vitest";
import { edgeKey, kvKeySubject, names } from "../nats/index.ts";
import { useNats } from "./harness/nats.ts";
import { testConfig, useNode, type NodeHandle } from "./support/node.ts";
import { TestClient } from "./support/ws-client.ts";

const TTL_S = 2;
const nats = useNats();
const edge = (id: string, region: string, capacity: number, workers = false) =>
  useNode(() =>
    testConfig(nats.url, {
      edge: { port: 0, id, region, capacity, publicUrl: `wss://${id}.chat.example` },
      discovery: { ttlSec: TTL_S },
      presence: { ttlSec: TTL_S },
      workers: { enabled: workers },
    }),
  );
const euA = edge("eu-a", "eu", 4, true);
const euB = edge("eu-b", "eu", 100);
const usA = edge("us-a", "us", 100);

type Ranked = { id: string; url: string; region: string; connections: number; capacity: number; load: number };
async function discover(via: NodeHandle, query = ""): Promise<{ status: number; edges: Ranked[] }> {
  const r = await fetch(`${via.url}/discovery${query}`);
  const body = (await r.json()) as { edges?: Ranked[] };
  return { status: r.status, edges: body.edges ?? [] };
}
const ids = async (via: NodeHandle, query: string) => (await discover(via, query)).edges.map((e) => e.id);

async function connect(node: NodeHandle, n: number, prefix: string): Promise<TestClient[]> {
  const out = await Promise.all(Array.from({ length: n }, async (_, i) => TestClient.connect(node.url, { token: await node.token(`${prefix}${i}`), device: "d" })));
  onTestFinished(() => Promise.all(out.map((c) => c.close())).then(() => undefined));
  return out;
}

describe("discovery", () => {
  it("ranks edges by region, then load; full edges last; any edge answers the same", async () => {
    await expect.poll(() => ids(euB, "?region=eu&limit=10"), { timeout: 5000 }).toEqual(["eu-a", "eu-b", "us-a"]);
    const first = (await discover(usA, "?region=eu&limit=10")).edges[0]!;
    expect(first).toEqual({ id: "eu-a", url: "wss://eu-a.chat.example", region: "eu", connections: 0, capacity: 4, load: 0 });
    expect(await ids(euA, "?region=us&limit=10")).toEqual(["us-a", "eu-a", "eu-b"]);
    expect(await ids(euA, "?region=eu")).toHaveLength(3); // discovery.results
    expect(await ids(euA, "?region=eu&limit=1")).toEqual(["eu-a"]);

    await connect(euA, 2, "half"); // eu-a: 2 of 4
    await expect.poll(() => ids(usA, "?region=eu&limit=10"), { timeout: 5000 }).toEqual(["eu-b", "eu-a", "us-a"]);
    await connect(euA, 2, "full"); // eu-a: 4 of 4 — full: after the other region
    await expect.poll(() => ids(usA, "?region=eu&limit=10"), { timeout: 5000 }).toEqual(["eu-b", "us-a", "eu-a"]);
    expect((await discover(euB, "?region=eu&limit=10")).edges.at(-1)).toMatchObject({ id: "eu-a", connections: 4, load: 1 });
    // Without a region: by load alone.
    expect(await ids(euB, "?limit=10")).toEqual(["eu-b", "us-a", "eu-a"]);
  });

  it("a draining edge gets no new clients: not discovered, new sockets told to go away, not ready; open sockets stay", async () => {
    const stays = (await connect(euB, 1, "stays"))[0]!;
    await euB.node.edge!.drain();
    // The drain is written before drain() returns; an edge answers from a list at most 1 s old.
    await expect.poll(() => ids(euA, "?region=eu&limit=10"), { timeout: 1500, interval: 100 }).not.toContain("eu-b");
    const refused = await TestClient.open(euB.url);
    expect((await refused.closed).code).toBe(1001);
    const ready = await fetch(`${euB.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(((await ready.json()) as { checks: Record<string, unknown> }).checks.edge).toEqual({ ok: false, detail: "draining" });
    expect((await stays.request({ type: "ping" })).type).toBe("pong");
    // The registration keeps being refreshed (draining) and never comes back as a target.
    await new Promise((r) => setTimeout(r, TTL_S * 1500));
    expect(await ids(usA, "?region=eu&limit=10")).not.toContain("eu-b");
  });

  it("a gracefully closed edge is removed at once, not after the TTL", async () => {
    await expect.poll(() => ids(euA, "?region=us&limit=10"), { timeout: 5000 }).toContain("us-a");
    // Watch while the close runs: it marks the edge draining, then removes its entry.
    const closing = usA.node.close();
    await expect.poll(() => ids(euA, "?region=us&limit=10"), { timeout: 5000, interval: 100 }).not.toContain("us-a");
    const goneAt = Date.now();
    await closing;
    // Removed, not expired: the entry's last record is the close's PURGE, not a MaxAge marker...
    const last = await euA.node.jsm.direct.getMessage(names.kvStream(names.edgesBucket), { last_by_subj: kvKeySubject(names.edgesBucket, edgeKey("us-a")) });
    expect(last?.header?.get("KV-Operation")).toBe("PURGE");
    expect(last?.header?.has("Nats-Marker-Reason")).toBe(false);
    // ...and no edge answered with it for longer than its 1 s list cache after that removal.
    expect(goneAt - last!.time.getTime()).toBeLessThan(TTL_S * 1000);
  });
});
