// The WebSocket protocol, version 1 (docs/protocol.md). Frames are JSON objects with a `type`.
// Client frames are validated here; ids are checked before they can reach a subject.
import { z } from "zod";
import { ID_PATTERN, NatterError } from "../core/index.ts";
import type { ChatRecord, ImageRef } from "../streams/index.ts";

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
  /** A fresh token for this socket's user: sent when told `token.expired`, or any time before. */
  z.strictObject({ type: z.literal("token"), ref, token: z.string().max(4096) }),
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
    /** An app's FCM registration token (Android; also iOS and web apps that use Firebase). */
    z.strictObject({ type: z.literal("push.register"), ref, kind: z.literal("fcm"), token: z.string().min(1).max(4096) }),
    /** An iOS app's APNs device token, hex; the topic (bundle id) is the server's. */
    z.strictObject({ type: z.literal("push.register"), ref, kind: z.literal("apns"), token: z.string().min(1).max(200) }),
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
  "token",
] as const;

/** A device may send one `typing` per conversation this often; recipients show it for TYPING_TTL_MS. */
export const TYPING_INTERVAL_MS = 2000;
export const TYPING_TTL_MS = 5000;

/** A conversation as clients see it. */
interface ConvView {
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
  /** The reply to `token`: the socket now runs on the new token, until its `exp` (Unix seconds). */
  | { type: "token"; ref?: string | undefined; user: string; exp: number }
  /** The socket's token expired (or reached auth.maxTokenAgeSec): send a `token` frame within graceMs, else close 4401. */
  | { type: "token.expired"; graceMs: number }
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
  | { type: "push.registered"; ref?: string | undefined; id: string; kind: "webpush" | "webhook" | "fcm" | "apns"; secret?: string | undefined }
  | { type: "push.removed"; ref?: string | undefined; id: string; removed: boolean }
  | { type: "error"; ref?: string | undefined; code: string; message: string; temporary: boolean; retryAfterMs?: number };

/** A conversation in the `convs` reply. */
interface ConvSummaryView extends ConvView {
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

/** A message or membership change as history returns it (newest first). */
type HistoryMessage = ChatRecord;

/** Where the edge reads history from (the store; the edge never sees which one). */
export type HistoryReader = (conv: string, query: { before?: number | undefined; limit: number }) => Promise<HistoryMessage[]>;

/** Nesting deeper than this is refused before parsing: no frame of the protocol goes past 3. */
export const MAX_FRAME_DEPTH = 8;

/**
 * True when `text` nests arrays/objects deeper than `max` (strings skipped). Linear, no
 * recursion: a 60,000-deep frame costs a scan, not a stack overflow somewhere downstream.
 */
export function nestedDeeperThan(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c /* \ */) i++;
      else if (c === 0x22 /* " */) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b /* [ */ || c === 0x7b /* { */) {
      if (++depth > max) return true;
    } else if (c === 0x5d /* ] */ || c === 0x7d /* } */) depth--;
  }
  return false;
}

/** A decoded frame: a JSON object with a string `type`, and its `ref` when that is usable. */
export interface RawFrame {
  type: string;
  ref?: string | undefined;
  obj: Record<string, unknown>;
}

/**
 * Decodes one WebSocket message into an object with a known `type`, or throws the typed error a
 * client gets for it. Messages name what is wrong in natter's words and never echo the input.
 */
export function decodeFrame(data: Buffer, isBinary: boolean, maxBytes: number): RawFrame {
  if (data.length > maxBytes) throw new NatterError("FRAME_TOO_LARGE", `frame exceeds ${maxBytes} bytes`);
  if (isBinary) throw new NatterError("BAD_FRAME", "binary frames are not accepted: send each frame as a JSON text frame");
  const text = data.toString("utf8");
  if (nestedDeeperThan(text, MAX_FRAME_DEPTH)) throw new NatterError("BAD_FRAME", `frame nests deeper than ${MAX_FRAME_DEPTH} levels`);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new NatterError("BAD_JSON");
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new NatterError("BAD_FRAME", "a frame is a JSON object");
  const obj = raw as Record<string, unknown>;
  const ref = typeof obj.ref === "string" && obj.ref.length <= 64 ? obj.ref : undefined;
  if (obj.type === undefined) throw withRef(new NatterError("BAD_FRAME", "type: required"), ref);
  if (typeof obj.type !== "string") throw withRef(new NatterError("BAD_FRAME", "type: must be a string"), ref);
  if (!(CLIENT_FRAME_TYPES as readonly string[]).includes(obj.type)) {
    throw withRef(new NatterError("UNKNOWN_TYPE", "unknown frame type: see the protocol's list of client frames"), ref);
  }
  return { type: obj.type, ref, obj };
}

/** A frame error that knows the ref to echo (the frame was readable enough to have one). */
export class FrameError extends NatterError {
  readonly ref: string | undefined;
  constructor(e: NatterError, ref: string | undefined) {
    super(e.code, e.message);
    this.ref = ref;
  }
}

function withRef(e: NatterError, ref: string | undefined): NatterError {
  return ref === undefined ? e : new FrameError(e, ref);
}

/** Validates a decoded frame against the protocol; BAD_FRAME names the first problem. */
export function validateFrame<T>(schema: z.ZodType<T>, frame: RawFrame, prefix = ""): T {
  const parsed = schema.safeParse(frame.obj);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const message = issue ? describeIssue(issue, frame.obj, prefix) : undefined;
  throw withRef(new NatterError("BAD_FRAME", message), frame.ref);
}

const EXPECTED: Record<string, string> = {
  string: "a string",
  number: "a number",
  int: "an integer",
  boolean: "true or false",
  array: "a list",
  object: "an object",
  null: "null",
};

function valueAt(obj: unknown, path: readonly PropertyKey[]): unknown {
  let v = obj;
  for (const k of path) {
    if (typeof v !== "object" || v === null) return undefined;
    v = (v as Record<PropertyKey, unknown>)[k];
  }
  return v;
}

/**
 * One validation problem in natter's words. Paths are the schema's own field names and list
 * indexes (never a client's key), values are never quoted back, and unknown fields are counted,
 * not named.
 */
function describeIssue(issue: z.core.$ZodIssue, input: unknown, prefix = ""): string {
  const path = issue.path.map((k) => (typeof k === "number" ? `[${k}]` : `.${String(k)}`)).join("").replace(/^\./, "");
  const at = `${prefix}${path || "frame"}`;
  const what = (origin: string | undefined) => (origin === "string" ? " characters" : origin === "array" || origin === "set" ? " items" : "");
  switch (issue.code) {
    case "invalid_type":
      if (valueAt(input, issue.path) === undefined) return `${at}: required`;
      return `${at}: must be ${EXPECTED[issue.expected] ?? issue.expected}`;
    case "too_big":
      return `${at}: at most ${String(issue.maximum)}${what(issue.origin)}`;
    case "too_small":
      if (issue.origin === "number" && issue.minimum === 0 && !issue.inclusive) return `${at}: must be greater than 0`;
      if (issue.origin !== "number" && Number(issue.minimum) === 1) return `${at}: must not be empty`;
      return `${at}: at least ${String(issue.minimum)}${what(issue.origin)}`;
    case "invalid_format":
      // Our own patterns carry a message written for clients (ids: core/ids.ts).
      return issue.format === "regex" && issue.message.startsWith("must be") ? `${at}: ${issue.message}` : `${at}: has the wrong format`;
    case "invalid_union":
      if ("discriminator" in issue && Array.isArray((issue as { options?: unknown }).options)) {
        return `${at}: must be one of ${((issue as { options: unknown[] }).options).map(String).join(", ")}`;
      }
      return `${at}: is not valid`;
    case "invalid_value":
      return `${at}: must be ${issue.values.map((v) => JSON.stringify(v)).join(" or ")}`;
    case "unrecognized_keys":
      return `${at}: ${issue.keys.length === 1 ? "1 unknown field" : `${issue.keys.length} unknown fields`}`;
    default:
      return `${at}: is not valid`;
  }
}
