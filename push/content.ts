// What a notification says. It is rendered once, when the push is queued for a recipient that
// was a member of the conversation at the message (push/dispatcher.ts), and only from that
// message: nothing else of the conversation goes into it.
//   preview: the sender, the conversation and the start of the text (`push.previewChars`)
//   generic: "New message", with no sender, text or conversation id (a 1:1 conversation's id
//            would tell who it is with)
import { z } from "zod";
import { NatterError } from "../core/index.ts";

export type PushContent = "preview" | "generic";

export const NotificationSchema = z.object({
  type: z.literal("msg"),
  title: z.string(),
  body: z.string(),
  /** preview only: the conversation, the message id and its sender. */
  conv: z.string().optional(),
  id: z.number().int().positive().optional(),
  from: z.string().optional(),
  /** When the message was sent (ms since epoch). */
  ts: z.number(),
});
export type Notification = z.infer<typeof NotificationSchema>;

export interface NotifiedMessage {
  conv: string;
  id: number;
  from: string;
  text: string;
  ts: number;
  /** Images the message carries. */
  images?: number | undefined;
}

export const GENERIC_TITLE = "New message";
export const GENERIC_BODY = "You have a new message";

/** The first `max` characters (code points, so no emoji is cut in half), with "…" when cut. */
export function truncate(text: string, max: number): string {
  const chars = [...text.replace(/\s+/g, " ").trim()];
  return chars.length <= max ? chars.join("") : `${chars.slice(0, Math.max(0, max - 1)).join("")}…`;
}

export function renderNotification(m: NotifiedMessage, content: PushContent, previewChars: number): Notification {
  switch (content) {
    case "generic":
      return { type: "msg", title: GENERIC_TITLE, body: GENERIC_BODY, ts: m.ts };
    case "preview": {
      const images = m.images ?? 0;
      const text = truncate(m.text, previewChars);
      const body = text !== "" ? text : images > 1 ? `${images} images` : images === 1 ? "An image" : GENERIC_BODY;
      return { type: "msg", title: m.from, body, conv: m.conv, id: m.id, from: m.from, ts: m.ts };
    }
    default: {
      const never: never = content;
      throw new NatterError("CONFIG_INVALID", `unknown push content ${String(never)}`);
    }
  }
}
