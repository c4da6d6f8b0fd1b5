// Tokens: HS256 JWTs whose subject is the user id. `natter token` and POST /dev/token mint them
// for development; production deployments mint them in their own login service with the same secret.
import { SignJWT, jwtVerify } from "jose";
import { isValidId, NatterError } from "../core/index.ts";

export interface TokenSettings {
  secret: string;
  issuer: string;
  audience: string;
  ttlSec: number;
}

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

/** The user id of a valid token; UNAUTHENTICATED for anything else. */
export async function verifyToken(s: TokenSettings, token: unknown): Promise<string> {
  if (typeof token !== "string" || token.length === 0 || token.length > 4096) throw new NatterError("UNAUTHENTICATED");
  let sub: unknown;
  try {
    const { payload } = await jwtVerify(token, key(s.secret), { issuer: s.issuer, audience: s.audience, algorithms: ["HS256"] });
    sub = payload.sub;
  } catch (err) {
    throw new NatterError("UNAUTHENTICATED", undefined, { cause: err });
  }
  if (!isValidId(sub)) throw new NatterError("UNAUTHENTICATED", "token subject is not a valid user id");
  return sub;
}
