// Compact JWTs (RFC 7519) signed with node:crypto, for the two provider credentials natter
// holds: RS256 for Google's service-account assertion (FCM) and ES256 for APNs provider tokens,
// whose signature is the JOSE form (r‖s, 64 bytes; RFC 7518 §3.4), not DER.
import { sign, type KeyObject } from "node:crypto";

export type JwtAlgorithm = "RS256" | "ES256";

const part = (value: object): string => Buffer.from(JSON.stringify(value)).toString("base64url");

/** `header.claims.signature`, the header starting with `alg`. */
export function signJwt(alg: JwtAlgorithm, key: KeyObject, header: Record<string, string>, claims: Record<string, string | number>): string {
  const input = `${part({ alg, ...header })}.${part(claims)}`;
  const signature = sign("sha256", Buffer.from(input), alg === "ES256" ? { key, dsaEncoding: "ieee-p1363" } : key);
  return `${input}.${signature.toString("base64url")}`;
}
