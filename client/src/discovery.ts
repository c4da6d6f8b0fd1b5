// Discovery: which edge the next connection attempt goes to. Before an attempt it asks
// `GET /discovery` (docs/protocol.md, "Discovery") on a bootstrap URL — the next one when a URL
// does not answer, then the edges it last heard of — and keeps the ranked list it gets. The
// connection tells it how each socket ended: an attempt that failed, a dropped connection, a close
// 1001 (the edge is going away) or 4503 (busy or full) moves on to the next edge of the list; a
// list used up, or older than maxAgeMs, is asked for again, with the edge just left put last.
// Which edge a device is on changes nothing else: the hello resumes from the device's cursor
// on whichever edge it reaches.
import { closedError, NatterError } from "./errors.js";
import type { Emitter } from "./events.js";
import { CLOSE_CODES } from "./protocol.js";
import { toHttpUrl, toWebSocketUrl } from "./util.js";

export interface DiscoveryOptions {
  /** Where to ask `GET /discovery`: one URL or several, asked in turn until one answers (http(s) or ws(s); any edge answers). */
  bootstrap: string | readonly string[];
  /** Edges of this region first (the edges' `edge.region`). Default: none, by load alone. */
  region?: string;
  /** How many edges to ask for (1–100), the list gone through before asking again. Default 3. */
  limit?: number;
  /** A list older than this (ms) is asked for again before the next attempt. Default 30 s. */
  maxAgeMs?: number;
  /** How long one discovery request may take before the next URL is asked (ms). Default 5 s. */
  requestTimeoutMs?: number;
}

/** An edge as `GET /discovery` returns it. */
export interface DiscoveredEdge {
  id: string;
  /** Where clients connect to it (the edge's `edge.publicUrl`). */
  url: string;
  region: string;
  connections: number;
  capacity: number;
  /** connections / capacity. */
  load: number;
}

/** A discovery answer the client will go through, best first. */
export interface DiscoveryEvent {
  /** The URL that answered (a bootstrap URL, or an edge heard of before). */
  from: string;
  edges: DiscoveredEdge[];
  /** Why it asked: the first attempt, the last list was used up, or it was older than `maxAgeMs`. */
  reason: "first" | "used-up" | "stale";
}

/** The edge a client is on (or trying): its URL, and its id and region when discovery named it. */
export interface EdgeInfo {
  url: string;
  id?: string | undefined;
  region?: string | undefined;
}

/**
 * Whether a socket that ended with `code` sends the next attempt to the next edge: a close 1001
 * (going away) or 4503 (busy or full), a dropped connection (1006, also no answer to a ping), or
 * any attempt the server never welcomed; not a refused token (4401) or cursor (4400), which are
 * about the device, nor a close of a welcomed socket for what the device did (4409, 4429…).
 */
export function movesOn(code: number, welcomed: boolean): boolean {
  switch (code) {
    case CLOSE_CODES.GOING_AWAY:
    case CLOSE_CODES.UNAVAILABLE:
    case CLOSE_CODES.ABNORMAL:
      return true;
    case CLOSE_CODES.UNAUTHORIZED:
    case CLOSE_CODES.BAD_HANDSHAKE:
      return false;
    default:
      return !welcomed;
  }
}

/** The same origin? (`wss://h/ws` and `https://h` are one edge.) */
function sameOrigin(a: string, b: string): boolean {
  try {
    return toHttpUrl(a) === toHttpUrl(b);
  } catch {
    return false;
  }
}

/** `list` with the entries of `url`'s origin moved to the end (kept in their order). */
function putLast<T>(list: readonly T[], urlOf: (t: T) => string, url: string | undefined): T[] {
  if (url === undefined) return [...list];
  const rest = list.filter((t) => !sameOrigin(urlOf(t), url));
  return [...rest, ...list.filter((t) => sameOrigin(urlOf(t), url))];
}

/** The edges of a discovery answer that a client can connect to; anything malformed is left out. */
function edgesOf(body: unknown): DiscoveredEdge[] {
  const edges = (body as { edges?: unknown } | undefined)?.edges;
  if (!Array.isArray(edges)) return [];
  return edges.flatMap((e: Partial<DiscoveredEdge> | null) => {
    if (typeof e !== "object" || e === null || typeof e.url !== "string") return [];
    try {
      toWebSocketUrl(e.url);
    } catch {
      return [];
    }
    const n = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : 0);
    return [{ id: String(e.id ?? ""), url: e.url, region: String(e.region ?? ""), connections: n(e.connections), capacity: n(e.capacity), load: n(e.load) }];
  });
}

export class EdgeDirectory {
  readonly #bootstrap: readonly string[];
  readonly #region: string | undefined;
  readonly #limit: number;
  readonly #maxAgeMs: number;
  readonly #timeoutMs: number;
  readonly #events: Emitter;

  #edges: DiscoveredEdge[] = [];
  /** The edge of the current (or last) attempt in #edges. */
  #index = 0;
  #askedAt: number | undefined;
  #moveOn = false;
  /** The URL that answered discovery last: asked first next time, and the base of HTTP requests. */
  #answered: string | undefined;
  #current: DiscoveredEdge | undefined;
  #inFlight = new Set<AbortController>();
  #closed = false;

  constructor(opts: DiscoveryOptions, events: Emitter) {
    const bootstrap = typeof opts.bootstrap === "string" ? [opts.bootstrap] : [...opts.bootstrap];
    if (bootstrap.length === 0) throw new TypeError("NatterClient: discovery.bootstrap needs at least one URL");
    for (const b of bootstrap) toHttpUrl(b); // a TypeError now for a URL that could never work
    this.#bootstrap = bootstrap;
    this.#region = opts.region;
    this.#limit = opts.limit ?? 3;
    this.#maxAgeMs = opts.maxAgeMs ?? 30_000;
    this.#timeoutMs = opts.requestTimeoutMs ?? 5_000;
    this.#events = events;
  }

  /** The edge of the current (or last) attempt, as discovery named it. */
  get current(): DiscoveredEdge | undefined {
    return this.#current;
  }

  /** The base of HTTP requests (images): the URL that answered discovery last, else the first bootstrap URL. */
  get httpBase(): string {
    return this.#answered ?? this.#bootstrap[0]!;
  }

  /** The URL of the next attempt's edge: the next of the list, or the first of a new one. */
  async next(): Promise<string> {
    const leaving = this.#moveOn ? this.#current?.url : undefined;
    if (this.#moveOn) this.#index++;
    this.#moveOn = false;
    const usedUp = this.#index >= this.#edges.length;
    const stale = this.#askedAt !== undefined && Date.now() - this.#askedAt >= this.#maxAgeMs;
    if (usedUp || stale) {
      const reason = this.#askedAt === undefined ? "first" : usedUp ? "used-up" : "stale";
      try {
        await this.#ask(reason, leaving);
      } catch (err) {
        // Nobody answered. With a list in hand, go on through it (from its start once used up):
        // its edges may take sockets all the same. The next attempt asks again.
        if (this.#edges.length === 0) throw err;
        this.#events.emit("error", err as NatterError);
        this.#index %= this.#edges.length;
      }
    }
    this.#current = this.#edges[this.#index];
    return this.#current!.url;
  }

  /** How the socket of the last attempt ended (see movesOn). */
  ended(code: number, welcomed: boolean): void {
    if (movesOn(code, welcomed)) this.#moveOn = true;
  }

  /** The client closed: a request in flight is abandoned. */
  close(): void {
    this.#closed = true;
    for (const c of this.#inFlight) c.abort();
  }

  /** Asks the bootstrap URLs, then the edges heard of, until one answers with edges. */
  async #ask(reason: DiscoveryEvent["reason"], leaving: string | undefined): Promise<void> {
    const candidates: string[] = [];
    for (const url of [...(this.#answered !== undefined ? [this.#answered] : []), ...this.#bootstrap, ...this.#edges.map((e) => e.url)]) {
      if (!candidates.some((c) => sameOrigin(c, url))) candidates.push(url);
    }
    const failures: string[] = [];
    for (const from of putLast(candidates, (c) => c, leaving)) {
      const edges = await this.#request(from);
      if (this.#closed) throw closedError();
      if (typeof edges === "string") {
        failures.push(`${toHttpUrl(from)}: ${edges}`);
        continue;
      }
      this.#edges = putLast(edges, (e) => e.url, leaving);
      this.#index = 0;
      this.#askedAt = Date.now();
      this.#answered = from;
      this.#events.emit("discovery", { from, edges: [...this.#edges], reason });
      return;
    }
    throw new NatterError("UNAVAILABLE", `discovery: no answer with an edge (${failures.join("; ")})`, { temporary: true });
  }

  /** One GET /discovery, abandoned after requestTimeoutMs: the edges of its answer, or why there are none. */
  async #request(from: string): Promise<DiscoveredEdge[] | string> {
    const url = new URL("/discovery", toHttpUrl(from));
    if (this.#region !== undefined) url.searchParams.set("region", this.#region);
    url.searchParams.set("limit", String(this.#limit));
    const abort = new AbortController();
    this.#inFlight.add(abort);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      abort.abort();
    }, this.#timeoutMs);
    try {
      const res = await fetch(url, { signal: abort.signal, headers: { accept: "application/json" } });
      const body = (await res.json().catch(() => undefined)) as { error?: { code?: string; message?: string } } | undefined;
      if (!res.ok) return body?.error !== undefined ? `${body.error.code} ${body.error.message}` : `HTTP ${res.status}`;
      const edges = edgesOf(body);
      return edges.length > 0 ? edges : "no edge in the answer";
    } catch (err) {
      return timedOut ? `no answer within ${this.#timeoutMs} ms` : ((err as Error)?.message ?? String(err));
    } finally {
      clearTimeout(timer);
      this.#inFlight.delete(abort);
    }
  }
}
