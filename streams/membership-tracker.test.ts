import { describe, expect, it } from "vitest";
import type { Conversation, ConversationDirectory } from "./conversations.ts";
import { MembershipTracker } from "./membership-tracker.ts";

/** A directory whose history is a list of (seq, members) changes; counts its lookups. */
function directory(changes: [number, string[]][]) {
  const asked: number[] = [];
  const dir = {
    async getAsOf(id: string, seq: number): Promise<Conversation | null> {
      asked.push(seq);
      const last = changes.filter(([s]) => s <= seq).at(-1);
      return last ? { id, kind: "group", members: last[1], revision: last[0] } : null;
    },
  } as unknown as ConversationDirectory;
  return { dir, asked };
}

describe("MembershipTracker", () => {
  it("asks the stream once, then follows membership events in order", async () => {
    const { dir, asked } = directory([[1, ["a", "b"]]]);
    const t = new MembershipTracker(dir);
    t.observe(1);
    expect(await t.membersAt("g", 5, false)).toEqual(["a", "b"]);
    t.observe(2);
    expect(await t.membersAt("g", 6, false)).toEqual(["a", "b"]);
    expect(asked).toEqual([5]);
    t.observe(3);
    t.remember("g", ["a"], 7); // b removed at 7
    t.observe(4);
    expect(await t.membersAt("g", 8, false)).toEqual(["a"]);
    expect(asked).toEqual([5]);
  });

  it("never uses a newer membership for an older event, and redeliveries read the stream", async () => {
    const { dir, asked } = directory([[1, ["a", "b"]], [7, ["a"]]]);
    const t = new MembershipTracker(dir);
    t.observe(1);
    t.remember("g", ["a"], 7);
    expect(await t.membersAt("g", 6, false)).toEqual(["a", "b"]); // cache is newer than 6: ask
    expect(await t.membersAt("g", 9, true)).toEqual(["a"]); // exact: ask
    expect(asked).toEqual([6, 9]);
  });

  it("forgets everything when a delivery was skipped (another process took it)", async () => {
    const { dir, asked } = directory([[1, ["a", "b"]]]);
    const t = new MembershipTracker(dir);
    t.observe(1);
    t.remember("g", ["a", "b"], 1);
    t.observe(3); // 2 went elsewhere: it may have been a membership change
    expect(await t.membersAt("g", 10, false)).toEqual(["a", "b"]);
    expect(asked).toEqual([10]);
  });
});
