// Revocation of a user's tokens. `natter revoke <user>` writes the user's key in the KV bucket
// `revocations`: `{ v: 1, notBefore, at }`, and every token of that user issued before `notBefore`
// (Unix seconds, `iat < notBefore`) is refused from then on. Edges read the key at every hello,
// token refresh and HTTP request, and learn of a new revocation live: a KV write is a message on
// the key's subject, `$KV.revocations.<user>`, which every edge also subscribes to with core NATS
// to close that user's sockets whose token is revoked (4401). Core NATS delivers to connected
// subscribers only: after a reconnect (or a slow-consumer drop) the edge reads the whole bucket
// again, so a revocation written meanwhile still closes its sockets. A deleted key
// (`nats kv del`) lifts the revocation.
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { MsgHdrs, NatsConnection } from "@nats-io/transport-node";
import { z } from "zod";
import { type Logger, NatterError } from "../core/index.ts";
import { decodeJson, encodeJson, isNotFound, names, revocationKeySubject, revocationsFilter, scanFiltered } from "../nats/index.ts";
import type { TokenClaims } from "./auth.ts";

const TIMEOUT_MS = 5000;
/** A catch-up reads the bucket in pages of this many keys. */
const SCAN_PAGE = 256;
const Revocation = z.object({ v: z.literal(1), notBefore: z.number().int().nonnegative(), at: z.number() });
type Revocation = z.infer<typeof Revocation>;

/** What sessions and routes ask of revocations. */
export interface RevocationCheck {
  /** UNAUTHENTICATED when `claims`' user revoked the tokens issued before it; UNAVAILABLE when the bucket cannot be read. */
  check(claims: TokenClaims): Promise<void>;
  /** The same, from what this edge learned live only (no I/O): for the moment a session takes the claims. */
  revokedNow(claims: TokenClaims): boolean;
}

/** A KV value's revocation, or undefined for a deleted key and for an unreadable value. */
function parse(data: Uint8Array, headers: MsgHdrs | undefined): Revocation | undefined {
  const op = headers?.get("KV-Operation") ?? "";
  if (op === "DEL" || op === "PURGE" || headers?.has("Nats-Marker-Reason")) return undefined;
  try {
    const r = Revocation.safeParse(decodeJson(data));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}

export class Revocations implements RevocationCheck {
  readonly #nc: NatsConnection;
  readonly #js: JetStreamClient;
  readonly #jsm: JetStreamManager;
  readonly #log: Logger;
  readonly #maxAgeSec: number;
  /** notBefore of revocations seen live on this edge, by user. */
  readonly #known = new Map<string, number>();

  constructor(deps: { nc: NatsConnection; js: JetStreamClient; jsm: JetStreamManager; log: Logger; maxTokenAgeSec: number }) {
    this.#nc = deps.nc;
    this.#js = deps.js;
    this.#jsm = deps.jsm;
    this.#log = deps.log;
    this.#maxAgeSec = deps.maxTokenAgeSec;
  }

  /** Tokens of `user` issued before this (Unix seconds) are refused; 0 when none are. */
  async notBefore(user: string): Promise<number> {
    let stored = 0;
    try {
      const sm = await this.#jsm.direct.getMessage(names.kvStream(names.revocationsBucket), { last_by_subj: revocationKeySubject(user) });
      if (sm !== null) stored = parse(sm.data, sm.header)?.notBefore ?? 0;
    } catch (err) {
      if (!isNotFound(err)) throw new NatterError("UNAVAILABLE", "the revocations bucket is unavailable", { cause: err });
    }
    return Math.max(stored, this.#known.get(user) ?? 0);
  }

  async check(claims: TokenClaims): Promise<void> {
    if (claims.iat < (await this.notBefore(claims.user)) || this.revokedNow(claims)) throw revoked();
  }

  revokedNow(claims: TokenClaims): boolean {
    return claims.iat < (this.#known.get(claims.user) ?? 0);
  }

  /** Revokes every token of `user` issued before `notBefore` (Unix seconds); edges close the sockets that use one. */
  async revoke(user: string, notBefore: number): Promise<void> {
    const value: Revocation = { v: 1, notBefore: Math.ceil(notBefore), at: Date.now() };
    try {
      await this.#js.publish(revocationKeySubject(user), encodeJson(value), { timeout: TIMEOUT_MS });
    } catch (err) {
      throw new NatterError("UNAVAILABLE", "could not write the revocation", { cause: err });
    }
  }

  /** Keeps a live revocation; drops those that no longer matter (every token they refuse is past its maximum age anyway). */
  #remember(user: string, notBefore: number): void {
    this.#known.set(user, notBefore);
    if (this.#known.size % 1000 !== 0) return;
    const oldest = Date.now() / 1000 - this.#maxAgeSec;
    for (const [u, nb] of this.#known) if (nb < oldest) this.#known.delete(u);
  }

  /**
   * Tells `onRevoked` of every revocation written from now on, as it is written (core NATS on the
   * bucket's subjects), and of every one in the bucket after a reconnect (all at once): users and
   * their notBefore. Returns the unsubscribe.
   */
  watch(onRevoked: (revoked: ReadonlyMap<string, number>) => void): () => void {
    const prefix = revocationsFilter().slice(0, -1);
    const learn = (values: ReadonlyMap<string, Revocation | undefined>) => {
      const revoked = new Map<string, number>();
      for (const [user, r] of values) {
        if (r === undefined) {
          this.#known.delete(user);
          continue;
        }
        this.#remember(user, r.notBefore);
        revoked.set(user, r.notBefore);
      }
      if (revoked.size > 0) onRevoked(revoked);
    };
    const sub = this.#nc.subscribe(revocationsFilter(), {
      callback: (err, msg) => {
        if (err) {
          this.#log.warn({ err }, "revocation subscription failed");
          return;
        }
        const user = msg.subject.slice(prefix.length);
        const r = parse(msg.data, msg.headers);
        if (r !== undefined) this.#log.info({ user, notBefore: r.notBefore }, "tokens revoked");
        learn(new Map([[user, r]]));
      },
    });
    let watching = true;
    void (async () => {
      for await (const s of this.#nc.status()) {
        if (!watching) return;
        if (s.type !== "reconnect" && s.type !== "slowConsumer") continue;
        try {
          // The last value of each key: a key rewritten during the scan is met twice.
          const latest = new Map<string, Revocation | undefined>();
          for await (const sm of scanFiltered(this.#jsm, names.kvStream(names.revocationsBucket), revocationsFilter(), { page: SCAN_PAGE, maxPages: 100_000 })) {
            latest.set(sm.subject.slice(prefix.length), parse(sm.data, sm.header));
          }
          learn(latest);
          this.#log.debug({ revocations: latest.size }, "revocations read again after a reconnect");
        } catch (err) {
          this.#log.warn({ err }, "could not read the revocations after a reconnect");
        }
      }
    })();
    return () => {
      watching = false;
      sub.unsubscribe();
    };
  }
}

export function revoked(): NatterError {
  return new NatterError("UNAUTHENTICATED", "the token was revoked: get a new one");
}
