// Typing signals: ephemeral, over core NATS only, never stored. The sender's edge publishes one
// signal to each other member's typing subject (`typing.<shard>.<user>`); every edge subscribes,
// once per user connected to it, to that user's subject and hands signals to the user's sessions.
// A member offline (no edge subscribed) simply misses it. Cost: one core publish per other member
// per signal; a device sends at most one per conversation every TYPING_INTERVAL_MS.
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { z } from "zod";
import type { Logger } from "../core/index.ts";
import { decodeJson, encodeJson, typingSubject, type Topology } from "../nats/index.ts";

const TypingSignalSchema = z.object({
  conv: z.string(),
  user: z.string(),
  ttlMs: z.number().int().positive(),
});
export type TypingSignal = z.infer<typeof TypingSignalSchema>;

type Listener = (signal: TypingSignal) => void;

export class TypingFeeds {
  readonly #nc: NatsConnection;
  readonly #topology: Topology;
  readonly #log: Logger;
  readonly #feeds = new Map<string, { sub: Subscription; listeners: Set<Listener> }>();

  constructor(nc: NatsConnection, topology: Topology, log: Logger) {
    this.#nc = nc;
    this.#topology = topology;
    this.#log = log;
  }

  /** Calls `listener` for each typing signal sent to `userId` until the returned detach is called. */
  attach(userId: string, listener: Listener): () => void {
    let feed = this.#feeds.get(userId);
    if (!feed) {
      const listeners = new Set<Listener>();
      const sub = this.#nc.subscribe(typingSubject(this.#topology, userId), {
        callback: (err, msg) => {
          if (err) {
            this.#log.debug({ err, userId }, "typing subscription error");
            return;
          }
          let signal: TypingSignal;
          try {
            const r = TypingSignalSchema.safeParse(decodeJson(msg.data));
            if (!r.success) return;
            signal = r.data;
          } catch {
            return;
          }
          for (const l of listeners) l(signal);
        },
      });
      feed = { sub, listeners };
      this.#feeds.set(userId, feed);
    }
    const f = feed;
    f.listeners.add(listener);
    return () => {
      f.listeners.delete(listener);
      if (f.listeners.size === 0 && this.#feeds.get(userId) === f) {
        this.#feeds.delete(userId);
        f.sub.unsubscribe();
      }
    };
  }

  /** Sends `signal` to each of `recipients`' connected devices. */
  publish(recipients: readonly string[], signal: TypingSignal): void {
    const data = encodeJson(signal);
    for (const r of recipients) this.#nc.publish(typingSubject(this.#topology, r), data);
  }
}
