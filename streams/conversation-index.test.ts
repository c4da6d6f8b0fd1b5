import { describe, expect, it } from "vitest";
import { mergeIndexEntry, type IndexEntry } from "./conversation-index.ts";

const entry = (e: Partial<IndexEntry>): IndexEntry => ({ v: 1, member: false, at: 0, delivered: 0, read: 0, ...e });

describe("the user-convs index merge", () => {
  it("takes membership from the later event and receipts by maximum, read implying delivered", () => {
    expect(mergeIndexEntry(null, { membership: { member: true, at: 5 } })).toEqual(entry({ member: true, at: 5 }));
    expect(mergeIndexEntry(entry({ member: true, at: 9 }), { membership: { member: false, at: 7 } })).toEqual(entry({ member: true, at: 9 }));
    expect(mergeIndexEntry(entry({ member: true, at: 9, read: 12, delivered: 15 }), { receipt: { read: 10, delivered: 20 } })).toEqual(
      entry({ member: true, at: 9, read: 12, delivered: 20 }),
    );
    expect(mergeIndexEntry(null, { receipt: { read: 30, delivered: 0 } })).toEqual(entry({ read: 30, delivered: 30 }));
  });

  it("gives the same entry whatever the order and however often updates are applied", () => {
    const updates = [
      { membership: { member: true, at: 3 } },
      { receipt: { read: 4, delivered: 6 } },
      { membership: { member: false, at: 8 } },
      { membership: { member: true, at: 11 } },
      { receipt: { read: 12, delivered: 12 } },
    ];
    const orders = [updates, [...updates].reverse(), [updates[2]!, updates[0]!, updates[4]!, updates[1]!, updates[3]!, updates[4]!, updates[0]!]];
    const results = orders.map((o) => o.reduce<IndexEntry | null>((e, u) => mergeIndexEntry(e, u), null));
    for (const r of results) expect(r).toEqual(entry({ member: true, at: 11, read: 12, delivered: 12 }));
  });
});
