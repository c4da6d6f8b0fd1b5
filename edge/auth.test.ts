import { SignJWT } from "jose";
import { describe, expect, it } from "vitest";
import { mintToken, tokenDeadlineMs, verifyToken } from "./auth.ts";

const s = { secret: "s".repeat(40), issuer: "natter", audience: "natter", ttlSec: 60, maxAgeSec: 3600, expiryGraceSec: 5 };
const now = () => Math.floor(Date.now() / 1000);

/** A token with exactly these claims (any may be left out), signed with `s`'s secret. */
function signed(claims: { sub?: string; iat?: number; exp?: number }, secret = s.secret): Promise<string> {
  const jwt = new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setIssuer(s.issuer).setAudience(s.audience);
  if (claims.sub !== undefined) jwt.setSubject(claims.sub);
  if (claims.iat !== undefined) jwt.setIssuedAt(claims.iat);
  if (claims.exp !== undefined) jwt.setExpirationTime(claims.exp);
  return jwt.sign(new TextEncoder().encode(secret));
}

describe("tokens", () => {
  it("round-trips the user id, with when it was issued and expires", async () => {
    const c = await verifyToken(s, await mintToken(s, "alice"));
    expect(c.user).toBe("alice");
    expect(c.exp - c.iat).toBe(60);
    expect(Math.abs(c.iat - now())).toBeLessThanOrEqual(1);
  });

  it.each([
    ["another secret", async () => mintToken({ ...s, secret: "x".repeat(40) }, "alice"), undefined],
    ["another audience", async () => mintToken({ ...s, audience: "other" }, "alice"), undefined],
    ["an expired token", async () => mintToken(s, "alice", -10), "the token expired"],
    ["a token without exp", async () => signed({ sub: "alice", iat: now() }), 'lacks a valid exp claim'],
    ["a token without sub", async () => signed({ iat: now(), exp: now() + 60 }), "lacks a valid sub claim"],
    ["a token without iat", async () => signed({ sub: "alice", exp: now() + 60 }), "lacks a valid iat claim"],
    ["a subject that is no user id", async () => signed({ sub: "a.b", iat: now(), exp: now() + 60 }), "not a valid user id"],
    ["a token issued in the future", async () => signed({ sub: "alice", iat: now() + 600, exp: now() + 900 }), "issued in the future"],
    ["a token older than the maximum age, however late its exp", async () => signed({ sub: "alice", iat: now() - 3601, exp: now() + 86_400 }), "older than 3600 s"],
    ["garbage", async () => "not.a.jwt", undefined],
    ["an empty string", async () => "", undefined],
  ])("refuses %s with UNAUTHENTICATED", async (_name, make, message) => {
    const refused = verifyToken(s, await make());
    await expect(refused).rejects.toMatchObject({ code: "UNAUTHENTICATED" });
    if (message !== undefined) await expect(refused).rejects.toThrow(message);
  });

  it("allows an iat a little ahead (another machine's clock)", async () => {
    expect((await verifyToken(s, await signed({ sub: "alice", iat: now() + 30, exp: now() + 90 }))).user).toBe("alice");
  });

  it("has a socket renew its token at exp, or at the maximum age when that comes first", () => {
    expect(tokenDeadlineMs(s, { user: "a", iat: 1000, exp: 1060 })).toBe(1_060_000);
    expect(tokenDeadlineMs(s, { user: "a", iat: 1000, exp: 1000 + 86_400 })).toBe((1000 + 3600) * 1000);
  });

  it("will not mint a token for a user id that could not be a subject token", async () => {
    await expect(mintToken(s, "a.b")).rejects.toMatchObject({ code: "INVALID_ID" });
  });
});
