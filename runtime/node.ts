// One natter node, wired: NATS (embedded or configured) and natter's topology, the store and
// blobs, the domain services, the workers, and the edge. Used by `natter start` and by end-to-end
// tests; signals and exits stay in bin/. Each concern's wiring has its file in runtime/; this one
// only puts them in order and unwinds them in reverse.
import { jetstream, type JetStreamClient, type JetStreamManager, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Config } from "../config/index.ts";
import { createMetrics, type Logger } from "../core/index.ts";
import { createEdge, type Edge, Revocations, type TokenSettings } from "../edge/index.ts";
import { ImageService } from "../media/index.ts";
import { connectRole, JetStreamRequests, topologyOf, type NatsRole } from "../nats/index.ts";
import { historyReader, openBlobStore, openMessageStore, type BlobStore, type Store } from "../persistence/index.ts";
import { DevicePresence, EdgeRegistry, NatsKvPresence, presenceOf } from "../presence/index.ts";
import { ConversationDirectory, ConversationIndex, inboxBounds, publishMessage, QuotaLedger, readInbox, Receipts, SendGate, StorageGuard } from "../streams/index.ts";
import { startEmbeddedNats } from "./embedded-nats.ts";
import { startPush, type PushNode } from "./push.ts";
import { readinessOf } from "./readiness.ts";
import { tokenSettings } from "./tokens.ts";
import { awaitTopology, natterStreams } from "./topology.ts";
import { startWorkerNode } from "./workers-node.ts";
import { startWorkersThread } from "./workers-thread.ts";

export interface NatterNode {
  /** http://host:port of the edge (WebSocket at /ws); empty without an edge. */
  url: string;
  natsUrl: string;
  /** http://host:port of the workers' metrics and health endpoints; empty without workers. */
  workersUrl: string;
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  /** Messages and the image index. */
  store: Store;
  blobs: BlobStore;
  /** Uploads, attaching and fetching images (absent without an edge). */
  images: ImageService | undefined;
  /** Absent when edge.enabled is false (a workers-only process). */
  edge: Edge | undefined;
  tokens: TokenSettings;
  /** Graceful stop: sockets told to go away, workers finish in-flight work, NATS drained. */
  close(): Promise<void>;
  /**
   * For a forced exit (close() took too long, or a second Ctrl-C): asks the embedded nats-server
   * (its own process group, so it outlives natter) to shut down too. Nothing with nats.servers.
   */
  abandon(): void;
}

export interface StartOptions {
  /** Called when a part of the node fails for good after start (the workers' thread died). */
  onFailure?: ((err: Error) => void) | undefined;
}

export async function startNatter(cfg: Config, log: Logger, opts: StartOptions = {}): Promise<NatterNode> {
  let embeddedPid: number | undefined;
  const abandon = () => {
    try {
      if (embeddedPid !== undefined) process.kill(embeddedPid, "SIGTERM");
    } catch {
      // already gone
    }
  };
  const cleanups: (() => Promise<unknown>)[] = [];
  const unwind = async () => {
    for (const c of cleanups.reverse()) await c().catch((err: unknown) => log.warn({ err }, "cleanup failed"));
  };
  try {
    let servers = cfg.nats.servers;
    let nats = cfg.nats;
    if (!servers) {
      const embedded = await startEmbeddedNats(cfg, log);
      cleanups.push(() => embedded.server.stop());
      embeddedPid = embedded.server.pid;
      servers = [embedded.server.clientUrl];
      nats = { ...cfg.nats, servers, credentials: embedded.credentials };
    }
    // The workers start first: they create the topology (the edge's identity may not).
    let workersUrl = "";
    if (cfg.workers.enabled) {
      const workersCfg: Config = { ...cfg, nats };
      const workers =
        cfg.workers.thread && cfg.edge.enabled
          ? await startWorkersThread(workersCfg, log, opts.onFailure ?? ((err) => log.error({ err }, err.message)))
          : await startWorkerNode(workersCfg, log.child({ component: "workers" }));
      cleanups.push(() => workers.close());
      workersUrl = workers.url;
    }

    // This thread's connection: the edge's identity, or the workers' in a process without an edge.
    const role: NatsRole = cfg.edge.enabled ? "edge" : "workers";
    const nc = await connectRole({ nats, servers, role, name: role === "edge" ? "natter-edge" : "natter", log });
    cleanups.push(() => nc.drain());
    const js = jetstream(nc);
    const jsm = await jetstreamManager(nc);
    await awaitTopology(jsm, cfg, log);
    const topology = topologyOf(cfg.streams);

    const store = await openMessageStore(cfg, log);
    cleanups.push(() => store.close());
    const blobs = await openBlobStore(cfg, log);
    cleanups.push(() => blobs.close());

    const conversationIndex = new ConversationIndex(js, jsm);
    // One reply subscription for every hot-path JetStream request of this process.
    const requests = new JetStreamRequests(nc);
    cleanups.push(async () => requests.close());
    const directory = new ConversationDirectory({ js, jsm, requests, topology, quota: { maxPerUser: cfg.edge.maxConversationsPerUser, index: conversationIndex } });
    const presence = new NatsKvPresence({ nc, js, jsm, ttlSec: cfg.presence.ttlSec, markerTtlSec: cfg.presence.markerTtlSec, log: log.child({ component: "presence" }) });

    // Push subscriptions for the edge (push.register); the decisions and sending run with the workers.
    let push: PushNode | undefined;
    if (cfg.push.enabled) {
      push = await startPush(cfg, { nc, js, jsm, presence: undefined, topology, metrics: createMetrics({ defaults: false }), log: log.child({ component: "push" }), workers: false });
      const p = push;
      cleanups.push(() => p.close());
    }
    const tokens = tokenSettings(cfg);
    const readiness = readinessOf(cfg, { nc, jsm, store, blobs, streams: natterStreams(cfg), log });

    let edge: Edge | undefined;
    let images: ImageService | undefined;
    let url = "";
    if (cfg.edge.enabled) {
      const storage = new StorageGuard(jsm, topology, log.child({ component: "storage" }));
      await storage.start();
      cleanups.push(async () => storage.stop());
      // Sends stop before messages could expire unpersisted (streams.refuseSendsAtBacklogPct).
      const gate = new SendGate({ jsm, topology, retentionSec: cfg.streams.conversationMaxAgeSec, refuseAtPct: cfg.streams.refuseSendsAtBacklogPct, log: log.child({ component: "send-gate" }) });
      gate.start();
      cleanups.push(() => gate.stop());
      const quota = new QuotaLedger(requests, cfg.quota, log.child({ component: "quota" }));
      cleanups.push(() => quota.close());
      const imageService = new ImageService({ js, jsm, blobs, index: store, directory, config: cfg.images, log: log.child({ component: "images" }) });
      cleanups.push(() => imageService.close());
      images = imageService;
      const e = await createEdge({
        nc,
        directory,
        topology,
        config: cfg.edge,
        tokens,
        revocations: new Revocations({ nc, js, jsm, log: log.child({ component: "auth" }), maxTokenAgeSec: cfg.auth.maxTokenAgeSec }),
        publish: (input) => publishMessage(requests, topology, input, [gate, storage]),
        inbox: {
          bounds: (user) => inboxBounds(jsm, topology, user),
          read: (user, after, until, next) => readInbox({ requests, jsm }, topology, user, after, until, next),
        },
        history: historyReader(store, jsm, topology),
        receipts: new Receipts(js, jsm, topology, conversationIndex),
        devTokens: cfg.auth.devTokens,
        log: log.child({ component: "edge" }),
        readiness,
        presence: cfg.presence.enabled
          ? { devices: new DevicePresence({ store: presence, log: log.child({ component: "presence" }) }), lookup: (users) => presenceOf(presence, users), onlineDevices: (user) => presence.onlineDevices(user) }
          : undefined,
        discovery: { registry: new EdgeRegistry({ js, jsm, ttlSec: cfg.discovery.ttlSec, log: log.child({ component: "discovery" }) }), results: cfg.discovery.results },
        images,
        push: push?.edge,
        quota,
      });
      url = await e.listen();
      cleanups.push(() => e.close());
      edge = e;
    }
    log.info({ url: url || undefined, ws: url ? `${url.replace(/^http/, "ws")}/ws` : undefined, store: cfg.store.kind, workers: workersUrl || false }, "natter is up");

    let closing: Promise<void> | undefined;
    return { url, natsUrl: servers[0]!, workersUrl, nc, js, jsm, store, blobs, images, edge, tokens, close: () => (closing ??= unwind()), abandon };
  } catch (err) {
    await unwind();
    throw err;
  }
}
