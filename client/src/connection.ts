// The socket's life: what a close code asks for, and what the rest of the client needs of the
// connection (Wire).
import type { ConnectionState } from "./events.js";
import type { WebSocketLike } from "./options.js";
import { CLOSE_CODES } from "./protocol.js";

/** What to do after the server closed with `code`: reconnect, refresh the token first, or stop. */
export function closeAction(code: number): "reconnect" | "refresh-token" | "stop" {
  switch (code) {
    case CLOSE_CODES.NORMAL:
    case CLOSE_CODES.TOO_BIG:
    case CLOSE_CODES.BAD_HANDSHAKE:
    case CLOSE_CODES.FORBIDDEN_ORIGIN:
    case CLOSE_CODES.UNSUPPORTED_VERSION:
      return "stop";
    case CLOSE_CODES.UNAUTHORIZED:
      return "refresh-token";
    default:
      // 1001 going away, 1006 dropped, 4408, 4409 slow, 4429 (after a pause), 4503, and the rest.
      return "reconnect";
  }
}

/** What requests and sends need of the connection. */
export interface Wire {
  readonly state: ConnectionState;
  /** The socket once the server has welcomed this device on it; undefined before, and when closed. */
  readonly socket: WebSocketLike | undefined;
  /** Connects if nothing did yet: a request or send made before connect() (its own promise reports any failure). */
  autoConnect(): void;
}
