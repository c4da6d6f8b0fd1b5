// A node's readiness: NATS connected, every stream it needs present, the store and the blob
// store answering. /readyz (edge and workers) and the edge's discovery refresh answer from this.
//
// The checks that ask other servers (streams, store, blobs) run at most once per CHECK_EVERY_MS
// however often readiness is asked, and never hold an answer up once they have run once: the last
// results are answered while the next run is under way. So a probe every 100 ms costs the servers
// one JetStream API call a second, and a JetStream API slowed by a reconnect storm neither makes
// /readyz time out nor starves the discovery refresh. A run that has not answered for
// STALE_AFTER_MS counts as failed. The NATS connection's state is read at every call.
import type { JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Config } from "../config/index.ts";
import type { Logger } from "../core/index.ts";
import type { Readiness, ReadinessCheck } from "../edge/index.ts";
import type { BlobStore, Store } from "../persistence/index.ts";

const CHECK_EVERY_MS = 1000;
const STALE_AFTER_MS = 10_000;

export function readinessOf(cfg: Config, d: { nc: NatsConnection; jsm: JetStreamManager; store: Store; blobs: BlobStore; streams: readonly string[]; log: Logger }): Readiness {
  const { nc, jsm, store, blobs, log } = d;
  const live = async () => ({ nats: nc.isClosed() ? { ok: false, detail: "connection closed" } : { ok: true, detail: nc.getServer() } });
  const remote = async () => {
    const checks: Record<string, ReadinessCheck> = {};
    try {
      const present = new Set<string>();
      for await (const name of jsm.streams.names()) present.add(name);
      const missing = d.streams.filter((s) => !present.has(s));
      checks.streams = missing.length === 0 ? { ok: true } : { ok: false, detail: `missing: ${missing.join(", ")}` };
    } catch (err) {
      checks.streams = { ok: false, detail: (err as Error).message };
    }
    try {
      await store.ping();
      checks.store = { ok: true, detail: cfg.store.kind };
    } catch (err) {
      checks.store = { ok: false, detail: `${cfg.store.kind} unreachable` };
      log.warn({ err }, "store ping failed");
    }
    try {
      await blobs.ping();
      checks.blobs = { ok: true, detail: cfg.blobs.kind };
    } catch (err) {
      checks.blobs = { ok: false, detail: `${cfg.blobs.kind} unreachable` };
      log.warn({ err }, "blob store ping failed");
    }
    return checks;
  };
  return cachedReadiness(live, remote);
}

/**
 * `live` at every call, with the last results of `remote`, run again (once at a time) when they
 * are `everyMs` old; only the first call waits for it. Results of a run that has not answered for
 * `staleAfterMs` read as failed.
 */
export function cachedReadiness(live: Readiness, remote: Readiness, opts: { everyMs?: number; staleAfterMs?: number; now?: () => number } = {}): Readiness {
  const everyMs = opts.everyMs ?? CHECK_EVERY_MS;
  const staleAfterMs = opts.staleAfterMs ?? STALE_AFTER_MS;
  const now = opts.now ?? Date.now;
  let last: { at: number; checks: Record<string, ReadinessCheck> } | undefined;
  let running: { since: number; done: Promise<void> } | undefined;
  const run = (): Promise<void> => {
    if (!running) {
      const since = now();
      const done = remote()
        .catch((err: unknown) => ({ checks: { ok: false, detail: (err as Error).message } }))
        .then((checks) => {
          last = { at: now(), checks };
        })
        .finally(() => {
          running = undefined;
        });
      running = { since, done };
    }
    return running.done;
  };
  return async () => {
    if (!last) await run();
    else if (now() - last.at >= everyMs) void run();
    const t = now();
    const stalled = running !== undefined && t - running.since >= staleAfterMs;
    const remoteChecks = Object.fromEntries(
      Object.entries(last!.checks).map(([k, c]) => [k, stalled ? { ok: false, detail: `no answer for ${Math.round((t - running!.since) / 1000)} s` } : c]),
    );
    return { ...(await live()), ...remoteChecks };
  };
}
