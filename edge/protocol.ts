// The WebSocket protocol, version 1 (docs/protocol.md). Frames are JSON objects with a `type`.
// Client frames are validated here; ids are checked before they can reach a subject.
import { z } from "zod";
import { ID_PATTERN } from "../core/ids.ts";
import type { ImageRef } from "../streams/index.ts";

export const PROTOCOL_VERSION = 1;

const id = z.string().regex(ID_PATTERN, "must be 1-64 characters of A-Z a-z 0-9 _ -");
/** Client correlation id, echoed on the reply. */
const ref = z.string().max(64).optional();

export const HelloFrame = z.strictObject({
  type: z.literal("hello"),
  v: z.number().int(),
  token: z.string().max(4096),
  device: id,
  /** Inbox sequence of the last item this device received; omit on a device's first connect. */
  cursor: z.number().int().min(0).optional(),
});
export type HelloFrame = z.infer<typeof HelloFrame>;

export const ClientFrame = z.discriminatedUnion("type", [
  z.strictObject({ type: z.literal("ping"), ref }),
  z.strictObject({ type: z.literal("dm.open"), ref, peer: id }),
  // Push subscriptions (docs/protocol.md#push-notifications); targets are checked on the server.
  z.discriminatedUnion("kind", [
    z.strictObject({
      type: z.literal("push.register"),
      ref,
      kind: z.literal("webpush"),
      /** The browser's PushSubscription: `{ kind: "webpush", ...subscription.toJSON() }`. */
      endpoint: z.string().min(1).max(8192),
      keys: z.strictObject({ p256dh: z.string().max(256), auth: z.string().max(256) }),
      expirationTime: z.number().nullable().optional(),
    }),
    z.strictObject({ type: z.literal("push.register"), ref, kind: z.literal("webhook"), url: z.string().min(1).max(8192) }),
  ]),
  z.strictObject({ type: z.literal("push.remove"), ref, id }),
  z.strictObject({
    type: z.literal("send"),
    ref,
    conv: id,
    cid: id,
    /** May be empty when the message carries images. */
    text: z.string().default(""),
    /** Ids of the sender's own uploads (POST /images), at most images.maxPerMessage (TOO_MANY_IMAGES). */
    images: z.array(z.string().max(64)).max(100).optional(),
  }),
  z.strictObject({
    type: z.literal("group.create"),
    ref,
    name: z.string().min(1).max(100),
    /** Initial members besides the creator (at most 99 others). */
    members: z.array(id).max(200).default([]),
  }),
  z.strictObject({ type: z.literal("group.add"), ref, conv: id, user: id }),
  z.strictObject({ type: z.literal("group.remove"), ref, conv: id, user: id }),
  z.strictObject({ type: z.literal("group.leave"), ref, conv: id }),
  z.strictObject({ type: z.literal("members"), ref, conv: id }),
  z.strictObject({
    type: z.literal("presence"),
    ref,
    /** Users to ask about; only contacts are answered. */
    users: z.array(id).min(1).max(100).optional(),
    /** Or: every other member of this conversation (members only). */
    conv: id.optional(),
  }),
  z.strictObject({
    type: z.literal("receipt"),
    ref,
    conv: id,
    /** Every event up to this id reached one of your devices. */
    delivered: z.number().int().positive().optional(),
    /** Every event up to this id was read on one of your devices (implies delivered). */
    read: z.number().int().positive().optional(),
  }),
  z.strictObject({ type: z.literal("receipts"), ref, conv: id }),
  z.strictObject({ type: z.literal("convs"), ref }),
  z.strictObject({ type: z.literal("typing"), ref, conv: id }),
  z.strictObject({
    type: z.literal("history"),
    ref,
    conv: id,
    /** Only messages with smaller ids; omit for the newest. */
    before: z.number().int().positive().optional(),
    limit: z.number().int().min(1).max(100).default(50),
  }),
]);
export type ClientFrame = z.infer<typeof ClientFrame>;
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
] as const;

/** A device may send one `typing` per conversation this often; recipients show it for TYPING_TTL_MS. */
export const TYPING_INTERVAL_MS = 2000;
export const TYPING_TTL_MS = 5000;

/** A conversation as clients see it. */
export interface ConvView {
  id: string;
  kind: "dm" | "group";
  members: string[];
  name?: string | undefined;
  owner?: string | undefined;
}

/** Frames the server sends. */
export type ServerFrame =
  | { type: "welcome"; v: number; user: string; device: string; cursor: number; heartbeatMs?: number | undefined }
  | { type: "reset"; cursor: number; reason: string }
  | { type: "pong"; ref?: string | undefined }
  | { type: "conv"; ref?: string | undefined; conv: ConvView }
  | { type: "ack"; ref?: string | undefined; conv: string; cid: string; id: number; dup: boolean }
  | { type: "msg"; cursor: number; conv: string; id: number; from: string; device: string; cid: string; text: string; ts: number; images?: ImageRef[] | undefined }
  | {
      type: "members";
      cursor: number;
      conv: string;
      id: number;
      action: "create" | "add" | "remove" | "leave";
      user?: string | undefined;
      by: string;
      members: string[];
      name?: string | undefined;
      owner?: string | undefined;
      ts: number;
    }
  | {
      type: "receipt";
      /** Set on inbox items (store it as for `msg`); absent on the reply to a `receipt` frame. */
      cursor?: number | undefined;
      ref?: string | undefined;
      conv: string;
      /** The receipt event's own id (0 in a reply whose state is older than the stream's retention). */
      id: number;
      user: string;
      device?: string | undefined;
      delivered: number;
      read: number;
      ts?: number | undefined;
    }
  | { type: "receipts"; ref?: string | undefined; conv: string; receipts: { user: string; delivered: number; read: number }[] }
  | { type: "convs"; ref?: string | undefined; convs: ConvSummaryView[] }
  | { type: "typing"; ref?: string | undefined; conv: string; user: string; ttlMs: number }
  | { type: "history"; ref?: string | undefined; conv: string; messages: HistoryMessage[] }
  | { type: "presence"; ref?: string | undefined; users: PresenceView[] }
  | { type: "push.registered"; ref?: string | undefined; id: string; kind: "webpush" | "webhook"; secret?: string | undefined }
  | { type: "push.removed"; ref?: string | undefined; id: string; removed: boolean }
  | { type: "error"; ref?: string | undefined; code: string; message: string; temporary: boolean };

/** A conversation in the `convs` reply. */
export interface ConvSummaryView extends ConvView {
  last?: { id: number; from: string; text: string; ts: number } | undefined;
  delivered: number;
  read: number;
  unread: number;
}

/** A user's presence as clients see it; `rev` orders the frames about one user (drop an older one). */
export interface PresenceView {
  user: string;
  online: boolean;
  lastSeen?: number | undefined;
  rev: number;
}

/** A message as history returns it (newest first). */
export interface HistoryMessage {
  conv: string;
  /** "members": a membership change; `text` holds its JSON ({action, user, members, name, owner}). */
  kind: "msg" | "members";
  id: number;
  from: string;
  device: string;
  cid: string;
  text: string;
  ts: number;
  /** The images a message carries (absent when none). */
  images?: ImageRef[] | undefined;
}

/** Where the edge reads history from (the store; the edge never sees which one). */
export type HistoryReader = (conv: string, query: { before?: number | undefined; limit: number }) => Promise<HistoryMessage[]>;
