// Where pushes may go. Web Push endpoints and webhook URLs come from clients, so the server would
// make requests wherever a client says: the rules below keep it from reaching anything but the
// public internet (SSRF). A URL is checked when it is registered (its shape, and an IP literal's
// address) and again on every send, when the host name is resolved: the connection goes to an
// address that passed the check, so a name that later resolves elsewhere (DNS rebinding) cannot
// slip through. Hosts in `allowHosts` (development and tests: 127.0.0.1) are exempt.
import { BlockList, isIP } from "node:net";
import { NatterError } from "../core/index.ts";

export interface TargetPolicy {
  /** Exact host names or IP literals that may be reached over http and at any address. */
  allowHosts: readonly string[];
}

/** Longest endpoint or webhook URL accepted (characters). */
export const MAX_TARGET_URL_LENGTH = 2048;

const blocked = new BlockList();
// IPv4: "this" network, private, carrier-grade NAT, loopback, link-local (cloud metadata at
// 169.254.169.254), IETF protocol assignments, documentation, 6to4 relay, benchmarking,
// multicast, reserved and broadcast.
for (const [net, prefix] of [
  ["0.0.0.0", 8],
  ["10.0.0.0", 8],
  ["100.64.0.0", 10],
  ["127.0.0.0", 8],
  ["169.254.0.0", 16],
  ["172.16.0.0", 12],
  ["192.0.0.0", 24],
  ["192.0.2.0", 24],
  ["192.88.99.0", 24],
  ["192.168.0.0", 16],
  ["198.18.0.0", 15],
  ["198.51.100.0", 24],
  ["203.0.113.0", 24],
  ["224.0.0.0", 4],
  ["240.0.0.0", 4],
] as const) {
  blocked.addSubnet(net, prefix, "ipv4");
}
// IPv6: unspecified, loopback and IPv4-compatible, discard, local-use NAT64, documentation,
// unique local, link-local, site-local and multicast. IPv4-mapped and NAT64 addresses are judged
// by the IPv4 address inside them (below).
for (const [net, prefix] of [
  ["::", 96],
  ["100::", 64],
  ["64:ff9b:1::", 48],
  ["2001:db8::", 32],
  ["fc00::", 7],
  ["fe80::", 10],
  ["fec0::", 10],
  ["ff00::", 8],
] as const) {
  blocked.addSubnet(net, prefix, "ipv6");
}

/** The IPv4 address inside an IPv4-mapped (::ffff:a.b.c.d) or NAT64 (64:ff9b::a.b.c.d) address. */
function embeddedIpv4(ip: string): string | undefined {
  const m = /^(?:::ffff:|64:ff9b::)(?:(\d+\.\d+\.\d+\.\d+)|([0-9a-f]{1,4}):([0-9a-f]{1,4}))$/i.exec(ip);
  if (!m) return undefined;
  if (m[1]) return m[1];
  const hi = parseInt(m[2]!, 16);
  const lo = parseInt(m[3]!, 16);
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
}

/** True when `ip` is a public unicast address (false for anything private, local, reserved, or not an IP). */
export function isPublicAddress(ip: string): boolean {
  const family = isIP(ip);
  if (family === 0) return false;
  if (family === 6) {
    const v4 = embeddedIpv4(ip.toLowerCase());
    if (v4 !== undefined) return isPublicAddress(v4);
    return !blocked.check(ip, "ipv6");
  }
  return !blocked.check(ip, "ipv4");
}

/** The URL's host as a bare name or address: lowercase, IPv6 without brackets, no trailing dot. */
export function hostOf(url: URL): string {
  return url.hostname.toLowerCase().replace(/^\[(.*)\]$/, "$1").replace(/\.$/, "");
}

function isAllowedHost(host: string, policy: TargetPolicy): boolean {
  return policy.allowHosts.some((h) => h.toLowerCase() === host);
}

/** Names that never lead to the public internet, whatever they resolve to. */
function isLocalName(host: string): boolean {
  return !host.includes(".") || /(^|\.)(localhost|local|internal|intranet|lan|home\.arpa)$/.test(host);
}

function refuse(why: string): NatterError {
  return new NatterError("PUSH_TARGET_REFUSED", `push target refused: ${why}`);
}

/**
 * Checks a client-supplied endpoint or webhook URL: at most 2,048 characters, https (http only
 * for an allowed host), no credentials, and a host that is a public IP address or a name outside
 * local-only domains. Names are resolved and checked again on every send (see `checkAddresses`).
 */
export function checkTargetUrl(raw: string, policy: TargetPolicy): URL {
  if (raw.length > MAX_TARGET_URL_LENGTH) throw refuse(`longer than ${MAX_TARGET_URL_LENGTH} characters`);
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw refuse("not a URL");
  }
  const host = hostOf(url);
  const allowed = isAllowedHost(host, policy);
  if (url.protocol !== "https:" && !(url.protocol === "http:" && allowed)) throw refuse("only https URLs are accepted");
  if (url.username !== "" || url.password !== "") throw refuse("credentials in the URL");
  if (host === "") throw refuse("no host");
  if (allowed) return url;
  if (isIP(host) !== 0) {
    if (!isPublicAddress(host)) throw refuse("not a public address");
  } else if (isLocalName(host)) {
    throw refuse("not a public host name");
  }
  return url;
}

/** Checks the addresses a host name resolved to: every one must be public (unless the host is allowed). */
export function checkAddresses(host: string, addresses: readonly string[], policy: TargetPolicy): void {
  if (isAllowedHost(host, policy)) return;
  if (addresses.length === 0) throw refuse(`${host} resolved to no address`);
  const bad = addresses.find((a) => !isPublicAddress(a));
  if (bad !== undefined) throw refuse(`${host} resolves to a non-public address`);
}

/**
 * Checks a provider URL from the configuration (FCM's API root and token endpoint, APNs's host):
 * https, or http for a host in `allowHosts` (a local stand-in in tests). CONFIG_INVALID naming
 * `setting` otherwise. Nothing else applies: the operator, not a client, chose it.
 */
export function checkProviderUrl(raw: string, policy: TargetPolicy, setting: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new NatterError("CONFIG_INVALID", `${setting}: ${raw} is not a URL`);
  }
  if (url.protocol === "https:" || (url.protocol === "http:" && isAllowedHost(hostOf(url), policy))) return url;
  throw new NatterError("CONFIG_INVALID", `${setting}: ${raw} must be an https URL (http only for a host in push.allowHosts)`);
}
