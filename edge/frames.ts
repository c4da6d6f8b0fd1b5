// The frames a device receives for its inbox items: a text message's frame spliced from the stored
// entry's bytes (live items: one encoding for all devices; replays and gap fills: no parsing), any
// other entry parsed and built.
import { NatterError } from "../core/index.ts";
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

const MSG_ENTRY_PREFIX = Buffer.from('{"v":1,"type":"msg",');

/**
 * The device frame of an inbox item (live, or read back for a replay), as the bytes of a text frame. A text message's frame is
 * its inbox entry without `v` and with the cursor, so it is spliced from the stored bytes instead
 * of decoded, parsed, validated and re-encoded for every connected user (the fan-out wrote the
 * entry from a validated event; edge/frames.test.ts checks both paths give the same frame), and
 * the one buffer is sent to every device. Anything else takes the parsing path.
 */
export function liveFrame(seq: number, data: Uint8Array): Buffer {
  const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (bytes.length > MSG_ENTRY_PREFIX.length && bytes.subarray(0, MSG_ENTRY_PREFIX.length).equals(MSG_ENTRY_PREFIX)) {
    return Buffer.concat([Buffer.from(`{"type":"msg","cursor":${seq},`), bytes.subarray(MSG_ENTRY_PREFIX.length)]);
  }
  return Buffer.from(JSON.stringify(inboxFrame(seq, parseInboxEntry(data))));
}
