import { describe, expect, it } from "vitest";
import { NatterError } from "../core/errors.ts";
import {
  contactKey,
  convIdFromSubject,
  conversationSubject,
  deliverySubject,
  fanoutMsgId,
  inboxSubject,
  presenceDeviceKey,
  presenceKeyParts,
  presenceSubject,
  receiptSubject,
  sendMsgId,
  stableHash,
  typingSubject,
  userConversationKey,
  userConversationsFilter,
} from "./subjects.ts";

const t = { conversationShards: 4, inboxShards: 8 };

describe("subjects", () => {
  it("builds one token per id, sharded by a stable hash", () => {
    expect(stableHash("abc")).toBe(stableHash("abc"));
    const s = conversationSubject(t, "g_team");
    expect(s).toMatch(/^conv\.[0-3]\.g_team$/);
    expect(inboxSubject(t, "alice")).toMatch(/^inbox\.[0-7]\.alice$/);
    expect(deliverySubject(t, "alice").split(".")[1]).toBe(inboxSubject(t, "alice").split(".")[1]);
  });

  it.each(["a.b", "*", ">", "a b", "tab\t", "new\nline", "", "x".repeat(65), "ünïcode", "a\u0000b", "$SYS"])(
    "refuses %j before it can reach a subject or msg id",
    (bad) => {
      expect(() => conversationSubject(t, bad)).toThrow(NatterError);
      expect(() => inboxSubject(t, bad)).toThrow(NatterError);
      expect(() => sendMsgId("alice", bad)).toThrow(NatterError);
      expect(() => fanoutMsgId("CONV_0", 1, bad)).toThrow(NatterError);
      expect(() => presenceDeviceKey("alice", bad)).toThrow(NatterError);
      expect(() => presenceDeviceKey(bad, "d")).toThrow(NatterError);
      expect(() => contactKey("alice", bad)).toThrow(NatterError);
      expect(() => presenceSubject(t, bad)).toThrow(NatterError);
      expect(() => receiptSubject(t, "g_team", bad)).toThrow(NatterError);
      expect(() => receiptSubject(t, bad, "alice")).toThrow(NatterError);
      expect(() => typingSubject(t, bad)).toThrow(NatterError);
      expect(() => userConversationKey("alice", bad)).toThrow(NatterError);
    },
  );

  it("derives the dedupe id from (sender, client id) only", () => {
    expect(sendMsgId("alice", "c-1")).toBe(sendMsgId("alice", "c-1"));
    expect(sendMsgId("alice", "c-1")).not.toBe(sendMsgId("bob", "c-1"));
  });

  it("names presence keys and subjects: a device key is <user>.<device>; presence rides the inbox shard", () => {
    expect(presenceDeviceKey("alice", "phone-1")).toBe("alice.phone-1");
    expect(presenceKeyParts("alice.phone-1")).toEqual({ user: "alice", device: "phone-1" });
    expect(() => presenceKeyParts("alice.phone.x")).toThrow(NatterError);
    expect(presenceSubject(t, "alice").split(".")[1]).toBe(deliverySubject(t, "alice").split(".")[1]);
    expect(contactKey("alice", "bob")).toBe("alice.bob");
  });

  it("names receipts inside the conversation's shard, typing on the user's, and a user's conversations by key", () => {
    const conv = conversationSubject(t, "g_team");
    expect(receiptSubject(t, "g_team", "alice")).toBe(`${conv}.receipts.alice`);
    expect(convIdFromSubject(receiptSubject(t, "g_team", "alice"))).toBe("g_team");
    expect(typingSubject(t, "alice")).toMatch(/^typing\.[0-7]\.alice$/);
    expect(typingSubject(t, "alice").split(".")[1]).toBe(deliverySubject(t, "alice").split(".")[1]);
    expect(userConversationKey("alice", "g_team")).toBe("alice.g_team");
    expect(userConversationsFilter("alice")).toBe("$KV.user-convs.alice.*");
  });
});
