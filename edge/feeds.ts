// Live delivery: one core NATS subscription per user connected to this edge (not one consumer per
// connection). The inbox stream republishes every stored item on the user's delivery subject with
// its sequence and the previous sequence of the same user, so each device sees a gap at once.
// Next to it, when presence is on, a subscription to the user's presence subject: contacts'
// presence changes (ephemeral, core NATS only), and the count of the user's own online devices
// (a `Natter-Devices` header, never passed to clients).
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import type { Logger } from "../core/index.ts";
import { DEVICES_HEADER, parsePresenceEntry, type PresenceEntry } from "../presence/index.ts";
import { deliverySubject, presenceSubject, type Topology } from "../nats/index.ts";
import { PREV_HEADER } from "../streams/index.ts";

export interface LiveItem {
  seq: number;
  /** Sequence of this user's previous inbox item (0 for the first). */
  prev: number;
  data: Uint8Array;
  /** The item's list of the user's previous items (its `Natter-Prev` header), read only for a gap fill. */
  chain: string | undefined;
  /** The device frame, encoded by the first session that delivers it and reused by the others. */
  frame?: Buffer;
}

type Listener = (item: LiveItem) => void;
type PresenceListener = (entry: PresenceEntry) => void;
type DevicesListener = (count: number) => void;

export class UserFeeds {
  readonly #nc: NatsConnection;
  readonly #topology: Topology;
  readonly #log: Logger;
  readonly #presence: boolean;
  readonly #feeds = new Map<
    string,
    { sub: Subscription; presenceSub: Subscription | undefined; listeners: Set<Listener>; presenceListeners: Set<PresenceListener>; devicesListeners: Set<DevicesListener> }
  >();

  constructor(nc: NatsConnection, topology: Topology, log: Logger, opts: { presence?: boolean } = {}) {
    this.#nc = nc;
    this.#topology = topology;
    this.#log = log;
    this.#presence = opts.presence ?? false;
  }

  /**
   * Calls `listener` for each live inbox item of `userId`, `onPresence` for each presence change
   * of its contacts, and `onDevices` with the count of its online devices whenever it changes,
   * until the returned detach is called.
   */
  attach(userId: string, listener: Listener, onPresence?: PresenceListener, onDevices?: DevicesListener): () => void {
    let feed = this.#feeds.get(userId);
    if (!feed) {
      const listeners = new Set<Listener>();
      const presenceListeners = new Set<PresenceListener>();
      const devicesListeners = new Set<DevicesListener>();
      const presenceSub = this.#presence
        ? this.#nc.subscribe(presenceSubject(this.#topology, userId), {
            callback: (err, msg) => {
              if (err) return;
              const devices = msg.headers?.get(DEVICES_HEADER);
              if (devices) {
                const n = Number(devices);
                if (Number.isSafeInteger(n) && n >= 0) for (const l of devicesListeners) l(n);
                return;
              }
              const entry = parsePresenceEntry(msg.data);
              if (entry) for (const l of presenceListeners) l(entry);
            },
          })
        : undefined;
      const sub = this.#nc.subscribe(deliverySubject(this.#topology, userId), {
        callback: (err, msg) => {
          if (err) {
            this.#log.warn({ err, userId }, "delivery subscription error");
            return;
          }
          const seq = Number(msg.headers?.get("Nats-Sequence"));
          const prev = Number(msg.headers?.get("Nats-Last-Sequence") ?? "0");
          if (!Number.isSafeInteger(seq) || seq <= 0 || !Number.isSafeInteger(prev)) {
            this.#log.warn({ userId, subject: msg.subject }, "delivery without sequence headers; ignored");
            return;
          }
          const item: LiveItem = { seq, prev, data: msg.data, chain: msg.headers?.get(PREV_HEADER) || undefined };
          for (const l of listeners) l(item);
        },
      });
      feed = { sub, presenceSub, listeners, presenceListeners, devicesListeners };
      this.#feeds.set(userId, feed);
    }
    const f = feed;
    f.listeners.add(listener);
    if (onPresence) f.presenceListeners.add(onPresence);
    if (onDevices) f.devicesListeners.add(onDevices);
    return () => {
      f.listeners.delete(listener);
      if (onPresence) f.presenceListeners.delete(onPresence);
      if (onDevices) f.devicesListeners.delete(onDevices);
      if (f.listeners.size === 0 && this.#feeds.get(userId) === f) {
        this.#feeds.delete(userId);
        f.sub.unsubscribe();
        f.presenceSub?.unsubscribe();
      }
    };
  }

  /** Resolves once NATS has processed every subscription made so far. */
  async flush(): Promise<void> {
    await this.#nc.flush();
  }

  get users(): number {
    return this.#feeds.size;
  }
}
