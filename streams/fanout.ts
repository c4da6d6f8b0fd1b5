// The fan-out: a durable consumer on each conversation stream copies every message into the
// inbox of every member (the per-recipient sync queue). A conversation message is acked only
// after every copy is acked by JetStream; copies carry a msg id of (stream, seq, user), so a
// redelivery after a crash stores nothing twice. Beside the copies it keeps each user's list of
// conversations and read state (the user-convs index) from membership and receipt events.
//
// Ordering: copies are published in stream order on one connection, so each inbox receives a
// conversation's messages in the conversation's order. Up to `maxInFlight` messages are in
// flight at once (FACTS: ≤ 64 keeps latency low at the same throughput).
import type { ConsumerMessages, JetStreamClient, JsMsg } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { AckedPublisher, deadLetter, decodeJsonOrUndefined, encodeJson, fanoutMsgId, inboxSubject, names, type Topology } from "../nats/index.ts";
import { MembershipTracker } from "./membership-tracker.ts";
import { NatterError } from "../core/errors.ts";
import type { Logger } from "../core/logger.ts";
import type { Metrics } from "../core/metrics.ts";
import type { ConversationDirectory } from "./conversations.ts";
import type { ConversationIndex, IndexUpdate } from "./conversation-index.ts";
import { ConversationEventSchema, type InboxEntry } from "./messages.ts";
import { Semaphore } from "../core/semaphore.ts";

export interface FanoutDeps {
  js: JetStreamClient;
  /** When given, inbox copies go through a lean acked publisher on this connection (see acked-publisher.ts). */
  nc?: NatsConnection | undefined;
  directory: ConversationDirectory;
  topology: Topology;
  log: Logger;
  metrics?: Metrics | undefined;
  /** Each user's conversations and read state (user-convs), kept from membership and receipt events. */
  index?: ConversationIndex | undefined;
  maxInFlight?: number;
  /** Deliveries after which a message for an unknown conversation is dead-lettered. */
  maxAttempts?: number;
}



export class FanoutWorker {
  readonly #deps: FanoutDeps;
  readonly #subs: ConsumerMessages[] = [];
  readonly #loops: Promise<void>[] = [];
  readonly #inFlight = new Set<Promise<void>>();
  delivered = 0;

  readonly #publisher: AckedPublisher | undefined;
  readonly #tracker: MembershipTracker;

  constructor(deps: FanoutDeps) {
    this.#deps = deps;
    this.#publisher = deps.nc ? new AckedPublisher(deps.nc) : undefined;
    this.#tracker = new MembershipTracker(deps.directory);
  }

  #publishCopy(c: { subject: string; msgID: string; data: Uint8Array }): Promise<unknown> {
    return this.#publisher ? this.#publisher.publish(c.subject, c.data, c.msgID) : this.#deps.js.publish(c.subject, c.data, { msgID: c.msgID, timeout: 10_000 });
  }

  async start(): Promise<void> {
    const { js, topology } = this.#deps;
    for (let shard = 0; shard < topology.conversationShards; shard++) {
      const consumer = await js.consumers.get(names.conversationStream(shard), names.fanoutConsumer);
      const messages = await consumer.consume({ max_messages: 512 });
      this.#subs.push(messages);
      this.#loops.push(this.#run(messages));
    }
  }

  async #run(messages: ConsumerMessages): Promise<void> {
    const sem = new Semaphore(this.#deps.maxInFlight ?? 64);
    for await (const m of messages) {
      await sem.acquire();
      let work: Promise<void>;
      try {
        // Resolve members before issuing publishes, so publishes leave in stream order.
        const { copies, index } = await this.#copiesOf(m);
        work = this.#publish(m, copies, index);
      } catch (err) {
        work = Promise.reject(err);
      }
      const tracked: Promise<void> = work
        .then(() => m.ack())
        .catch((err: unknown) => this.#failed(m, err))
        .finally(() => {
          sem.release();
          this.#inFlight.delete(tracked);
        });
      this.#inFlight.add(tracked);
    }
  }

  async #copiesOf(m: JsMsg): Promise<{ copies: { subject: string; msgID: string; data: Uint8Array }[]; index: IndexUpdate[] }> {
    this.#tracker.observe(m.info.deliverySequence);
    const parsed = ConversationEventSchema.safeParse(decodeJsonOrUndefined(m.data));
    if (!parsed.success) throw new NatterError("BAD_FRAME", `unreadable event at ${m.info.stream}#${m.seq}`);
    const ev = parsed.data;
    // A redelivery is out of stream order: read the membership as of its sequence.
    const exact = m.redelivered;
    let recipients: string[];
    const index: IndexUpdate[] = [];
    if (ev.type === "members") {
      // Everyone before and after the change hears of it (a removed member learns of the removal).
      const before = (await this.#tracker.membersAt(ev.conv, m.seq - 1, exact)) ?? [];
      recipients = [...new Set([...before, ...ev.members])];
      if (!exact) this.#tracker.remember(ev.conv, ev.members, m.seq);
      // Joined and left members' entries in the user-convs index.
      for (const u of ev.members) if (!before.includes(u)) index.push({ user: u, conv: ev.conv, membership: { member: true, at: m.seq } });
      for (const u of before) if (!ev.members.includes(u)) index.push({ user: u, conv: ev.conv, membership: { member: false, at: m.seq } });
    } else {
      const members = await this.#tracker.membersAt(ev.conv, m.seq, exact);
      if (!members) throw new NatterError("CONVERSATION_NOT_FOUND", `conversation ${ev.conv} of ${m.info.stream}#${m.seq}`);
      recipients = members;
      if (ev.type === "receipt") index.push({ user: ev.user, conv: ev.conv, receipt: { delivered: ev.delivered, read: ev.read } });
    }
    const entry: InboxEntry = { ...ev, id: m.seq };
    const data = encodeJson(entry);
    const copies = recipients.map((user) => ({
      subject: inboxSubject(this.#deps.topology, user),
      msgID: fanoutMsgId(m.info.stream, m.seq, user),
      data,
    }));
    return { copies, index };
  }

  async #publish(m: JsMsg, copies: { subject: string; msgID: string; data: Uint8Array }[], index: IndexUpdate[]): Promise<void> {
    // Index writes merge (order-free, idempotent), so they go beside the copies, not before them:
    // copies must leave in stream order. The message is acked only after both.
    const indexed = this.#deps.index;
    await Promise.all([
      ...copies.map((c) => this.#publishCopy(c)),
      ...(indexed ? index.map((u) => indexed.apply(u)) : []),
    ]);
    this.delivered += copies.length;
    this.#deps.metrics?.fanoutCopies.inc(copies.length);
  }

  async #failed(m: JsMsg, err: unknown): Promise<void> {
    const { log, metrics } = this.#deps;
    // Unreadable events never succeed; an unknown conversation is retried a few times first
    // (its creation may be in flight elsewhere). Everything else (NATS trouble) retries forever.
    const code = err instanceof NatterError ? err.code : undefined;
    const hopeless = code === "BAD_FRAME" || (code === "CONVERSATION_NOT_FOUND" && m.info.deliveryCount >= (this.#deps.maxAttempts ?? 5));
    if (hopeless) {
      try {
        await deadLetter(this.#deps.js, m, "fanout", (err as Error).message);
        metrics?.deadLetters.inc({ worker: "fanout" });
        log.error({ stream: m.info.stream, seq: m.seq, reason: (err as Error).message }, "message dead-lettered");
        return;
      } catch (dlqErr) {
        log.warn({ err: dlqErr }, "could not dead-letter; will retry");
      }
    }
    metrics?.fanoutFailures.inc();
    const delay = Math.min(30_000, 250 * 2 ** Math.min(m.info.deliveryCount, 7));
    log.warn({ err, stream: m.info.stream, seq: m.seq, deliveries: m.info.deliveryCount, retryInMs: delay }, "fan-out failed; will retry");
    m.nak(delay);
  }

  /** Stops pulling, lets in-flight messages finish (acked or nak'd). */
  async stop(): Promise<void> {
    for (const s of this.#subs) s.stop();
    await Promise.allSettled(this.#loops);
    await Promise.allSettled([...this.#inFlight]);
    this.#publisher?.close();
  }
}
