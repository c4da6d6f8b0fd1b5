// natter's WebSocket protocol, version 1, as the client sees it (docs/protocol.md is the
// reference; edge/protocol.ts is the server's schema). Only types: nothing here runs.

export const PROTOCOL_VERSION = 1;

/** A conversation as the server describes it. */
export interface Conversation {
  id: string;
  kind: "dm" | "group";
  members: string[];
  name?: string | undefined;
  owner?: string | undefined;
}

/** One stored item of a conversation, as `history` returns it (newest first). */
export interface HistoryItem {
  conv: string;
  /** `members`: a membership change; `text` holds its JSON ({action, user, members, name, owner}). */
  kind: "msg" | "members";
  id: number;
  from: string;
  device: string;
  cid: string;
  text: string;
  ts: number;
}

export type MembershipAction = "create" | "add" | "remove" | "leave";

/** Frames the client sends. Every frame but hello may carry `ref`, echoed on the reply. */
export type ClientFrame =
  | { type: "hello"; v: number; token: string; device: string; cursor?: number }
  | { type: "ping"; ref?: string }
  | { type: "dm.open"; ref?: string; peer: string }
  | { type: "send"; ref?: string; conv: string; cid: string; text: string }
  | { type: "history"; ref?: string; conv: string; before?: number; limit?: number }
  | { type: "group.create"; ref?: string; name: string; members: string[] }
  | { type: "group.add"; ref?: string; conv: string; user: string }
  | { type: "group.remove"; ref?: string; conv: string; user: string }
  | { type: "group.leave"; ref?: string; conv: string }
  | { type: "members"; ref?: string; conv: string };

/** Frames the server sends. A server may add frame types; the client ignores ones it does not know. */
export type ServerFrame =
  | { type: "welcome"; v: number; user: string; device: string; cursor: number; heartbeatMs?: number }
  | { type: "reset"; cursor: number; reason: string }
  | { type: "pong"; ref?: string }
  | { type: "conv"; ref?: string; conv: Conversation }
  | { type: "ack"; ref?: string; conv: string; cid: string; id: number; dup: boolean }
  | { type: "msg"; cursor: number; conv: string; id: number; from: string; device: string; cid: string; text: string; ts: number }
  | {
      type: "members";
      cursor: number;
      conv: string;
      id: number;
      action: MembershipAction;
      user?: string;
      by: string;
      members: string[];
      name?: string;
      owner?: string;
      ts: number;
    }
  | { type: "history"; ref?: string; conv: string; messages: HistoryItem[] }
  | { type: "error"; ref?: string; code: string; message: string; temporary: boolean };

/** WebSocket close codes the server uses (docs/protocol.md, "Close codes"). */
export const CLOSE_CODES = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  ABNORMAL: 1006,
  TOO_BIG: 1009,
  BAD_HANDSHAKE: 4400,
  UNAUTHORIZED: 4401,
  FORBIDDEN_ORIGIN: 4403,
  HELLO_TIMEOUT: 4408,
  SLOW_CONSUMER: 4409,
  UNSUPPORTED_VERSION: 4426,
  RATE_LIMITED: 4429,
  UNAVAILABLE: 4503,
} as const;
