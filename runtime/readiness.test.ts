// Readiness under a slow JetStream API: probes answer from the last results while the next run of
// the remote checks is under way (one at a time, at most once a second), so /readyz and the
// discovery refresh never wait behind a reconnect storm; a run that stalls 10 s reads as failed.
import { describe, expect, it } from "vitest";
import type { ReadinessCheck } from "../edge/index.ts";
import { cachedReadiness } from "./readiness.ts";

/** Remote checks whose runs the test answers one by one. */
function remoteChecks() {
  const runs: ((checks: Record<string, ReadinessCheck>) => void)[] = [];
  return {
    runs,
    remote: () => new Promise<Record<string, ReadinessCheck>>((resolve) => runs.push(resolve)),
  };
}

describe("cachedReadiness", () => {
  it("waits for the first run only; then answers from the last results while one run at a time refreshes them", async () => {
    let now = 0;
    const { runs, remote } = remoteChecks();
    const readiness = cachedReadiness(async () => ({ nats: { ok: true } }), remote, { now: () => now });
    const first = readiness();
    expect(runs).toHaveLength(1);
    runs[0]!({ streams: { ok: true }, store: { ok: true } });
    expect(await first).toEqual({ nats: { ok: true }, streams: { ok: true }, store: { ok: true } });

    now += 999;
    await readiness();
    expect(runs).toHaveLength(1); // fresh enough
    now += 1;
    // Ten probes while the JetStream API is slow: one run, and every probe answered at once.
    const answers = await Promise.all(Array.from({ length: 10 }, () => readiness()));
    expect(runs).toHaveLength(2);
    for (const a of answers) expect(a).toEqual({ nats: { ok: true }, streams: { ok: true }, store: { ok: true } });

    runs[1]!({ streams: { ok: true }, store: { ok: false, detail: "sqlite unreachable" } });
    await expect.poll(async () => (await readiness()).store).toEqual({ ok: false, detail: "sqlite unreachable" });
    expect(runs).toHaveLength(2);
  });

  it("reads a run that has not answered for 10 s as failed, and the connection's state at every call", async () => {
    let now = 0;
    let connected = true;
    const { runs, remote } = remoteChecks();
    const readiness = cachedReadiness(async () => ({ nats: { ok: connected } }), remote, { now: () => now });
    const first = readiness();
    runs[0]!({ streams: { ok: true } });
    await first;
    now += 1000;
    await readiness(); // starts a run that never answers
    expect(runs).toHaveLength(2);
    now += 9999;
    connected = false;
    expect(await readiness()).toEqual({ nats: { ok: false }, streams: { ok: true } });
    now += 1;
    expect(await readiness()).toEqual({ nats: { ok: false }, streams: { ok: false, detail: "no answer for 10 s" } });
  });
});
