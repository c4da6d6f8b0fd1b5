// A persister that cannot write must not let messages expire unpersisted: with no workers running
// (the persister down), edges refuse new messages with STORE_BEHIND once the oldest unpersisted
// message is streams.refuseSendsAtBacklogPct of the retention old, logging it at error level;
// membership changes and receipts go on. When a persister comes back, every acked message is in
// the store, the backlog-age gauge reads 0 and sends are accepted again.
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { pino } from "pino";
import { describe, expect, it, onTestFinished } from "vitest";
import { createMetrics } from "../core/index.ts";
import { silentLogger } from "../core/logger.ts";
import { mintToken } from "../edge/index.ts";
import { names, persisterBacklogGauge } from "../nats/index.ts";
import { startNatter } from "../runtime/index.ts";
import { useNats } from "./harness/nats.ts";
import { ensureTopologyAsWorkers, testConfig } from "./support/node.ts";
import { TestClient, type Frame } from "./support/ws-client.ts";

const nats = useNats();

/** The retention and the threshold: refusals at 10 % of 30 s, so the persister's return has 27 s. */
const RETENTION_SEC = 30;
const REFUSE_AT_PCT = 10;
const THRESHOLD_MS = (RETENTION_SEC * 1000 * REFUSE_AT_PCT) / 100;

/** The value of `natter_persister_backlog_age_seconds` for CONV_0 in a Prometheus text page. */
function backlogAge(page: string): number | undefined {
  const m = /^natter_persister_backlog_age_seconds\{stream="CONV_0"\} (\S+)$/m.exec(page);
  return m ? Number(m[1]) : undefined;
}

describe("a persister that is down", () => {
  it("stops sends with STORE_BEHIND before anything acked can expire; membership goes on; all of it is persisted when it is back", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "natter-behind-"));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const overrides = {
      streams: { conversationMaxAgeSec: RETENTION_SEC, refuseSendsAtBacklogPct: REFUSE_AT_PCT },
      store: { kind: "sqlite", path: path.join(dir, "natter.sqlite") },
      // Sends here are paced by the refusal, not by the budget.
      edge: { sendsPerSecond: 1000 },
    };
    // An edge with no workers: nothing persists what it accepts.
    const logged: { level: number; msg: string; [k: string]: unknown }[] = [];
    const log = pino({ level: "warn" }, { write: (line: string) => void logged.push(JSON.parse(line) as (typeof logged)[number]) });
    const edgeCfg = testConfig(nats.url, { ...overrides, workers: { enabled: false } });
    await ensureTopologyAsWorkers(edgeCfg);
    const edge = await startNatter(edgeCfg, log);
    onTestFinished(async () => {
      await edge.close();
      rmSync(edgeCfg.dataDir, { recursive: true, force: true });
    });
    const nc = await connect({ servers: nats.url });
    onTestFinished(() => nc.drain());
    const jsm = await jetstreamManager(nc);
    // The gauge the workers serve, on a registry of the test's own (no workers run yet).
    const metrics = createMetrics({ defaults: false });
    persisterBacklogGauge(metrics, jsm, 1);

    const alice = await TestClient.connect(edge.url, { token: await mintToken(edge.tokens, "sb_alice"), device: "d" });
    onTestFinished(() => alice.close());
    const { conv } = (await alice.request({ type: "dm.open", peer: "sb_bob" })) as unknown as { conv: { id: string } };

    // Send until refused. Each accepted message waits in the stream, unpersisted.
    const acked: number[] = [];
    let refusal: Frame | undefined;
    let n = 0;
    await expect
      .poll(
        async () => {
          const r = await alice.request({ type: "send", conv: conv.id, cid: `sb${n++}`, text: `message ${n}` });
          if (r.type === "ack") acked.push(Number(r.id));
          else refusal = r;
          return r.type === "error" ? r.code : r.type;
        },
        { timeout: 30_000, interval: 100 },
      )
      .toBe("STORE_BEHIND");
    expect(refusal).toMatchObject({ type: "error", code: "STORE_BEHIND", temporary: true });
    expect(refusal!.retryAfterMs).toBeGreaterThan(0);
    expect(acked.length).toBeGreaterThan(0);

    // The cause: the oldest message the persister has not acked (the one after its ack floor:
    // nothing was ever acked) is past the threshold; the gauge says the same.
    const consumer = await jsm.consumers.info(names.conversationStream(0), names.persisterConsumer);
    expect(consumer.ack_floor.stream_seq).toBe(0);
    const oldest = await jsm.direct.getMessage(names.conversationStream(0), { seq: 1 });
    expect(Date.now() - oldest!.time.getTime()).toBeGreaterThanOrEqual(THRESHOLD_MS);
    expect(backlogAge(await metrics.registry.metrics())).toBeGreaterThanOrEqual(THRESHOLD_MS / 1000);

    // Refused loudly: an error line naming the stream and the time left.
    await expect.poll(() => logged.find((l) => l.level === 50 && l.msg.startsWith("sends refused (STORE_BEHIND)"))).toMatchObject({ streams: ["CONV_0"] });
    const line = logged.find((l) => l.level === 50 && l.msg.startsWith("sends refused"))!;
    expect(line.firstExpiryInSec).toBeLessThanOrEqual(RETENTION_SEC);

    // Membership changes and receipts go on.
    const group = await alice.request({ type: "group.create", name: "still open", members: ["sb_bob"] });
    expect(group.type).toBe("conv");
    const groupId = (group.conv as { id: string }).id;
    expect((await alice.request({ type: "group.add", conv: groupId, user: "sb_carol" })).type).toBe("conv");
    expect((await alice.request({ type: "receipt", conv: conv.id, read: acked.at(-1) })).type).toBe("receipt");
    // Messages to another conversation of the same stream are refused too.
    expect(await alice.request({ type: "send", conv: groupId, cid: "sb-group", text: "hello group" })).toMatchObject({ code: "STORE_BEHIND" });

    // The persister comes back (a workers-only process on the same store).
    const workersCfg = testConfig(nats.url, { ...overrides, edge: { enabled: false } });
    const workers = await startNatter(workersCfg, silentLogger());
    onTestFinished(async () => {
      await workers.close();
      rmSync(workersCfg.dataDir, { recursive: true, force: true });
    });
    // It catches up: the gauge reads 0 here and on the workers' own /metrics.
    await expect.poll(async () => backlogAge(await metrics.registry.metrics()), { timeout: 20_000, interval: 200 }).toBe(0);
    expect(backlogAge(await (await fetch(`${workers.workersUrl}/metrics`)).text())).toBe(0);

    // Every message the edge acked is in the store, once; so are the membership changes.
    const stored = await workers.store.history(conv.id, { limit: 100 });
    expect(stored.filter((m) => m.kind === "msg").map((m) => m.id).sort((a, b) => a - b)).toEqual(acked);
    expect((await workers.store.history(groupId, { limit: 100 })).filter((m) => m.kind === "members")).toHaveLength(2);

    // And the edge takes messages again (a retry of the refused one, same cid).
    await expect
      .poll(async () => (await alice.request({ type: "send", conv: groupId, cid: "sb-group", text: "hello group" })).type, { timeout: 20_000, interval: 200 })
      .toBe("ack");
    await expect.poll(() => logged.some((l) => l.msg.startsWith("sends accepted again"))).toBe(true);
  });
});
