// The edge: one fastify server with a plugin per concern (routes/): health and readiness, dev
// tokens, the web chat page, discovery, push keys, images, and the WebSocket endpoint whose
// sockets become device sessions. This file wires them and owns the edge's lifecycle (listen,
// register in discovery, drain, close).
import os from "node:os";
import type { NatsConnection } from "@nats-io/transport-node";
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from "fastify";
import type { EdgeConfig } from "../config/index.ts";
import { asNatterError, type Logger, MistakeLog, NatterError } from "../core/index.ts";
import type { EdgeRegistration, EdgeRegistry } from "../presence/index.ts";
import type { Topology } from "../nats/index.ts";
import type { ConversationDirectory, Receipts } from "../streams/index.ts";
import type { ImageService } from "../media/index.ts";
import type { TokenSettings } from "./auth.ts";
import { EdgeAdmission } from "./admission.ts";
import { UserFeeds } from "./feeds.ts";
import { UserBudgets } from "./limits.ts";
import type { HistoryReader } from "./protocol.ts";
import type { Revocations } from "./revocations.ts";
import { devTokenRoutes } from "./routes/dev-token.ts";
import { discoveryRoutes } from "./routes/discovery.ts";
import { healthRoutes, type Readiness } from "./routes/health.ts";
import { imageRoutes } from "./routes/images.ts";
import { pageRoutes } from "./routes/page.ts";
import { pushRoutes } from "./routes/push.ts";
import { socketRoutes } from "./routes/socket.ts";
import type { DeviceSession } from "./session.ts";
import type { InboxReader, SessionPresence, SessionPush, SessionServices } from "./services.ts";
import { TypingFeeds } from "./typing.ts";

export type { Readiness, ReadinessCheck } from "./routes/health.ts";

export interface EdgeDeps {
  /** Live delivery and typing ride core NATS subscriptions on this connection. */
  nc: NatsConnection;
  directory: ConversationDirectory;
  /** Stores a client's message (resolves after JetStream acked it). */
  publish: SessionServices["publish"];
  /** Reads a user's inbox for catch-up and gap fills. */
  inbox: InboxReader;
  topology: Topology;
  config: EdgeConfig;
  tokens: TokenSettings;
  /** Revoked tokens: checked at hello, on refresh and on HTTP requests; sockets of a user revoked live are closed 4401. */
  revocations: Revocations;
  history: HistoryReader;
  /** Receipts, unread counts and the conversation list (`receipt`, `receipts`, `convs`). */
  receipts: Receipts;
  /** Serve POST /dev/token. */
  devTokens: boolean;
  log: Logger;
  readiness: Readiness;
  /** Presence: heartbeats, contacts' live changes, `presence` queries (absent when disabled). */
  presence?: SessionPresence | undefined;
  /** Service discovery: this edge registers itself in the edges bucket and serves GET /discovery. */
  discovery?: { registry: EdgeRegistry; results: number } | undefined;
  /** Push subscriptions: `push.register`/`push.remove` frames and GET /push/vapid-public-key (absent: push is off). */
  push?: SessionPush | undefined;
  /** Images: POST /images, GET /images/<id>/<variant>, and images in sends (absent: not served). */
  images?: ImageService | undefined;
  /** Each user's daily quota of sends (absent: none). */
  quota?: SessionServices["quota"];
}

export interface Edge {
  app: FastifyInstance;
  /** Starts listening; resolves to the base URL (http://host:port). */
  listen(): Promise<string>;
  /** Closes every socket with "going away" (clients resume elsewhere) and stops the server. */
  close(): Promise<void>;
  /**
   * Stops taking clients: discovery no longer returns this edge, /readyz answers 503 and new
   * sockets are closed with 1001 (go elsewhere). Sockets already open stay. close() drains first.
   */
  drain(): Promise<void>;
  connections(): number;
  /** This edge's id in the edges bucket (known after listen()). */
  readonly id: string;
}

/** `<hostname>-<port>` as an id (A-Z a-z 0-9 _ -, at most 64). */
function defaultEdgeId(port: number): string {
  const host = os.hostname().replace(/[^A-Za-z0-9_-]/g, "_").slice(0, 50) || "edge";
  return `${host}-${port}`;
}

export async function createEdge(deps: EdgeDeps): Promise<Edge> {
  const { config, log } = deps;
  let draining = false;
  let id = config.id ?? "";
  let registration: EdgeRegistration | undefined;
  const sessions = new Set<DeviceSession>();
  const mistakes = new MistakeLog(log);
  const failures = new MistakeLog(log, 10_000, "temporary failures told to clients (they retry)");
  const admission = new EdgeAdmission(config, log);
  const services: SessionServices = {
    directory: deps.directory,
    publish: deps.publish,
    inbox: deps.inbox,
    feeds: new UserFeeds(deps.nc, deps.topology, log, { presence: deps.presence !== undefined }),
    edge: config,
    tokens: deps.tokens,
    revocations: deps.revocations,
    history: deps.history,
    presence: deps.presence,
    push: deps.push,
    images: deps.images,
    receipts: deps.receipts,
    quota: deps.quota,
    typing: new TypingFeeds(deps.nc, deps.topology, log),
    log,
    mistakes,
    failures,
    budgets: new UserBudgets(config),
    hellos: admission,
  };
  const app = Fastify({ loggerInstance: log.child({}, { level: "warn" }) as FastifyBaseLogger, bodyLimit: 16 * 1024 });

  // One error shape for every route: the catalogue's code, status and `temporary`.
  app.setErrorHandler((err, _req, reply) => {
    const e = err instanceof NatterError ? err : (err as { validation?: unknown }).validation ? new NatterError("BAD_FRAME", (err as Error).message) : asNatterError(err);
    if (e.status >= 500) log.error({ err: e.cause ?? e }, e.message);
    void reply.code(e.status).send({ error: e.toClient() });
  });

  const isDraining = () => draining;
  await app.register(healthRoutes, { readiness: deps.readiness, draining: isDraining });
  if (deps.devTokens) await app.register(devTokenRoutes, { tokens: deps.tokens });
  await app.register(pageRoutes);
  if (deps.images) await app.register(imageRoutes, { images: deps.images, tokens: deps.tokens, revocations: deps.revocations });
  await app.register(pushRoutes, { push: deps.push });
  await app.register(discoveryRoutes, { discovery: deps.discovery });
  await app.register(socketRoutes, { services, sessions, admission, draining: isDraining, mistakes, log });
  // A revocation closes the user's sockets on this edge that run on a revoked token.
  const unwatchRevocations = deps.revocations.watch((revoked) => {
    for (const s of sessions) {
      const notBefore = revoked.get(s.user);
      if (notBefore !== undefined) s.revoke(notBefore);
    }
  });

  const edge: Edge = {
    app,
    async listen() {
      const url = await app.listen({ host: config.host, port: config.port, backlog: config.listenBacklog });
      id ||= defaultEdgeId(Number(new URL(url).port));
      if (deps.discovery) {
        registration = await deps.discovery.registry.register({
          id,
          url: config.publicUrl ?? url,
          region: config.region,
          capacity: config.capacity,
          connections: () => sessions.size,
          draining: isDraining,
          healthy: async () => Object.values(await deps.readiness()).every((c) => c.ok),
        });
      }
      return url;
    },
    async drain() {
      if (draining) return;
      draining = true;
      await registration?.refresh().catch((err: unknown) => log.warn({ err }, "could not mark the edge draining"));
    },
    async close() {
      await edge.drain();
      unwatchRevocations();
      for (const s of sessions) s.close("GOING_AWAY");
      admission.close();
      await app.close();
      await registration?.close();
      await deps.presence?.devices.close();
      mistakes.flush();
      failures.flush();
      admission.flush();
    },
    connections: () => sessions.size,
    get id() {
      return id;
    },
  };
  return edge;
}
