// Tokens: HS256 JWTs whose subject is the user id, with `exp` and `iat` required. `natter token`
// and POST /dev/token mint them for development; production deployments mint them in their own
// login service with the same secret. A token is accepted until its `exp`, and never longer than
// auth.maxTokenAgeSec after its `iat`; a user's tokens issued before a revocation are refused
// (revocations.ts). docs/security.md, "Tokens".
import { SignJWT, jwtVerify } from "jose";
import { isValidId, NatterError } from "../core/index.ts";
import type { RevocationCheck } from "./revocations.ts";

export interface TokenSettings {
  secret: string;
  issuer: string;
  audience: string;
  /** Lifetime of the tokens natter mints (seconds). */
  ttlSec: number;
  /** A token is refused this long after its `iat`, whatever its `exp` (seconds). */
  maxAgeSec: number;
  /** A socket whose token expired gets this long to send a fresh one (seconds). */
  expiryGraceSec: number;
}

/** What a valid token says: its user, and when it was issued and expires (Unix seconds). */
export interface TokenClaims {
  user: string;
  iat: number;
  exp: number;
}

/** How far in the future an `iat` may be (the login service's clock ahead of ours). */
const CLOCK_SKEW_S = 60;

const key = (secret: string) => new TextEncoder().encode(secret);

export async function mintToken(s: TokenSettings, userId: string, ttlSec = s.ttlSec): Promise<string> {
  if (!isValidId(userId)) throw new NatterError("INVALID_ID", "user id must be 1-64 characters of A-Z a-z 0-9 _ -");
  return new SignJWT({})
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(userId)
    .setIssuer(s.issuer)
    .setAudience(s.audience)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSec)
    .sign(key(s.secret));
}

/**
 * The claims of a valid token; UNAUTHENTICATED for anything else: a bad signature, issuer or
 * audience, no `sub`, `exp` or `iat`, expired, issued in the future, or older than maxAgeSec.
 * The message says which, never the token.
 */
export async function verifyToken(s: TokenSettings, token: unknown, nowMs = Date.now()): Promise<TokenClaims> {
  if (typeof token !== "string" || token.length === 0 || token.length > 4096) throw new NatterError("UNAUTHENTICATED");
  let payload: { sub?: unknown; iat?: unknown; exp?: unknown };
  try {
    ({ payload } = await jwtVerify(token, key(s.secret), {
      issuer: s.issuer,
      audience: s.audience,
      algorithms: ["HS256"],
      requiredClaims: ["sub", "exp", "iat"],
      currentDate: new Date(nowMs),
    }));
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    const message = code === "ERR_JWT_EXPIRED" ? "the token expired" : code === "ERR_JWT_CLAIM_VALIDATION_FAILED" ? `the token lacks a valid ${String((err as { claim?: unknown }).claim)} claim` : undefined;
    throw new NatterError("UNAUTHENTICATED", message, { cause: err });
  }
  const { sub, iat, exp } = payload;
  if (!isValidId(sub)) throw new NatterError("UNAUTHENTICATED", "the token's subject is not a valid user id");
  if (typeof iat !== "number" || typeof exp !== "number") throw new NatterError("UNAUTHENTICATED", "the token lacks iat or exp");
  const now = nowMs / 1000;
  if (iat > now + CLOCK_SKEW_S) throw new NatterError("UNAUTHENTICATED", "the token was issued in the future");
  if (now - iat > s.maxAgeSec) throw new NatterError("UNAUTHENTICATED", `the token is older than ${s.maxAgeSec} s (auth.maxTokenAgeSec)`);
  return { user: sub, iat, exp };
}

/** When a socket authenticated with `c` needs a fresh token (ms since the epoch): its `exp`, or its maximum age if sooner. */
export function tokenDeadlineMs(s: Pick<TokenSettings, "maxAgeSec">, c: TokenClaims): number {
  return Math.min(c.exp, c.iat + s.maxAgeSec) * 1000;
}

/** A valid token whose user has not revoked it: verifyToken, then the revocations bucket. */
export async function authenticate(s: TokenSettings, revocations: RevocationCheck, token: unknown): Promise<TokenClaims> {
  const claims = await verifyToken(s, token);
  await revocations.check(claims);
  return claims;
}
