// Wires one natter node: NATS (embedded or configured), streams, store, workers and edge.
// Used by `natter start` and by end-to-end tests; signals and exits stay in bin/.
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { binPath, REPO_ROOT, type Config } from "../config/index.ts";
import { NatterError } from "../core/errors.ts";
import type { Logger } from "../core/logger.ts";
import { createMetrics, scrapedGauge } from "../core/metrics.ts";
import { createEdge, type Edge, type ReadinessCheck, type TokenSettings } from "../edge/index.ts";
import { ensureImageBuckets, ImageService, imageStreams, OrphanSweeper } from "../media/index.ts";
import { openBlobStore, openMessageStore, Persister, type BlobStore, type Store } from "../persistence/index.ts";
import {
  DevicePresence,
  EdgeRegistry,
  ensurePresenceBuckets,
  natsNotifier,
  NatsKvPresence,
  PresenceWorker,
  presenceOf,
  presenceStreams,
} from "../presence/index.ts";
import { ensureTopology, expectedStreams, names, topologyOf } from "../nats/index.ts";
import { ConversationDirectory, ConversationIndex, FanoutWorker, Receipts } from "../streams/index.ts";
import { launchNatsServer, type NatsServerProcess } from "../runtime/nats-server.ts";
import { ensurePushTopology, pushStreams } from "../push/index.ts";
import { historyReader } from "./history.ts";
import { startPush, type PushNode } from "./push.ts";
import { startWorkersHttp } from "./workers-http.ts";

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

/** The token secret: configured, or kept in the data folder so tokens survive restarts. */
export function tokenSettings(cfg: Config): TokenSettings {
  let secret = cfg.auth.jwtSecret;
  if (!secret) {
    const file = path.resolve(cfg.dataDir, "jwt-secret");
    if (existsSync(file)) {
      secret = readFileSync(file, "utf8").trim();
    } else {
      mkdirSync(path.dirname(file), { recursive: true });
      secret = randomBytes(32).toString("base64url");
      writeFileSync(file, `${secret}\n`, { mode: 0o600 });
    }
  }
  return { secret, issuer: cfg.auth.issuer, audience: cfg.auth.audience, ttlSec: cfg.auth.tokenTtlSec };
}

/** A nats-server left running by a natter that was killed (-9) still holds the store: stop it. */
async function stopStaleServer(pidFile: string, log: Logger): Promise<void> {
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, "utf8").trim());
  rmSync(pidFile, { force: true });
  if (!Number.isSafeInteger(pid) || pid <= 0) return;
  let cmdline = "";
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
  } catch {
    return; // not running
  }
  if (!cmdline.includes("nats-server")) return;
  log.warn({ pid }, "stopping the nats-server a previous natter left running");
  process.kill(pid, "SIGTERM");
  const deadline = Date.now() + 10_000;
  while (existsSync(`/proc/${pid}`) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (existsSync(`/proc/${pid}`)) process.kill(pid, "SIGKILL");
}

async function startEmbeddedNats(cfg: Config, log: Logger): Promise<NatsServerProcess> {
  const e = cfg.nats.embedded;
  const binary = e.binary ?? binPath("nats-server");
  if (!existsSync(binary)) {
    throw new NatterError("TOOL_MISSING", `nats-server not found at ${binary}: run \`npm run obtain -- nats-server\` (or set nats.servers to use a running NATS)`);
  }
  const configFile = path.resolve(e.configFile ?? path.join(REPO_ROOT, "nats-server.conf"));
  const dir = path.resolve(cfg.dataDir, "nats");
  mkdirSync(dir, { recursive: true });
  const runDir = path.join(dir, "run");
  await stopStaleServer(path.join(dir, "nats-server.pid"), log);
  const nlog = log.child({ component: "nats-server" });
  const server = await launchNatsServer({
    binary,
    name: "nats-server",
    dir: runDir,
    // nats-server resolves includes relative to the including file.
    configText: `include ${JSON.stringify(path.relative(runDir, configFile))}`,
    args: ["--addr", e.host, "--port", String(e.port), "--http_port", String(e.httpPort), "--store_dir", dir],
    detached: true,
    log: (line) => nlog.debug(line),
  });
  writeFileSync(path.join(dir, "nats-server.pid"), `${server.pid}\n`);
  log.info({ url: server.clientUrl, monitor: server.monitorUrl, storeDir: dir }, "nats-server started");
  return server;
}

export async function startNatter(cfg: Config, log: Logger): Promise<NatterNode> {
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
    const nc = await connect({
      servers,
      name: "natter",
      ...(cfg.nats.user ? { user: cfg.nats.user, pass: cfg.nats.pass ?? "" } : {}),
      maxReconnectAttempts: -1,
      // A stack trace captured for every request (a timer error and an error context) cost ~8% of
      // the process's CPU in the bench:burst profile; errors still say which operation failed.
      noAsyncTraces: true,
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
    const directory = new ConversationDirectory(js, jsm, topology, { maxPerUser: cfg.edge.maxConversationsPerUser, index: conversationIndex });
    const presence = new NatsKvPresence({ js, jsm, ttlSec: cfg.presence.ttlSec, markerTtlSec: cfg.presence.markerTtlSec, log: log.child({ component: "presence" }) });

    const metrics = createMetrics();
    if (cfg.workers.enabled) {
      const fanout = new FanoutWorker({ js, nc, directory, index: conversationIndex, topology, metrics, log: log.child({ component: "fanout" }) });
      await fanout.start();
      cleanups.push(() => fanout.stop());
      const persister = new Persister({
        js,
        store,
        topology,
        metrics,
        log: log.child({ component: "persister" }),
        maxWrites: cfg.workers.persistConcurrency,
        pullAhead: cfg.streams.persisterMaxAckPending,
      });
      await persister.start();
      cleanups.push(() => persister.stop());
      scrapedGauge(metrics, "natter_consumer_pending_messages", "Messages of a worker's consumer: unprocessed (not yet delivered) and ack_pending (delivered, not acked)", ["stream", "consumer", "state"], async () => {
        const out: { labels: Record<string, string>; value: number }[] = [];
        for (let shard = 0; shard < cfg.streams.conversationShards; shard++) {
          const stream = names.conversationStream(shard);
          for (const consumer of [names.fanoutConsumer, names.persisterConsumer, ...(cfg.push.enabled ? [names.pushConsumer] : [])]) {
            const info = await jsm.consumers.info(stream, consumer);
            out.push({ labels: { stream, consumer, state: "unprocessed" }, value: info.num_pending });
            out.push({ labels: { stream, consumer, state: "ack_pending" }, value: info.num_ack_pending });
          }
        }
        for (let shard = 0; cfg.push.enabled && shard < cfg.streams.inboxShards; shard++) {
          const stream = names.pushStream(shard);
          const consumer = names.pushSenderConsumer;
          const info = await jsm.consumers.info(stream, consumer);
          out.push({ labels: { stream, consumer, state: "unprocessed" }, value: info.num_pending });
          out.push({ labels: { stream, consumer, state: "ack_pending" }, value: info.num_ack_pending });
        }
        return out;
      });
    }

    if (cfg.workers.enabled) {
      const sweeper = new OrphanSweeper({ js, blobs, index: store, log: log.child({ component: "images" }) });
      await sweeper.start();
      cleanups.push(() => sweeper.stop());
    }

    if (cfg.workers.enabled && cfg.presence.enabled) {
      const presenceWorker = new PresenceWorker({
        store: presence,
        contactsOf: (user) => directory.contactsOf(user),
        notify: natsNotifier(nc, topology),
        log: log.child({ component: "presence" }),
      });
      await presenceWorker.start();
      cleanups.push(() => presenceWorker.stop());
    }

    // Push notifications to recipients with no online device (the dispatcher and sender run with the workers).
    let push: PushNode | undefined;
    if (cfg.push.enabled) {
      const started = await startPush(cfg, {
        js,
        jsm,
        directory,
        presence: cfg.presence.enabled ? presence : undefined,
        topology,
        metrics,
        log: log.child({ component: "push" }),
        workers: cfg.workers.enabled,
      });
      cleanups.push(() => started.close());
      push = started;
    }

    const tokens = tokenSettings(cfg);
    const streamsNeeded = [...expectedStreams(cfg.streams), ...presenceStreams(), ...imageStreams(), ...(cfg.push.enabled ? pushStreams(cfg.streams) : [])];
    const readiness = async (): Promise<Record<string, ReadinessCheck>> => {
      const checks: Record<string, ReadinessCheck> = {};
      checks.nats = nc.isClosed() ? { ok: false, detail: "connection closed" } : { ok: true, detail: nc.getServer() };
      try {
        const present = new Set<string>();
        for await (const name of jsm.streams.names()) present.add(name);
        const missing = streamsNeeded.filter((s) => !present.has(s));
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

    let workersUrl = "";
    if (cfg.workers.enabled) {
      const http = await startWorkersHttp(cfg.workers.httpHost, cfg.workers.httpPort, metrics, readiness);
      cleanups.push(() => http.close());
      workersUrl = http.url;
    }

    let edge: Edge | undefined;
    let images: ImageService | undefined;
    let url = "";
    if (cfg.edge.enabled) {
      images = new ImageService({ js, jsm, blobs, index: store, directory, config: cfg.images, log: log.child({ component: "images" }) });
      const e = await createEdge({
        nc,
        js,
        jsm,
        directory,
        topology,
        config: cfg.edge,
        tokens,
        history: historyReader(store, jsm, topology),
        receipts: new Receipts(js, jsm, topology, conversationIndex),
        devTokens: cfg.auth.devTokens,
        log: log.child({ component: "edge" }),
        readiness,
        presence: cfg.presence.enabled
          ? {
              devices: new DevicePresence({ store: presence, log: log.child({ component: "presence" }) }),
              lookup: (users) => presenceOf(presence, users),
            }
          : undefined,
        discovery: {
          registry: new EdgeRegistry({ js, jsm, ttlSec: cfg.discovery.ttlSec, log: log.child({ component: "discovery" }) }),
          results: cfg.discovery.results,
        },
        images,
        push: push?.edge,
      });
      url = await e.listen();
      cleanups.push(() => e.close());
      edge = e;
    }
    log.info({ url: url || undefined, ws: url ? `${url.replace(/^http/, "ws")}/ws` : undefined, store: cfg.store.kind, workers: workersUrl || false }, "natter is up");

    let closing: Promise<void> | undefined;
    return {
      url,
      natsUrl: servers[0]!,
      workersUrl,
      nc,
      js,
      jsm,
      store,
      blobs,
      images,
      edge,
      tokens,
      close: () => (closing ??= unwind()),
    };
  } catch (err) {
    await unwind();
    throw err;
  }
}
