// Service discovery: each edge registers itself in the KV bucket `edges` under its id, with a
// per-key TTL, and refreshes the entry every ttl/3 while it is healthy; a refresh that fails (NATS
// slow in a reconnect storm) is tried again after a second, not a whole ttl/3 later, so a few
// slow answers cannot let the entry expire. A graceful shutdown first
// marks it draining, then removes it; a killed edge's entry expires within the TTL. Any edge
// answers GET /discovery from the bucket: the best edges for a client, ranked by rankEdges.
import { JetStreamError, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { headers } from "@nats-io/transport-node";
import { z } from "zod";
import { type Logger, NatterError } from "../core/index.ts";
import { decodeJsonOrUndefined, directBatch, edgeKey, encodeJson, kvKeySubject, names } from "../nats/index.ts";

const EdgeInfoSchema = z.object({
  id: z.string(),
  url: z.string(),
  region: z.string(),
  connections: z.number().int().min(0),
  capacity: z.number().int().min(1),
  draining: z.boolean(),
  /** When the edge wrote this (ms, the edge's clock). */
  ts: z.number(),
});
export type EdgeInfo = z.infer<typeof EdgeInfoSchema>;

/** An edge as discovery returns it. */
export interface RankedEdge {
  id: string;
  url: string;
  region: string;
  connections: number;
  capacity: number;
  /** connections / capacity. */
  load: number;
}

/**
 * Never a draining edge. Edges with room (load < 1) before full ones; among those, the client's
 * region first; then the lowest load; ties by id (stable answers).
 */
export function rankEdges(edges: readonly EdgeInfo[], region: string | undefined, limit: number): RankedEdge[] {
  return edges
    .filter((e) => !e.draining)
    .map((e) => ({ id: e.id, url: e.url, region: e.region, connections: e.connections, capacity: e.capacity, load: e.connections / e.capacity }))
    .sort(
      (a, b) =>
        Number(a.load >= 1) - Number(b.load >= 1) ||
        Number(a.region !== region) - Number(b.region !== region) ||
        a.load - b.load ||
        (a.id < b.id ? -1 : a.id > b.id ? 1 : 0),
    )
    .slice(0, limit);
}

/** What an edge says about itself; read at every refresh. */
export interface EdgeSelf {
  id: string;
  url: string;
  region: string;
  capacity: number;
  connections(): number;
  draining(): boolean;
  /** Refresh only while this is true (the edge's readiness). */
  healthy(): Promise<boolean>;
}

export interface EdgeRegistration {
  /** Writes the entry now (e.g. draining: true at the start of a shutdown). */
  refresh(): Promise<void>;
  /** Stops refreshing and removes the entry. */
  close(): Promise<void>;
}

export interface EdgeRegistryOptions {
  js: JetStreamClient;
  jsm: JetStreamManager;
  /** `discovery.ttlSec`. */
  ttlSec: number;
  log: Logger;
  /** How long list() answers from memory (ms). Default 1000. */
  cacheMs?: number;
}

export class EdgeRegistry {
  readonly #o: EdgeRegistryOptions;
  readonly #stream = names.kvStream(names.edgesBucket);
  #cache: { at: number; edges: Promise<EdgeInfo[]> } | undefined;

  constructor(opts: EdgeRegistryOptions) {
    this.#o = opts;
  }

  /** Every live (unexpired) registration, draining ones included. */
  async list(): Promise<EdgeInfo[]> {
    const now = Date.now();
    if (this.#cache && now - this.#cache.at < (this.#o.cacheMs ?? 1000)) return this.#cache.edges;
    const edges = this.#read();
    this.#cache = { at: now, edges };
    edges.catch(() => {
      if (this.#cache?.edges === edges) this.#cache = undefined;
    });
    return edges;
  }

  async #read(): Promise<EdgeInfo[]> {
    const out: EdgeInfo[] = [];
    try {
      const it = await directBatch(this.#o.jsm, this.#stream, { multi_last: [names.kvStreamSubjects(names.edgesBucket)] });
      for await (const sm of it) {
        if (sm.header?.has("Nats-Marker-Reason") || sm.header?.has("KV-Operation")) continue; // expired or removed
        const parsed = EdgeInfoSchema.safeParse(decodeJsonOrUndefined(sm.data));
        if (parsed.success) out.push(parsed.data);
      }
    } catch (err) {
      if (err instanceof JetStreamError && (err as { code?: unknown }).code === 404) return out;
      throw new NatterError("UNAVAILABLE", "edge registry unavailable", { cause: err });
    }
    return out;
  }

  /** Registers `self` now and keeps it registered until close(). */
  async register(self: EdgeSelf): Promise<EdgeRegistration> {
    const { js, ttlSec, log } = this.#o;
    const subject = kvKeySubject(names.edgesBucket, edgeKey(self.id));
    let closed = false;
    let writing: Promise<void> = Promise.resolve();
    const write = async (): Promise<void> => {
      const info: EdgeInfo = {
        id: self.id,
        url: self.url,
        region: self.region,
        connections: self.connections(),
        capacity: self.capacity,
        draining: self.draining(),
        ts: Date.now(),
      };
      await js.publish(subject, encodeJson(info), { ttl: `${ttlSec}s`, timeout: 5000 });
    };
    const refresh = (): Promise<void> => (writing = writing.catch(() => undefined).then(() => (closed ? undefined : write())));
    await refresh();
    const every = (ttlSec * 1000) / 3;
    let unhealthy = false;
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    /** One refresh; resolves to when the next one is due (ms). */
    const tick = async (): Promise<number> => {
      const ok = await self.healthy().catch(() => false);
      if (!ok) {
        if (!unhealthy) log.warn({ edge: self.id }, "edge not ready: discovery registration not refreshed (it expires)");
        unhealthy = true;
        return every;
      }
      unhealthy = false;
      try {
        await refresh();
        return every;
      } catch (err) {
        log.warn({ err, edge: self.id, retryInMs: Math.min(RETRY_MS, every) }, "edge registration refresh failed");
        return Math.min(RETRY_MS, every);
      }
    };
    const schedule = (ms: number) => {
      if (stopped) return;
      timer = setTimeout(() => void tick().then(schedule), ms);
      timer.unref();
    };
    schedule(every);
    return {
      refresh,
      close: async () => {
        stopped = true;
        clearTimeout(timer);
        await writing.catch(() => undefined);
        closed = true;
        const h = headers();
        h.set("KV-Operation", "PURGE");
        h.set("Nats-Rollup", "sub");
        await js.publish(subject, undefined, { headers: h, ttl: `${EDGE_TOMBSTONE_TTL_S}s`, timeout: 5000 }).catch((err: unknown) => {
          log.warn({ err, edge: self.id }, "could not remove the discovery registration; it expires within the TTL");
        });
      },
    };
  }
}

/** How soon a failed refresh is tried again (ms; at most ttl/3). */
const RETRY_MS = 1000;

/** How long an edge's removal tombstone and expiry markers stay in the `edges` bucket (seconds). */
export const EDGE_TOMBSTONE_TTL_S = 60;

