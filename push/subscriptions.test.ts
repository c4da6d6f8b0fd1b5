// Registering app tokens: their shape is checked, and a kind the server has no credentials for is
// refused before anything is stored (the rest of registration runs on real servers in
// test/push.int.test.ts and test/push-mobile.int.test.ts).
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import { describe, expect, it } from "vitest";
import { NatterError } from "../core/errors.ts";
import { silentLogger } from "../core/logger.ts";
import { checkApnsToken, checkFcmToken, PushSubscriptions } from "./subscriptions.ts";

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(NatterError);
    return (err as NatterError).code;
  }
  return "accepted";
}

describe("app tokens", () => {
  it("FCM: printable ASCII without spaces, 16 to 4,096 characters", () => {
    const token = "dBbB2BFT-VY:APA91bHN_ct4xJ9Q8Ylbq3xo3vgvw0bnS1C-example_token";
    expect(checkFcmToken(token)).toBe(token);
    expect(code(() => checkFcmToken("short"))).toBe("BAD_FRAME");
    expect(code(() => checkFcmToken(`${token} x`))).toBe("BAD_FRAME");
    expect(code(() => checkFcmToken(`${token}\n`))).toBe("BAD_FRAME");
    expect(code(() => checkFcmToken("a".repeat(4097)))).toBe("BAD_FRAME");
  });

  it("APNs: hex of 32 to 100 bytes, kept in lower case", () => {
    const token = "A1B2".repeat(16);
    expect(checkApnsToken(token)).toBe(token.toLowerCase());
    expect(checkApnsToken("ab".repeat(100))).toBe("ab".repeat(100));
    expect(code(() => checkApnsToken("ab".repeat(31)))).toBe("BAD_FRAME");
    expect(code(() => checkApnsToken("ab".repeat(101)))).toBe("BAD_FRAME");
    expect(code(() => checkApnsToken(`${"ab".repeat(32)}a`))).toBe("BAD_FRAME");
    expect(code(() => checkApnsToken("zz".repeat(32)))).toBe("BAD_FRAME");
    expect(code(() => checkApnsToken(`${"ab".repeat(32)}/../x`))).toBe("BAD_FRAME");
  });

  it("a kind without the server's credentials is refused with PUSH_DISABLED, before anything is stored", async () => {
    const untouchable = new Proxy({}, { get: () => { throw new Error("nothing may be stored"); } });
    const subs = new PushSubscriptions({
      js: untouchable as JetStreamClient,
      jsm: untouchable as JetStreamManager,
      policy: { allowHosts: [] },
      maxPerUser: 10,
      mobile: { fcm: false, apns: false },
      log: silentLogger(),
    });
    await expect(subs.register("bob", "phone", { kind: "fcm", token: "dBbB2BFT-VY:APA91bHN_ct4xJ9Q8Ylbq3xo3vgvw0bnS1C" })).rejects.toMatchObject({ code: "PUSH_DISABLED", message: expect.stringContaining("push.fcm") });
    await expect(subs.register("bob", "phone", { kind: "apns", token: "ab".repeat(32) })).rejects.toMatchObject({ code: "PUSH_DISABLED", message: expect.stringContaining("push.apns") });
  });
});
