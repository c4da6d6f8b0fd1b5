import { describe, expect, it } from "vitest";
import { mintToken, verifyToken } from "./auth.ts";

const s = { secret: "s".repeat(40), issuer: "natter", audience: "natter", ttlSec: 60 };

describe("tokens", () => {
  it("round-trips the user id", async () => {
    expect(await verifyToken(s, await mintToken(s, "alice"))).toBe("alice");
  });

  it.each([
    ["another secret", async () => mintToken({ ...s, secret: "x".repeat(40) }, "alice")],
    ["another audience", async () => mintToken({ ...s, audience: "other" }, "alice")],
    ["an expired token", async () => mintToken(s, "alice", -10)],
    ["garbage", async () => "not.a.jwt"],
    ["an empty string", async () => ""],
  ])("refuses %s with UNAUTHENTICATED", async (_name, make) => {
    await expect(verifyToken(s, await make())).rejects.toMatchObject({ code: "UNAUTHENTICATED" });
  });

  it("will not mint a token for a user id that could not be a subject token", async () => {
    await expect(mintToken(s, "a.b")).rejects.toMatchObject({ code: "INVALID_ID" });
  });
});
