// The push dispatcher: a durable consumer (`push`) on each conversation stream, filtered to
// messages. For each message it takes the members as of that message (the membership event in
// force at its sequence, so a member removed before it is never a recipient), leaves out the
// sender, keeps those with a push subscription, asks presence which of them are online, and
// queues one push request per offline recipient in PUSH_<n> with msg id (stream, seq, user): a
// redelivery queues nothing twice. The message is acked only after every request is stored.
import type { ConsumerMessages, JetStreamClient, JsMsg } from "@nats-io/jetstream";
import { NatterError } from "../core/errors.ts";
import type { Logger } from "../core/logger.ts";
import type { Metrics } from "../core/metrics.ts";
import { decodeJsonOrUndefined, encodeJson, names, pushMsgId, pushSubject, type Topology } from "../nats/index.ts";
import { ConversationEventSchema, MembershipTracker, type ConversationDirectory } from "../streams/index.ts";
import { renderNotification, type PushContent } from "./content.ts";
import type { PushRequest } from "./request.ts";
import type { PushSubscriptions } from "./subscriptions.ts";

export interface PushDispatcherDeps {
  js: JetStreamClient;
  directory: ConversationDirectory;
  subscriptions: PushSubscriptions;
  /** Those of `users` with an online device now. */
  online(users: readonly string[]): Promise<Set<string>>;
  topology: Topology;
  content: PushContent;
  previewChars: number;
  /** Messages older than this are not pushed (seconds). */
  maxAgeSec: number;
  log: Logger;
  metrics?: Metrics | undefined;
  maxInFlight?: number;
}


export class PushDispatcher {
  readonly #deps: PushDispatcherDeps;
  readonly #subs: ConsumerMessages[] = [];
  readonly #loops: Promise<void>[] = [];
  readonly #inFlight = new Set<Promise<void>>();
  /** Push requests queued (tests, logs). */
  queued = 0;

  readonly #tracker: MembershipTracker;

  constructor(deps: PushDispatcherDeps) {
    this.#deps = deps;
    this.#tracker = new MembershipTracker(deps.directory);
  }

  async start(): Promise<void> {
    const { js, topology } = this.#deps;
    for (let shard = 0; shard < topology.conversationShards; shard++) {
      const consumer = await js.consumers.get(names.conversationStream(shard), names.pushConsumer);
      const messages = await consumer.consume({ max_messages: 256 });
      this.#subs.push(messages);
      this.#loops.push(this.#run(messages));
    }
  }

  async #run(messages: ConsumerMessages): Promise<void> {
    const max = this.#deps.maxInFlight ?? 64;
    for await (const m of messages) {
      // Order does not matter here (each request stands alone): up to `max` at once.
      while (this.#inFlight.size >= max) await Promise.race(this.#inFlight);
      const work: Promise<void> = this.#dispatch(m)
        .then(() => m.ack())
        .catch((err: unknown) => this.#failed(m, err))
        .finally(() => this.#inFlight.delete(work));
      this.#inFlight.add(work);
    }
  }

  /** The push requests of one conversation message. */
  async requestsOf(m: JsMsg): Promise<PushRequest[]> {
    const { subscriptions, log } = this.#deps;
    // Synchronously, in delivery order (before any await): the membership tracker relies on it.
    this.#tracker.observe(m.info.deliverySequence);
    const parsed = ConversationEventSchema.safeParse(decodeJsonOrUndefined(m.data));
    if (parsed.success && parsed.data.type === "members") {
      // The consumer sees membership changes too, so members are known in stream order.
      if (!m.redelivered) this.#tracker.remember(parsed.data.conv, parsed.data.members, m.seq);
      return [];
    }
    if (!parsed.success || parsed.data.type !== "msg") {
      // Not a message (the filter lets only message subjects through), or unreadable: the
      // fan-out dead-letters unreadable events; nothing to push.
      log.warn({ stream: m.info.stream, seq: m.seq }, "push: not a readable message; skipped");
      return [];
    }
    const msg = parsed.data;
    if (Date.now() - msg.ts > this.#deps.maxAgeSec * 1000) return [];
    const members = await this.#tracker.membersAt(msg.conv, m.seq, m.redelivered);
    if (!members) {
      log.warn({ stream: m.info.stream, seq: m.seq, conv: msg.conv }, "push: no membership at this message; skipped");
      return [];
    }
    const recipients = members.filter((u) => u !== msg.from);
    if (recipients.length === 0) return [];
    const subscribed = [...(await subscriptions.usersWithSubscriptions(recipients))];
    if (subscribed.length === 0) return [];
    const online = await this.#deps.online(subscribed);
    const notification = renderNotification(
      { conv: msg.conv, id: m.seq, from: msg.from, text: msg.text, ts: msg.ts, images: msg.images?.length },
      this.#deps.content,
      this.#deps.previewChars,
    );
    return subscribed
      .filter((u) => !online.has(u))
      .map((user) => ({ v: 1, user, conv: msg.conv, stream: m.info.stream, seq: m.seq, ts: msg.ts, notification }));
  }

  async #dispatch(m: JsMsg): Promise<void> {
    const requests = await this.requestsOf(m);
    const { js, topology } = this.#deps;
    await Promise.all(
      requests.map((r) => js.publish(pushSubject(topology, r.user), encodeJson(r), { msgID: pushMsgId(r.stream, r.seq, r.user), timeout: 10_000 })),
    );
    this.queued += requests.length;
    this.#deps.metrics?.pushQueued.inc(requests.length);
  }

  #failed(m: JsMsg, err: unknown): void {
    // Only NATS trouble gets here (the directory, presence, the push stream): retried until it works.
    const delay = Math.min(30_000, 250 * 2 ** Math.min(m.info.deliveryCount, 7));
    const level = err instanceof NatterError && err.temporary ? "warn" : "error";
    this.#deps.log[level]({ err, stream: m.info.stream, seq: m.seq, deliveries: m.info.deliveryCount, retryInMs: delay }, "push dispatch failed; will retry");
    m.nak(delay);
  }

  /** Stops pulling, lets in-flight messages finish (acked or nak'd). */
  async stop(): Promise<void> {
    for (const s of this.#subs) s.stop();
    await Promise.allSettled(this.#loops);
    await Promise.allSettled([...this.#inFlight]);
  }
}
