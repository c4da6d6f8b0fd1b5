import { describe, expect, it } from "vitest";
import { dmConversationId } from "./conversations.ts";

describe("conversation ids", () => {
  it("gives a pair one 1:1 conversation id whichever side opens it", () => {
    expect(dmConversationId("alice", "bob")).toBe(dmConversationId("bob", "alice"));
    expect(dmConversationId("alice", "bob")).not.toBe(dmConversationId("alice", "carol"));
    expect(dmConversationId("alice", "bob")).toMatch(/^[A-Za-z0-9_-]{1,64}$/);
  });
});
