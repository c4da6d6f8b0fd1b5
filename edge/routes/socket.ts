// GET /ws: the WebSocket endpoint. Refuses while draining (1001), origins outside the allowlist
// — with an empty edge.allowedOrigins, any origin but the edge's own host — (4403), and sockets
// past the edge's caps (an error frame with `retryAfterMs`, then 4503: admission.ts); every other
// socket becomes a DeviceSession (session.ts).
import websocket from "@fastify/websocket";
import type { FastifyPluginAsync } from "fastify";
import { CLOSE, type Logger, type MistakeLog, NatterError } from "../../core/index.ts";
import type { EdgeAdmission } from "../admission.ts";
import { DeviceSession } from "../session.ts";
import type { SessionServices } from "../services.ts";

export interface SocketRoutesDeps {
  services: SessionServices;
  /** The open sessions (the edge counts and closes them). */
  sessions: Set<DeviceSession>;
  admission: EdgeAdmission;
  draining: () => boolean;
  mistakes: MistakeLog;
  log: Logger;
}

export const socketRoutes: FastifyPluginAsync<SocketRoutesDeps> = async (app, deps) => {
  const { services, sessions, admission, mistakes, log } = deps;
  const config = services.edge;
  // Frames above maxPayloadBytes get a typed error and the socket survives; ws closes (1009) only
  // past this hard limit.
  const hardMax = Math.min(config.maxPayloadBytes * 4, 4 * 1024 * 1024);
  await app.register(websocket, {
    options: { maxPayload: hardMax, perMessageDeflate: false },
    // ws has already answered a frame it refuses (1009 past maxPayload, 1007 for invalid UTF-8,
    // 1002 for a protocol violation) with a close frame and reads on until the client's close:
    // terminating here (the plugin's default) reset the connection, and the close frame was lost
    // whenever the client had sent more behind it. Such a frame is the client's mistake: counted,
    // not logged one by one.
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

  const allowed = new Set(config.allowedOrigins);
  app.get("/ws", { websocket: true }, (socket, req) => {
    if (deps.draining()) {
      socket.close(CLOSE.GOING_AWAY.code, CLOSE.GOING_AWAY.reason);
      return;
    }
    const origin = req.headers.origin;
    if (origin !== undefined && !(allowed.size > 0 ? allowed.has(origin) : sameHost(origin, req.headers.host))) {
      socket.close(CLOSE.FORBIDDEN_ORIGIN.code, CLOSE.FORBIDDEN_ORIGIN.reason);
      return;
    }
    const address = req.socket.remoteAddress ?? "";
    const refused = admission.open(address);
    if (refused) {
      socket.send(JSON.stringify({ type: "error", ...new NatterError("UNAVAILABLE", refused.message, { retryAfterMs: refused.retryAfterMs }).toClient() }));
      socket.close(CLOSE.UNAVAILABLE.code, CLOSE.UNAVAILABLE.reason);
      return;
    }
    const session = new DeviceSession(socket, services, () => admission.helloDone(address));
    sessions.add(session);
    socket.on("close", () => {
      sessions.delete(session);
      admission.closed();
    });
  });
};

/**
 * Whether a browser's Origin names the host the request was sent to (the Host header): the same
 * host name and port, a missing port being the default of the origin's scheme. `null` origins
 * (sandboxed frames, files) and unreadable ones are not.
 */
function sameHost(origin: string, host: string | undefined): boolean {
  if (host === undefined) return false;
  let o: URL;
  let h: URL;
  try {
    o = new URL(origin);
    h = new URL(`${o.protocol}//${host}`);
  } catch {
    return false;
  }
  if (o.protocol !== "http:" && o.protocol !== "https:") return false;
  return o.hostname === h.hostname && o.port === h.port && h.username === "" && h.pathname === "/";
}
