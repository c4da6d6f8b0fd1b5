// natter's WebSocket protocol, version 1, as the client sees it (docs/protocol.md is the
// reference; edge/protocol.ts is the server's schema). Types and constants: nothing here runs.

export const PROTOCOL_VERSION = 1;

/** A conversation as the server describes it. */
export interface Conversation {
  id: string;
  kind: "dm" | "group";
  members: string[];
  name?: string | undefined;
  owner?: string | undefined;
}

/**
 * An image a message carries: type and dimensions of the full-size image and of its thumbnail,
 * so it can be laid out before anything is downloaded. Fetch the bytes with `fetchImage(id)`.
 */
export interface ImageRef {
  /** `img_…`: pass it to `fetchImage`, or in `send(…, { images })` (your own uploads only). */
  id: string;
  /** image/jpeg, image/png, image/webp or image/gif. */
  type: string;
  width: number;
  height: number;
  bytes: number;
  thumb: { type: string; width: number; height: number; bytes: number };
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
  /** The images a message carries (absent when none). */
  images?: ImageRef[];
}

export type MembershipAction = "create" | "add" | "remove" | "leave";

/** A member's receipts in a conversation: every event up to `delivered` reached one of their devices, up to `read` was read. */
export interface ReceiptState {
  user: string;
  delivered: number;
  read: number;
}

/** One conversation of the user's list, as the server computes it. */
export interface ConversationSummary extends Conversation {
  /** The newest text message the server still holds in its recent log. */
  last?: { id: number; from: string; text: string; ts: number };
  /** This user's receipts (shared by all of their devices). */
  delivered: number;
  read: number;
  /** Messages from others after `read` (computed by the server). */
  unread: number;
}

/**
 * A user's presence: `online`, `lastSeen` (ms since the epoch, when offline and known: when they
 * stopped being online) and `rev`, which grows with every change of that user's presence (0: never
 * seen). Of two entries about one user, the one with the higher `rev` is the current one.
 */
export interface PresenceEntry {
  user: string;
  online: boolean;
  lastSeen?: number | undefined;
  rev: number;
}

/** A Web Push subscription: `{ kind: "webpush", ...subscription.toJSON() }` of the browser's PushSubscription. */
export interface WebPushTarget {
  kind: "webpush";
  endpoint: string;
  keys: { p256dh: string; auth: string };
}

/** A webhook natter POSTs pushes to, signed with the secret `push.registered` returns once. */
export interface WebhookTarget {
  kind: "webhook";
  url: string;
}

/** An app's FCM registration token (`getToken()` of Firebase Messaging); the server must have push.fcm set. */
export interface FcmTarget {
  kind: "fcm";
  token: string;
}

/** An iOS app's APNs device token, as hex; the server must have push.apns set (its topic is the app's bundle id). */
export interface ApnsTarget {
  kind: "apns";
  token: string;
}

export type PushTarget = WebPushTarget | WebhookTarget | FcmTarget | ApnsTarget;

/** Frames the client sends. Every frame but hello may carry `ref`, echoed on the reply. */
export type ClientFrame =
  | { type: "hello"; v: number; token: string; device: string; cursor?: number }
  | { type: "ping"; ref?: string }
  /** A fresh token for this socket's user, sent when the server says `token.expired` (or before). */
  | { type: "token"; ref?: string; token: string }
  | { type: "dm.open"; ref?: string; peer: string }
  | { type: "send"; ref?: string; conv: string; cid: string; text: string; images?: string[] }
  | { type: "history"; ref?: string; conv: string; before?: number; limit?: number }
  | { type: "group.create"; ref?: string; name: string; members: string[] }
  | { type: "group.add"; ref?: string; conv: string; user: string }
  | { type: "group.remove"; ref?: string; conv: string; user: string }
  | { type: "group.leave"; ref?: string; conv: string }
  | { type: "members"; ref?: string; conv: string }
  | { type: "presence"; ref?: string; users: string[]; conv?: never }
  | { type: "presence"; ref?: string; conv: string; users?: never }
  | ({ type: "push.register"; ref?: string } & PushTarget)
  | { type: "push.remove"; ref?: string; id: string }
  | { type: "receipt"; ref?: string; conv: string; delivered?: number; read?: number }
  | { type: "receipts"; ref?: string; conv: string }
  | { type: "convs"; ref?: string }
  | { type: "typing"; ref?: string; conv: string };

/**
 * Every frame type the SDK sends; a unit test keeps it equal to the types the server accepts
 * (edge/protocol.ts). `satisfies` refuses a type ClientFrame lacks; the check below, one missing.
 */
export const CLIENT_FRAME_TYPES = [
  "hello",
  "ping",
  "dm.open",
  "send",
  "history",
  "group.create",
  "group.add",
  "group.remove",
  "group.leave",
  "members",
  "presence",
  "push.register",
  "push.remove",
  "receipt",
  "receipts",
  "convs",
  "typing",
  "token",
] as const satisfies readonly ClientFrame["type"][];

export type ClientFrameType = (typeof CLIENT_FRAME_TYPES)[number];
// Compiles only when every ClientFrame type is listed above; otherwise the error names the one missing.
type NoneMissing<T extends never> = T;
/** @public a compile-time check, not an API */
export type UnlistedClientFrameType = NoneMissing<Exclude<ClientFrame["type"], ClientFrameType>>;

/** Frames the server sends. A server may add frame types; the client ignores ones it does not know. */
export type ServerFrame =
  | { type: "welcome"; v: number; user: string; device: string; cursor: number; heartbeatMs?: number }
  | { type: "reset"; cursor: number; reason: string }
  | { type: "pong"; ref?: string }
  /** The reply to `token`: the socket runs on the new token until `exp` (Unix seconds). */
  | { type: "token"; ref?: string; user: string; exp: number }
  /** The socket's token expired: a `token` frame must follow within `graceMs`, else the server closes 4401. */
  | { type: "token.expired"; graceMs: number }
  | { type: "conv"; ref?: string; conv: Conversation }
  | { type: "ack"; ref?: string; conv: string; cid: string; id: number; dup: boolean }
  | { type: "msg"; cursor: number; conv: string; id: number; from: string; device: string; cid: string; text: string; ts: number; images?: ImageRef[] }
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
  | {
      type: "receipt";
      /** Set on inbox items; absent on the reply to a `receipt` request. */
      cursor?: number;
      ref?: string;
      conv: string;
      id: number;
      user: string;
      device?: string;
      delivered: number;
      read: number;
      ts?: number;
    }
  | { type: "receipts"; ref?: string; conv: string; receipts: ReceiptState[] }
  | { type: "convs"; ref?: string; convs: ConversationSummary[] }
  | { type: "typing"; ref?: string; conv: string; user: string; ttlMs: number }
  /** Live (no `ref`): a contact's presence changed, one entry; a reply: the users asked about. */
  | { type: "presence"; ref?: string; users: PresenceEntry[] }
  /** `secret` (webhooks only, sent once) signs the webhook's requests. */
  | { type: "push.registered"; ref?: string; id: string; kind: PushTarget["kind"]; secret?: string }
  | { type: "push.removed"; ref?: string; id: string; removed: boolean }
  | { type: "error"; ref?: string; code: string; message: string; temporary: boolean; retryAfterMs?: number };

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
