// The edge: HTTP (health, readiness, dev tokens, the web chat page) and the WebSocket endpoint.
import { readFileSync } from "node:fs";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import websocket from "@fastify/websocket";
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from "fastify";
import type { EdgeConfig } from "../config/index.ts";
import { CLOSE, NatterError, asNatterError } from "../core/errors.ts";
import type { Logger } from "../core/logger.ts";
import type { ConversationDirectory, Topology } from "../streams/index.ts";
import { mintToken, type TokenSettings } from "./auth.ts";
import { UserFeeds } from "./feeds.ts";
import type { HistoryReader } from "./protocol.ts";
import { DeviceSession } from "./session.ts";

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
  /** Serve POST /dev/token. */
  devTokens: boolean;
  log: Logger;
  readiness: Readiness;
}

export interface Edge {
  app: FastifyInstance;
  /** Starts listening; resolves to the base URL (http://host:port). */
  listen(): Promise<string>;
  /** Closes every socket with "going away" (clients resume elsewhere) and stops the server. */
  close(): Promise<void>;
  connections(): number;
}

const PAGE = new URL("./public/index.html", import.meta.url);

export async function createEdge(deps: EdgeDeps): Promise<Edge> {
  const { config, log } = deps;
  const feeds = new UserFeeds(deps.nc, deps.topology, log);
  const sessions = new Set<DeviceSession>();
  const app = Fastify({ loggerInstance: log.child({}, { level: "warn" }) as FastifyBaseLogger, bodyLimit: 16 * 1024 });

  app.setErrorHandler((err, _req, reply) => {
    const e = err instanceof NatterError ? err : (err as { validation?: unknown }).validation ? new NatterError("BAD_FRAME", (err as Error).message) : asNatterError(err);
    if (e.status >= 500) log.error({ err: e.cause ?? e }, e.message);
    void reply.code(e.status).send({ error: e.toClient() });
  });

  // Frames above maxPayloadBytes get a typed error and the socket survives; ws closes (1009) only
  // past this hard limit.
  const hardMax = Math.min(config.maxPayloadBytes * 4, 4 * 1024 * 1024);
  await app.register(websocket, { options: { maxPayload: hardMax, perMessageDeflate: false } });

  app.get("/healthz", async () => ({ status: "ok" }));

  app.get("/readyz", async (_req, reply) => {
    const checks = await deps.readiness();
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

  const allowed = new Set(config.allowedOrigins);
  app.get("/ws", { websocket: true }, (socket, req) => {
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
      log,
    });
    sessions.add(session);
    socket.on("close", () => sessions.delete(session));
  });

  return {
    app,
    async listen() {
      return app.listen({ host: config.host, port: config.port });
    },
    async close() {
      for (const s of sessions) s.close("GOING_AWAY");
      await app.close();
    },
    connections: () => sessions.size,
  };
}
