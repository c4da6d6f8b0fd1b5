// The envelopes natter stores in its streams. JSON, versioned, validated when read back.
import { z } from "zod";

/**
 * An image a message carries: enough to lay it out before downloading anything. The bytes are
 * fetched by id (GET /images/<id>/full or /thumb), members of a conversation it was sent to only.
 * `type` is a plain string, so a reader never refuses an event for a type added later.
 */
export const ImageRefSchema = z.object({
  id: z.string(),
  /** MIME type of the full-size image (image/jpeg, image/png, image/webp, image/gif). */
  type: z.string(),
  width: z.number().int().positive(),
  height: z.number().int().positive(),
  bytes: z.number().int().nonnegative(),
  thumb: z.object({
    type: z.string(),
    width: z.number().int().positive(),
    height: z.number().int().positive(),
    bytes: z.number().int().nonnegative(),
  }),
});
export type ImageRef = z.infer<typeof ImageRefSchema>;

/** A text message as stored in its conversation stream. Its id is the stream sequence. */
export const ConversationMessageSchema = z.object({
  v: z.literal(1),
  type: z.literal("msg"),
  conv: z.string(),
  from: z.string(),
  device: z.string(),
  /** The client's message id (idempotency key). */
  cid: z.string(),
  text: z.string(),
  /** Server time the edge accepted it, ms since epoch. */
  ts: z.number(),
  /** Images, in the sender's order (absent in messages without any, and in events written before images existed). */
  images: z.array(ImageRefSchema).optional(),
});
export type ConversationMessage = z.infer<typeof ConversationMessageSchema>;

/**
 * A membership change, stored in the conversation's own sequence (subject `…<conv>.members`).
 * It carries the whole member list after the change, so the latest event is the membership.
 */
export const MembershipEventSchema = z.object({
  v: z.literal(1),
  type: z.literal("members"),
  conv: z.string(),
  kind: z.enum(["dm", "group"]),
  action: z.enum(["create", "add", "remove", "leave"]),
  /** Whom the change is about (absent for create). */
  user: z.string().optional(),
  /** Who made the change. */
  by: z.string(),
  members: z.array(z.string()),
  name: z.string().optional(),
  owner: z.string().optional(),
  ts: z.number(),
});
export type MembershipEvent = z.infer<typeof MembershipEventSchema>;

/**
 * A member's receipts, stored in the conversation's own sequence (subject `…<conv>.receipts.<user>`).
 * It carries the user's whole state (shared by all of the user's devices), so the latest event is
 * the state; `read` ≤ `delivered`, and neither ever decreases (compare-and-set, streams/receipts.ts).
 */
export const ReceiptEventSchema = z.object({
  v: z.literal(1),
  type: z.literal("receipt"),
  conv: z.string(),
  user: z.string(),
  /** The device that moved the state. */
  device: z.string(),
  /** Every event of the conversation with an id ≤ this has reached one of the user's devices. */
  delivered: z.number().int().min(0),
  /** Every event with an id ≤ this has been read on one of the user's devices. */
  read: z.number().int().min(0),
  ts: z.number(),
});
export type ReceiptEvent = z.infer<typeof ReceiptEventSchema>;

export const ConversationEventSchema = z.discriminatedUnion("type", [ConversationMessageSchema, MembershipEventSchema, ReceiptEventSchema]);
export type ConversationEvent = z.infer<typeof ConversationEventSchema>;
/** The events history returns (receipts are state, not history: never stored as messages). */
export type HistoryEvent = ConversationMessage | MembershipEvent;

/** The copy of a conversation event in a member's inbox: the event plus its id. */
export const InboxEntrySchema = z.discriminatedUnion("type", [
  ConversationMessageSchema.extend({ id: z.number().int().positive() }),
  MembershipEventSchema.extend({ id: z.number().int().positive() }),
  ReceiptEventSchema.extend({ id: z.number().int().positive() }),
]);
export type InboxEntry = z.infer<typeof InboxEntrySchema>;

/**
 * A conversation event as history returns it and the store keeps it: one row per message or
 * membership change. A membership change keeps its details as JSON in `text`.
 */
export interface ChatRecord {
  conv: string;
  /** "msg": a text message; "members": a membership change (`text` holds its JSON). */
  kind: "msg" | "members";
  /** Message id: the conversation stream sequence. Unique and increasing within `conv`. */
  id: number;
  from: string;
  device: string;
  /** The client's message id. */
  cid: string;
  text: string;
  /** Accept time, ms since epoch. */
  ts: number;
  /** The images a message carries (absent when none). */
  images?: ImageRef[] | undefined;
}

/** The record of event `id` of a conversation: the one mapping the persister and history share. */
export function recordOf(id: number, ev: HistoryEvent): ChatRecord {
  return ev.type === "msg"
    ? { conv: ev.conv, id, kind: "msg", from: ev.from, device: ev.device, cid: ev.cid, text: ev.text, ts: ev.ts, ...(ev.images ? { images: ev.images } : {}) }
    : {
        conv: ev.conv,
        id,
        kind: "members",
        from: ev.by,
        device: "",
        cid: "",
        text: JSON.stringify({ action: ev.action, user: ev.user, members: ev.members, name: ev.name, owner: ev.owner }),
        ts: ev.ts,
      };
}
