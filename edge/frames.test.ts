import { describe, expect, it } from "vitest";
import { encodeJson } from "../nats/index.ts";
import { InboxEntrySchema, type InboxEntry } from "../streams/index.ts";
import { inboxFrame, liveFrame } from "./frames.ts";

// The fan-out writes `{ ...validatedEvent, id }`; the edge splices a text message's frame.
function entryAsFanoutWritesIt(e: InboxEntry): Uint8Array {
  return encodeJson(InboxEntrySchema.parse(e));
}

describe("live frames", () => {
  it.each([
    { v: 1, type: "msg", conv: "dm_x", from: "alice", device: "d1", cid: "c-1", text: 'héllo "quoted" \\ 👋\n', ts: 1_700_000_000_000, id: 42 },
    {
      v: 1,
      type: "msg",
      conv: "g_y",
      from: "bob",
      device: "d2",
      cid: "c-2",
      text: "",
      ts: 1,
      id: 7,
      images: [{ id: "img_a", type: "image/png", width: 10, height: 20, bytes: 300, thumb: { type: "image/webp", width: 5, height: 10, bytes: 40 } }],
    },
  ] as InboxEntry[])("splices a text message to exactly the frame the parsing path builds (%#)", (entry) => {
    const data = entryAsFanoutWritesIt(entry);
    expect(JSON.parse(liveFrame(99, data).toString())).toEqual(JSON.parse(JSON.stringify(inboxFrame(99, InboxEntrySchema.parse(entry)))));
  });

  it("takes the parsing path for other entries", () => {
    const members = { v: 1, type: "members", conv: "g_y", kind: "group", action: "add", user: "c", by: "a", members: ["a", "c"], ts: 5, id: 8 } as InboxEntry;
    expect(JSON.parse(liveFrame(100, encodeJson(members)).toString())).toMatchObject({ type: "members", cursor: 100, id: 8, action: "add" });
  });
});
