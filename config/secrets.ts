// What natter refuses as a token secret, and the loopback rule for development tokens: checks
// on values that the schema's types alone cannot express (docs/security.md, "Tokens").

/** Words that mark a value someone meant to replace: a secret containing one is refused. */
const PLACEHOLDER_WORDS = ["changeme", "change-me", "change_me", "secret", "password", "passwd", "example", "placeholder", "default", "natter", "todo"];

/** Fewest characters and fewest different characters of an HS256 secret. */
const MIN_SECRET_CHARS = 32;
const MIN_DISTINCT_CHARS = 8;

/**
 * Why `secret` is too weak to sign tokens with, or undefined when it passes. The rule: at least
 * 32 characters, at least 8 different ones, not one piece repeated ("abcabc…"), and none of the
 * placeholder words above (any case). Random output passes (`openssl rand -base64 48`, 32 random
 * bytes as hex or base64); a phrase or a pattern someone typed does not.
 */
export function weakSecretReason(secret: string): string | undefined {
  if (secret.length < MIN_SECRET_CHARS) return `is ${secret.length} characters; at least ${MIN_SECRET_CHARS} are needed`;
  const distinct = new Set(secret).size;
  if (distinct < MIN_DISTINCT_CHARS) return `uses ${distinct} different characters; at least ${MIN_DISTINCT_CHARS} are needed (use random bytes: openssl rand -base64 48)`;
  if (repeatsAPiece(secret)) return "is one piece repeated; use random bytes (openssl rand -base64 48)";
  const lower = secret.toLowerCase();
  const word = PLACEHOLDER_WORDS.find((w) => lower.includes(w));
  if (word !== undefined) return `contains "${word}", the mark of a placeholder; use random bytes (openssl rand -base64 48)`;
  return undefined;
}

/** True when `s` is a shorter string written twice or more (a period that divides its length). */
function repeatsAPiece(s: string): boolean {
  for (let p = 1; p <= s.length / 2; p++) {
    if (s.length % p !== 0) continue;
    let same = true;
    for (let i = p; i < s.length && same; i++) same = s[i] === s[i - p];
    if (same) return true;
  }
  return false;
}

/** Host names and addresses that reach only this machine. */
export function isLoopbackHost(host: string): boolean {
  const h = host.trim().toLowerCase().replace(/^\[(.*)\]$/, "$1");
  return h === "localhost" || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || h === "::ffff:127.0.0.1";
}
