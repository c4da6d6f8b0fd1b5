// The one way pushes leave natter: an HTTP POST to a checked target. The host name is resolved
// here and every address checked (targets.ts) inside the socket's own lookup, so the connection
// goes to exactly the address that was checked. No redirects are followed, the response body is
// drained and dropped, and the whole request has a deadline.
import { lookup as dnsLookup } from "node:dns/promises";
import http from "node:http";
import https from "node:https";
import type { LookupFunction } from "node:net";
import { checkAddresses, checkTargetUrl, hostOf, type TargetPolicy } from "./targets.ts";

/** Resolves a host name to its addresses (injectable for tests). */
export type Resolver = (host: string) => Promise<{ address: string; family: number }[]>;

export interface HttpResult {
  status: number;
  /** From a Retry-After header (429, 503), in ms. */
  retryAfterMs?: number | undefined;
}

export interface GuardedHttpOptions {
  policy: TargetPolicy;
  /** Deadline of one request, from connecting to the response's status (ms). */
  timeoutMs: number;
  resolve?: Resolver;
}

const systemResolver: Resolver = (host) => dnsLookup(host, { all: true, verbatim: true });

/** Retry-After: delta-seconds or an HTTP date; undefined when absent or unreadable. */
export function retryAfterMs(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined || v.trim() === "") return undefined;
  if (/^\d+$/.test(v.trim())) return Number(v.trim()) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

export class GuardedHttp {
  readonly #opts: GuardedHttpOptions;
  readonly #resolve: Resolver;
  readonly #agents = {
    http: new http.Agent({ keepAlive: true, maxSockets: 64 }),
    https: new https.Agent({ keepAlive: true, maxSockets: 64 }),
  };

  constructor(opts: GuardedHttpOptions) {
    this.#opts = opts;
    this.#resolve = opts.resolve ?? systemResolver;
  }

  /**
   * POSTs `body` to `target`. Resolves with the response status (any status); rejects with
   * PUSH_TARGET_REFUSED when the target is not allowed, or with the network error.
   */
  async post(target: string, body: Uint8Array | string, headers: Record<string, string | number>): Promise<HttpResult> {
    const { policy, timeoutMs } = this.#opts;
    const url = checkTargetUrl(target, policy);
    const host = hostOf(url);
    const lookup: LookupFunction = (hostname, options, callback) => {
      this.#resolve(hostname).then(
        (found) => {
          try {
            checkAddresses(host, found.map((a) => a.address), policy);
          } catch (err) {
            callback(err as NodeJS.ErrnoException, "", 4);
            return;
          }
          if (options.all) {
            (callback as unknown as (err: null, addresses: { address: string; family: number }[]) => void)(null, found);
          } else {
            callback(null, found[0]!.address, found[0]!.family);
          }
        },
        (err: NodeJS.ErrnoException) => callback(err, "", 4),
      );
    };
    const secure = url.protocol === "https:";
    const request = secure ? https.request : http.request;
    return new Promise<HttpResult>((resolve, reject) => {
      const req = request(
        url,
        {
          method: "POST",
          headers: { "user-agent": "natter-push", ...headers, "content-length": Buffer.byteLength(body) },
          agent: secure ? this.#agents.https : this.#agents.http,
          lookup,
          signal: AbortSignal.timeout(timeoutMs),
        },
        (res) => {
          res.resume(); // drained and dropped: nothing of a target's answer is kept or shown
          res.on("error", () => undefined);
          resolve({ status: res.statusCode ?? 0, retryAfterMs: retryAfterMs(res.headers["retry-after"]) });
        },
      );
      req.on("error", reject);
      req.end(body);
    });
  }

  close(): void {
    this.#agents.http.destroy();
    this.#agents.https.destroy();
  }
}
