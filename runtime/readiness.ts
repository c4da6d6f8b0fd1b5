// A node's readiness: NATS connected, every stream it needs present, the store and the blob
// store answering. /readyz (edge and workers) answers from this.
import type { JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Config } from "../config/index.ts";
import type { Logger } from "../core/index.ts";
import type { Readiness, ReadinessCheck } from "../edge/index.ts";
import type { BlobStore, Store } from "../persistence/index.ts";

export function readinessOf(cfg: Config, d: { nc: NatsConnection; jsm: JetStreamManager; store: Store; blobs: BlobStore; streams: readonly string[]; log: Logger }): Readiness {
  const { nc, jsm, store, blobs, log } = d;
  return async () => {
    const checks: Record<string, ReadinessCheck> = {};
    checks.nats = nc.isClosed() ? { ok: false, detail: "connection closed" } : { ok: true, detail: nc.getServer() };
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
}
