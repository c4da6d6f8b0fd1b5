// The edge: HTTP (health, readiness, dev tokens, the web chat page) and the WebSocket endpoint.
import { readFileSync } from "node:fs";
import os from "node:os";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import websocket from "@fastify/websocket";
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from "fastify";
import type { EdgeConfig } from "../config/index.ts";
import { CLOSE, NatterError, asNatterError } from "../core/errors.ts";
import { MistakeLog, type Logger } from "../core/logger.ts";
import { rankEdges, type EdgeRegistration, type EdgeRegistry } from "../presence/index.ts";
import type { ConversationDirectory, Receipts, Topology } from "../streams/index.ts";
import type { ImageService } from "../media/index.ts";
import { mintToken, type TokenSettings } from "./auth.ts";
import { registerImageRoutes } from "./images.ts";
import { UserFeeds } from "./feeds.ts";
import type { HistoryReader } from "./protocol.ts";
import { DeviceSession, type SessionPresence, type SessionPush } from "./session.ts";
import { TypingFeeds } from "./typing.ts";

export interface ReadinessCheck {
  ok: boolean;
  detail?: string;
}
export type Readiness = () => Promise<Record<string, ReadinessCheck>>;

export interface EdgeDeps {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  directory: ConversationDirectory;
  topology: Topology;
  config: EdgeConfig;
  tokens: TokenSettings;
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

const PAGE = new URL("./public/index.html", import.meta.url);
/** The client SDK bundled for the page (scripts/build-client.ts writes it; it is committed). */
const SDK_BUNDLE = new URL("./public/natter-client.js", import.meta.url);

export async function createEdge(deps: EdgeDeps): Promise<Edge> {
  const { config, log } = deps;
  const feeds = new UserFeeds(deps.nc, deps.topology, log, { presence: deps.presence !== undefined });
  const typing = new TypingFeeds(deps.nc, deps.topology, log);
  let draining = false;
  let id = config.id ?? "";
  let registration: EdgeRegistration | undefined;
  const sessions = new Set<DeviceSession>();
  const mistakes = new MistakeLog(log);
  const app = Fastify({ loggerInstance: log.child({}, { level: "warn" }) as FastifyBaseLogger, bodyLimit: 16 * 1024 });

  app.setErrorHandler((err, _req, reply) => {
    const e = err instanceof NatterError ? err : (err as { validation?: unknown }).validation ? new NatterError("BAD_FRAME", (err as Error).message) : asNatterError(err);
    if (e.status >= 500) log.error({ err: e.cause ?? e }, e.message);
    void reply.code(e.status).send({ error: e.toClient() });
  });

  // Frames above maxPayloadBytes get a typed error and the socket survives; ws closes (1009) only
  // past this hard limit.
  const hardMax = Math.min(config.maxPayloadBytes * 4, 4 * 1024 * 1024);
  await app.register(websocket, {
    options: { maxPayload: hardMax, perMessageDeflate: false },
    // ws has already answered a frame it refuses (1009 past maxPayload, 1007 for invalid UTF-8)
    // with a close frame and reads on until the client's close: terminating here (the plugin's
    // default) reset the connection, and the close frame was lost whenever the client had sent
    // more behind it. Such a frame is the client's mistake: counted, not logged one by one.
    errorHandler: (err, socket) => {
      const code = (err as { code?: unknown }).code;
      if (typeof code === "string" && code.startsWith("WS_ERR_")) {
        mistakes.note(code);
        return;
      }
      log.error({ err }, "websocket handler failed");
      socket.terminate();
    },
  });

  app.get("/healthz", async () => ({ status: "ok" }));

  app.get("/readyz", async (_req, reply) => {
    const checks = await deps.readiness();
    if (draining) checks.edge = { ok: false, detail: "draining" };
    const ready = Object.values(checks).every((c) => c.ok);
    return reply.code(ready ? 200 : 503).send({ status: ready ? "ready" : "not ready", checks });
  });

  if (deps.devTokens) {
    app.post<{ Body: { user?: unknown } }>("/dev/token", async (req) => {
      const token = await mintToken(deps.tokens, String(req.body?.user ?? ""));
      return { token };
    });
  }

  let page: string | undefined;
  app.get("/", async (_req, reply) => {
    page ??= readFileSync(PAGE, "utf8");
    return reply.type("text/html; charset=utf-8").send(page);
  });
  let sdk: string | undefined;
  app.get("/natter-client.js", async (_req, reply) => {
    sdk ??= readFileSync(SDK_BUNDLE, "utf8");
    return reply.type("text/javascript; charset=utf-8").header("cache-control", "no-cache").send(sdk);
  });

  if (deps.images) await registerImageRoutes(app, { images: deps.images, tokens: deps.tokens });

  app.get("/push/vapid-public-key", async () => {
    if (!deps.push) throw new NatterError("PUSH_DISABLED");
    return { publicKey: deps.push.vapidPublicKey };
  });

  app.get<{ Querystring: { region?: string; limit?: string } }>("/discovery", async (req) => {
    if (!deps.discovery) throw new NatterError("UNAVAILABLE", "discovery is not enabled on this edge");
    const { registry, results } = deps.discovery;
    const asked = Number(req.query.limit ?? results);
    const limit = Number.isSafeInteger(asked) && asked >= 1 ? Math.min(asked, 100) : results;
    const region = typeof req.query.region === "string" && req.query.region !== "" ? req.query.region : undefined;
    const edges = rankEdges(await registry.list(), region, limit);
    if (edges.length === 0) throw new NatterError("UNAVAILABLE", "no edge is taking clients");
    return { edges };
  });

  const allowed = new Set(config.allowedOrigins);
  app.get("/ws", { websocket: true }, (socket, req) => {
    if (draining) {
      socket.close(CLOSE.GOING_AWAY.code, CLOSE.GOING_AWAY.reason);
      return;
    }
    const origin = req.headers.origin;
    if (origin !== undefined && allowed.size > 0 && !allowed.has(origin)) {
      socket.close(CLOSE.FORBIDDEN_ORIGIN.code, CLOSE.FORBIDDEN_ORIGIN.reason);
      return;
    }
    const session = new DeviceSession(socket, {
      js: deps.js,
      jsm: deps.jsm,
      directory: deps.directory,
      feeds,
      topology: deps.topology,
      edge: config,
      tokens: deps.tokens,
      history: deps.history,
      presence: deps.presence,
      push: deps.push,
      images: deps.images,
      receipts: deps.receipts,
      typing,
      log,
      mistakes,
    });
    sessions.add(session);
    socket.on("close", () => sessions.delete(session));
  });

  const edge: Edge = {
    app,
    async listen() {
      const url = await app.listen({ host: config.host, port: config.port });
      id ||= defaultEdgeId(Number(new URL(url).port));
      if (deps.discovery) {
        registration = await deps.discovery.registry.register({
          id,
          url: config.publicUrl ?? url,
          region: config.region,
          capacity: config.capacity,
          connections: () => sessions.size,
          draining: () => draining,
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
      for (const s of sessions) s.close("GOING_AWAY");
      await app.close();
      await registration?.close();
      await deps.presence?.devices.close();
      mistakes.flush();
    },
    connections: () => sessions.size,
    get id() {
      return id;
    },
  };
  return edge;
}
