// The push request: what the dispatcher queues in PUSH_<n> for one offline recipient of one
// conversation message, with the notification already rendered (push/content.ts).
import { z } from "zod";
import { NotificationSchema } from "./content.ts";

export const PushRequestSchema = z.object({
  v: z.literal(1),
  /** The recipient. */
  user: z.string(),
  conv: z.string(),
  /** The conversation message: its stream and sequence (the message id). */
  stream: z.string(),
  seq: z.number().int().positive(),
  /** When the message was sent (ms since epoch); a push older than `push.maxAgeSec` is dropped. */
  ts: z.number(),
  notification: NotificationSchema,
});
export type PushRequest = z.infer<typeof PushRequestSchema>;
