// PresenceStore on NATS JetStream KV (buckets made by presence/buckets.ts):
//   - `presence`: key `<user>.<device>`, history 1, each write with a per-key TTL (`Nats-TTL`);
//     the bucket keeps limit markers (`subject_delete_marker_ttl`), so when a key expires the
//     server itself writes a marker (`Nats-Marker-Reason: MaxAge`) that consumers see: offline
//     detection with no sweeper. A graceful leave is a PURGE (compare-and-set on the revision)
//     whose tombstone has the same TTL as markers, so neither piles up.
//   - `presence-users`: key `<user>`, history 1, the last published state of each user.
// Every write carries `{ v, start, ts }`; `start` tells the worker a key began (a transition)
// rather than being refreshed, so refreshes cost the worker one ack and nothing else.
import type { JetStreamClient, JetStreamManager, StoredMsg } from "@nats-io/jetstream";
import { headers, type NatsConnection } from "@nats-io/transport-node";
import { z } from "zod";
import { checkId, type Logger, NatterError } from "../core/index.ts";
import { ConsumerWorker, decodeJson, directBatch, encodeJson, isNotFound, isWrongLastSequence, kvKeySubject, kvOperation, names, presenceDeviceKey, presenceDevicesFilter, presenceKeyParts, scanFiltered, type SourceMsg } from "../nats/index.ts";
import type { ChangeFeed, DeviceChange, PresenceStore, Touch, UserPresence, UserRecord } from "./store.ts";

const TIMEOUT_MS = 5000;
/** Device keys read per direct-get batch when listing a user's devices, and the bound on pages. */
const PAGE = 1000;
const MAX_PAGES = 10;
/** Attempts of a start write racing other writers of the same device key. */
const START_ATTEMPTS = 5;
/** Device changes handled at once (of different users). */
const MAX_IN_FLIGHT = 64;

const DeviceValue = z.object({ v: z.literal(1), start: z.boolean(), ts: z.number() });
const UserValue = z.object({
  v: z.literal(1),
  online: z.boolean(),
  since: z.number().optional(),
  lastSeen: z.number().optional(),
});

export interface NatsKvPresenceOptions {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  /** Device key TTL (seconds): `presence.ttlSec`. */
  ttlSec: number;
  /** How long a leave's tombstone stays (seconds): `presence.markerTtlSec`, like the bucket's markers. */
  markerTtlSec: number;
  log: Logger;
}




function unavailable(err: unknown): NatterError {
  return err instanceof NatterError ? err : new NatterError("UNAVAILABLE", "presence store unavailable", { cause: err });
}

export class NatsKvPresence implements PresenceStore {
  readonly ttlMs: number;
  readonly #nc: NatsConnection;
  readonly #js: JetStreamClient;
  readonly #jsm: JetStreamManager;
  readonly #ttl: string;
  readonly #markerTtl: string;
  readonly #log: Logger;
  readonly #devicesStream = names.kvStream(names.presenceBucket);
  readonly #usersStream = names.kvStream(names.presenceUsersBucket);
  readonly #keyPrefix = kvKeySubject(names.presenceBucket, "");

  constructor(opts: NatsKvPresenceOptions) {
    this.#nc = opts.nc;
    this.#js = opts.js;
    this.#jsm = opts.jsm;
    this.ttlMs = opts.ttlSec * 1000;
    this.#ttl = `${opts.ttlSec}s`;
    this.#markerTtl = `${opts.markerTtlSec}s`;
    this.#log = opts.log;
  }

  async #write(subject: string, start: boolean, expect: number, ttl: string): Promise<number> {
    const ack = await this.#js.publish(subject, encodeJson({ v: 1, start, ts: Date.now() }), {
      ttl,
      expect: { lastSubjectSequence: expect },
      timeout: TIMEOUT_MS,
    });
    return ack.seq;
  }

  async touch(user: string, device: string, prev?: number, ttlMs?: number): Promise<Touch> {
    const subject = kvKeySubject(names.presenceBucket, presenceDeviceKey(user, device));
    // Per-message TTLs count in whole seconds (a sub-second part is dropped by the server).
    const ttl = ttlMs === undefined ? this.#ttl : `${Math.max(1, Math.ceil(ttlMs / 1000))}s`;
    try {
      if (prev !== undefined) {
        try {
          return { revision: await this.#write(subject, false, prev, ttl), started: false };
        } catch (err) {
          if (!isWrongLastSequence(err)) throw err;
          // Expired (a marker took its place), removed, or written by another edge: start over.
        }
      }
      for (let attempt = 0; attempt < START_ATTEMPTS; attempt++) {
        const last = await this.#last(this.#devicesStream, subject);
        const live = last !== null && kvOperation(last.header) === "PUT";
        try {
          return { revision: await this.#write(subject, !live, last?.seq ?? 0, ttl), started: !live };
        } catch (err) {
          if (!isWrongLastSequence(err)) throw err;
        }
      }
    } catch (err) {
      throw unavailable(err);
    }
    throw new NatterError("CONFLICT", "the device's presence key kept changing");
  }

  async leave(user: string, device: string, revision: number): Promise<boolean> {
    const subject = kvKeySubject(names.presenceBucket, presenceDeviceKey(user, device));
    const h = headers();
    h.set("KV-Operation", "PURGE");
    h.set("Nats-Rollup", "sub");
    try {
      await this.#js.publish(subject, undefined, { headers: h, ttl: this.#markerTtl, expect: { lastSubjectSequence: revision }, timeout: TIMEOUT_MS });
      return true;
    } catch (err) {
      if (isWrongLastSequence(err)) return false;
      throw unavailable(err);
    }
  }

  async onlineDevices(user: string): Promise<string[]> {
    const filter = presenceDevicesFilter(user);
    const prefix = filter.slice(0, -1);
    const out = new Set<string>();
    try {
      for await (const sm of scanFiltered(this.#jsm, this.#devicesStream, filter, { page: PAGE, maxPages: MAX_PAGES })) {
        // A key rewritten while this pages ahead shows up again: count each key once.
        if (kvOperation(sm.header) === "PUT" && sm.subject.startsWith(prefix)) out.add(sm.subject.slice(prefix.length));
      }
    } catch (err) {
      throw unavailable(err);
    }
    return [...out];
  }

  async changes(handler: (change: DeviceChange) => Promise<void>): Promise<ChangeFeed> {
    // Changes of one user are handled one after another, in stream order (the worker's key);
    // different users' side by side, so a killed edge's thousands of expiries are not handled in
    // series.
    const worker = new ConsumerWorker<DeviceChange>(
      {
        name: "presence",
        sources: [{ stream: this.#devicesStream, consumer: names.presenceConsumer }],
        decode: (m) => {
          let change: DeviceChange | null;
          try {
            change = this.#changeOf(m);
          } catch (err) {
            this.#log.warn({ err, subject: m.subject, seq: m.seq }, "unreadable presence entry skipped");
            return { skip: true };
          }
          return change === null ? { skip: true } : { value: change }; // null: a refresh
        },
        key: (c) => c.user,
        handle: async (batch) => {
          for (const d of batch) await handler(d.value);
        },
        failed: () => ({ kind: "retry", delayMs: 1000 }),
        maxBatch: 16,
        maxInFlight: MAX_IN_FLIGHT,
        pullAhead: 256,
      },
      { nc: this.#nc, log: this.#log },
    );
    try {
      await worker.start();
    } catch (err) {
      throw unavailable(err);
    }
    return { stop: () => worker.stop() };
  }

  /** The change a consumed message means, or null for a refresh of a live key. */
  #changeOf(m: SourceMsg): DeviceChange | null {
    const { user, device } = presenceKeyParts(m.subject.slice(this.#keyPrefix.length));
    const at = Math.floor(m.info.timestampNanos / 1e6);
    if (kvOperation(m.headers) !== "PUT") return { user, device, online: false, at };
    const value = DeviceValue.parse(decodeJson(m.data));
    return value.start ? { user, device, online: true, at } : null;
  }

  async users(users: readonly string[]): Promise<Map<string, UserRecord>> {
    const out = new Map<string, UserRecord>();
    const unique = [...new Set(users.map((u) => checkId("user id", u)))];
    try {
      for (let i = 0; i < unique.length; i += PAGE) {
        const bySubject = new Map(unique.slice(i, i + PAGE).map((u) => [kvKeySubject(names.presenceUsersBucket, u), u]));
        try {
          const it = await directBatch(this.#jsm, this.#usersStream, { multi_last: [...bySubject.keys()] });
          for await (const sm of it) {
            const user = bySubject.get(sm.subject);
            if (user === undefined || kvOperation(sm.header) !== "PUT") continue;
            const v = UserValue.parse(decodeJson(sm.data));
            out.set(user, { state: { online: v.online, since: v.since, lastSeen: v.lastSeen }, revision: sm.seq });
          }
        } catch (err) {
          if (!isNotFound(err)) throw err;
        }
      }
    } catch (err) {
      throw unavailable(err);
    }
    return out;
  }

  async setUser(user: string, state: UserPresence, prev: number): Promise<number | null> {
    const subject = kvKeySubject(names.presenceUsersBucket, checkId("user id", user));
    const value = { v: 1, online: state.online, since: state.since, lastSeen: state.lastSeen };
    try {
      const ack = await this.#js.publish(subject, encodeJson(value), { expect: { lastSubjectSequence: prev }, timeout: TIMEOUT_MS });
      return ack.seq;
    } catch (err) {
      if (isWrongLastSequence(err)) return null;
      throw unavailable(err);
    }
  }

  async #last(stream: string, subject: string): Promise<StoredMsg | null> {
    try {
      return await this.#jsm.direct.getMessage(stream, { last_by_subj: subject });
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }
}
