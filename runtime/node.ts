// One natter node, wired: NATS (embedded or configured) and natter's topology, the store and
// blobs, the domain services, the workers, and the edge. Used by `natter start` and by end-to-end
// tests; signals and exits stay in bin/. Each concern's wiring has its file in runtime/; this one
// only puts them in order and unwinds them in reverse.
import { jetstream, type JetStreamClient, type JetStreamManager, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Config } from "../config/index.ts";
import { createMetrics, type Logger, NatterError } from "../core/index.ts";
import { createEdge, type Edge, type TokenSettings } from "../edge/index.ts";
import { ensureImageBuckets, ImageService, imageStreams } from "../media/index.ts";
import { connectNats, ensureTopology, expectedStreams, JetStreamRequests, topologyOf } from "../nats/index.ts";
import { historyReader, openBlobStore, openMessageStore, type BlobStore, type Store } from "../persistence/index.ts";
import { DevicePresence, EdgeRegistry, ensurePresenceBuckets, NatsKvPresence, presenceOf, presenceStreams } from "../presence/index.ts";
import { ensurePushTopology, pushStreams } from "../push/index.ts";
import { ConversationDirectory, ConversationIndex, inboxBounds, publishMessage, readInbox, Receipts, SendGate } from "../streams/index.ts";
import { startEmbeddedNats } from "./embedded-nats.ts";
import { startPush, type PushNode } from "./push.ts";
import { readinessOf } from "./readiness.ts";
import { tokenSettings } from "./tokens.ts";
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
}

export interface StartOptions {
  /** Called when a part of the node fails for good after start (the workers' thread died). */
  onFailure?: ((err: Error) => void) | undefined;
}

export async function startNatter(cfg: Config, log: Logger, opts: StartOptions = {}): Promise<NatterNode> {
  const cleanups: (() => Promise<unknown>)[] = [];
  const unwind = async () => {
    for (const c of cleanups.reverse()) await c().catch((err: unknown) => log.warn({ err }, "cleanup failed"));
  };
  try {
    let servers = cfg.nats.servers;
    if (!servers) {
      const server = await startEmbeddedNats(cfg, log);
      cleanups.push(() => server.stop());
      servers = [server.clientUrl];
    }
    const nc = await connectNats({
      servers,
      name: "natter",
      ...(cfg.nats.user ? { user: cfg.nats.user, pass: cfg.nats.pass ?? "" } : {}),
      log,
    }).catch((err: unknown) => {
      throw new NatterError("UNAVAILABLE", `cannot connect to NATS at ${servers.join(", ")}: is it running?`, { cause: err });
    });
    cleanups.push(() => nc.drain());
    const js = jetstream(nc);
    const jsm = await jetstreamManager(nc);
    await ensureTopology(jsm, cfg.streams);
    await ensurePresenceBuckets(jsm, cfg.streams, cfg.presence);
    if (cfg.push.enabled) await ensurePushTopology(jsm, cfg.streams, cfg.push);
    await ensureImageBuckets(jsm, cfg.streams);
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
    let workersUrl = "";
    if (cfg.workers.enabled) {
      const workersCfg: Config = { ...cfg, nats: { ...cfg.nats, servers } };
      const workers =
        cfg.workers.thread && cfg.edge.enabled
          ? await startWorkersThread(workersCfg, log, opts.onFailure ?? ((err) => log.error({ err }, err.message)))
          : await startWorkerNode(workersCfg, log.child({ component: "workers" }));
      cleanups.push(() => workers.close());
      workersUrl = workers.url;
    }

    const tokens = tokenSettings(cfg);
    const streams = [...expectedStreams(cfg.streams), ...presenceStreams(), ...imageStreams(), ...(cfg.push.enabled ? pushStreams(cfg.streams) : [])];
    const readiness = readinessOf(cfg, { nc, jsm, store, blobs, streams, log });

    let edge: Edge | undefined;
    let images: ImageService | undefined;
    let url = "";
    if (cfg.edge.enabled) {
      // Sends stop before messages could expire unpersisted (streams.refuseSendsAtBacklogPct).
      const gate = new SendGate({ jsm, topology, retentionSec: cfg.streams.conversationMaxAgeSec, refuseAtPct: cfg.streams.refuseSendsAtBacklogPct, log: log.child({ component: "send-gate" }) });
      gate.start();
      cleanups.push(() => gate.stop());
      images = new ImageService({ js, jsm, blobs, index: store, directory, config: cfg.images, log: log.child({ component: "images" }) });
      const e = await createEdge({
        nc,
        directory,
        topology,
        config: cfg.edge,
        tokens,
        publish: (input) => publishMessage(requests, topology, input, gate),
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
      });
      url = await e.listen();
      cleanups.push(() => e.close());
      edge = e;
    }
    log.info({ url: url || undefined, ws: url ? `${url.replace(/^http/, "ws")}/ws` : undefined, store: cfg.store.kind, workers: workersUrl || false }, "natter is up");

    let closing: Promise<void> | undefined;
    return { url, natsUrl: servers[0]!, workersUrl, nc, js, jsm, store, blobs, images, edge, tokens, close: () => (closing ??= unwind()) };
  } catch (err) {
    await unwind();
    throw err;
  }
}
