// The envelopes natter stores in its streams. JSON, versioned, validated when read back.
import { z } from "zod";

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

export const ConversationEventSchema = z.discriminatedUnion("type", [ConversationMessageSchema, MembershipEventSchema]);
export type ConversationEvent = z.infer<typeof ConversationEventSchema>;

/** The copy of a conversation event in a member's inbox: the event plus its id. */
export const InboxEntrySchema = z.discriminatedUnion("type", [
  ConversationMessageSchema.extend({ id: z.number().int().positive() }),
  MembershipEventSchema.extend({ id: z.number().int().positive() }),
]);
export type InboxEntry = z.infer<typeof InboxEntrySchema>;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeJson(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

export function decodeJson(data: Uint8Array): unknown {
  return JSON.parse(decoder.decode(data)) as unknown;
}
