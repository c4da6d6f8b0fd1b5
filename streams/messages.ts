// The envelopes natter stores in its streams. JSON, versioned, validated when read back.
import { z } from "zod";

/** A message as stored in its conversation stream. Its id is the stream sequence. */
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

/** The copy of a conversation message in a member's inbox: the message plus its id. */
export const InboxEntrySchema = ConversationMessageSchema.extend({ id: z.number().int().positive() });
export type InboxEntry = z.infer<typeof InboxEntrySchema>;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeJson(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

export function decodeJson(data: Uint8Array): unknown {
  return JSON.parse(decoder.decode(data)) as unknown;
}
