// The workers' side of a node, on a NATS connection (the workers' identity, which creates the
// topology), store and blob store of its own: the fan-out (with push decisions), the persister,
// the sweeper, the presence worker, the push sender, and their HTTP endpoint (/metrics, /healthz,
// /readyz). It runs in a worker thread of `natter start` (workers.thread: the edge's event loop
// and the workers' each get a core), or on the main thread of a process without an edge.
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { Config } from "../config/index.ts";
import { createMetrics, NatterError, type Logger } from "../core/index.ts";
import { connectRole, JetStreamRequests, topologyOf } from "../nats/index.ts";
import { openBlobStore, openMessageStore } from "../persistence/index.ts";
import { NatsKvPresence } from "../presence/index.ts";
import { ConversationDirectory, ConversationIndex } from "../streams/index.ts";
import { startPush } from "./push.ts";
import { ensureNatterTopology, natterStreams } from "./topology.ts";
import { readinessOf } from "./readiness.ts";
import { startWorkers } from "./workers.ts";
import { startWorkersHttp } from "./workers-http.ts";

export interface WorkerNode {
  /** http://host:port of /metrics, /healthz and /readyz. */
  url: string;
  close(): Promise<void>;
}

/** Starts the workers against the NATS of `cfg.nats.servers` (the topology must exist). */
export async function startWorkerNode(cfg: Config, log: Logger): Promise<WorkerNode> {
  const cleanups: (() => Promise<unknown>)[] = [];
  const unwind = async () => {
    for (const c of cleanups.reverse()) await c().catch((err: unknown) => log.warn({ err }, "cleanup failed"));
  };
  try {
    const servers = cfg.nats.servers;
    if (!servers) throw new NatterError("CONFIG_INVALID", "the workers need nats.servers");
    const nc = await connectRole({ nats: cfg.nats, servers, role: "workers", name: "natter-workers", log });
    cleanups.push(() => nc.drain());
    const js = jetstream(nc);
    const jsm = await jetstreamManager(nc);
    // The workers' identity owns the topology: created or updated to this configuration here.
    await ensureNatterTopology(jsm, cfg);
    const topology = topologyOf(cfg.streams);
    const store = await openMessageStore(cfg, log);
    cleanups.push(() => store.close());
    const blobs = await openBlobStore(cfg, log);
    cleanups.push(() => blobs.close());
    const requests = new JetStreamRequests(nc);
    cleanups.push(async () => requests.close());
    const conversationIndex = new ConversationIndex(js, jsm);
    const directory = new ConversationDirectory({ js, jsm, requests, topology, quota: { maxPerUser: cfg.edge.maxConversationsPerUser, index: conversationIndex } });
    const presence = new NatsKvPresence({ nc, js, jsm, ttlSec: cfg.presence.ttlSec, markerTtlSec: cfg.presence.markerTtlSec, log: log.child({ component: "presence" }) });
    const metrics = createMetrics();
    const push = cfg.push.enabled
      ? await startPush(cfg, { nc, js, jsm, presence: cfg.presence.enabled ? presence : undefined, topology, metrics, log: log.child({ component: "push" }), workers: true })
      : undefined;
    if (push) cleanups.push(() => push.close());
    cleanups.push(await startWorkers(cfg, { nc, jsm, directory, conversationIndex, presence, store, blobs, topology, metrics, log, push: push?.dispatcher }));
    const http = await startWorkersHttp(cfg.workers.httpHost, cfg.workers.httpPort, metrics, readinessOf(cfg, { nc, jsm, store, blobs, streams: natterStreams(cfg), log }));
    cleanups.push(() => http.close());
    let closing: Promise<void> | undefined;
    return { url: http.url, close: () => (closing ??= unwind()) };
  } catch (err) {
    await unwind();
    throw err;
  }
}
