// The frames a device receives for its inbox items: built from a stored entry (replay, gap fill),
// or spliced from a live item's bytes (the hot path: one encoding per item for all devices).
import { NatterError } from "../core/errors.ts";
import { parseInboxEntry, type InboxEntry } from "../streams/index.ts";
import type { ServerFrame } from "./protocol.ts";

/** The frame a device receives for an inbox item. */
export function inboxFrame(seq: number, e: InboxEntry): ServerFrame {
  switch (e.type) {
    case "msg":
      return { type: "msg", cursor: seq, conv: e.conv, id: e.id, from: e.from, device: e.device, cid: e.cid, text: e.text, ts: e.ts, images: e.images };
    case "members":
      return { type: "members", cursor: seq, conv: e.conv, id: e.id, action: e.action, user: e.user, by: e.by, members: e.members, name: e.name, owner: e.owner, ts: e.ts };
    case "receipt":
      return { type: "receipt", cursor: seq, conv: e.conv, id: e.id, user: e.user, device: e.device, delivered: e.delivered, read: e.read, ts: e.ts };
    default: {
      const never: never = e;
      throw new NatterError("INTERNAL", `unknown inbox entry ${JSON.stringify(never)}`);
    }
  }
}

const MSG_ENTRY_PREFIX = '{"v":1,"type":"msg",';
const utf8 = new TextDecoder();

/**
 * The device frame of a live inbox item. A text message's frame is its inbox entry without `v`
 * and with the cursor, so it is spliced as text instead of parsed, validated and re-encoded for
 * every connected user (the fan-out wrote the entry from a validated event; edge/frames.test.ts
 * checks both paths give the same frame). Anything else takes the parsing path.
 */
export function liveFrame(seq: number, data: Uint8Array): string {
  const text = utf8.decode(data);
  if (text.startsWith(MSG_ENTRY_PREFIX)) return `{"type":"msg","cursor":${seq},${text.slice(MSG_ENTRY_PREFIX.length)}`;
  return JSON.stringify(inboxFrame(seq, parseInboxEntry(data)));
}
