// The fan-out: a durable consumer on each conversation stream copies every event into the inbox
// of every member (the per-recipient sync queue), on the worker base (nats/worker.ts). Beside the
// copies it keeps each user's list of conversations and read state (the user-convs index) from
// membership and receipt events, and hands each message with its members to `beside` (the push
// decision, wired in by the runtime), so one pass over the stream does all three.
//
// Order: a conversation's events are handled one batch at a time, in stream order (the worker's
// key is the conversation), the copies of a batch published in order on one connection; the next
// batch of that conversation starts only once every copy of this one is stored. A batch that fails
// is retried in place, so a later message of the conversation never reaches an inbox before an
// earlier one, whatever failed. Copies carry a msg id of (stream, seq, user): a retry or a
// redelivery after a crash stores nothing twice. Events are acked only after every copy, index
// update and push request of their batch is stored.
import type { NatsConnection } from "@nats-io/transport-node";
import { type Logger, type Metrics, NatterError } from "../core/index.ts";
import { ConsumerWorker, decodeJsonOrUndefined, encodeJson, fanoutMsgId, inboxStreamOf, inboxSubject, JetStreamRequests, names, type Delivery, type SourceMsg, type Topology } from "../nats/index.ts";
import { InboxChains } from "./inbox-chain.ts";
import type { ConversationIndex, IndexUpdate } from "./conversation-index.ts";
import type { ConversationDirectory } from "./conversations.ts";
import { MembershipTracker } from "./membership-tracker.ts";
import { ConversationEventSchema, type ConversationEvent, type ConversationMessage, type InboxEntry } from "./messages.ts";

/** A message as the fan-out stored it, with the members it went to (for the push decision). */
export interface FannedOutMessage {
  stream: string;
  seq: number;
  message: ConversationMessage;
  /** Members as of the message (the sender included). */
  members: readonly string[];
}

export interface FanoutDeps {
  nc: NatsConnection;
  directory: ConversationDirectory;
  topology: Topology;
  log: Logger;
  metrics?: Metrics | undefined;
  /** Each user's conversations and read state (user-convs), kept from membership and receipt events. */
  index?: ConversationIndex | undefined;
  /** Runs for the messages of a batch beside their copies; the batch is acked after both are done. */
  beside?: ((messages: readonly FannedOutMessage[]) => Promise<void>) | undefined;
  /** The consumers' ack_wait (ms). */
  ackWaitMs?: number | undefined;
  /** Conversations handled at once. */
  maxInFlight?: number;
  /** Events of one conversation handled together. */
  maxBatch?: number;
  /** Deliveries after which an event of an unknown conversation is dead-lettered. */
  maxAttempts?: number;
}

interface Event {
  ev: ConversationEvent;
  /** Consumer delivery sequence and whether this is a redelivery, read as it arrived. */
  exact: boolean;
}

export class FanoutWorker {
  readonly #deps: FanoutDeps;
  readonly #requests: JetStreamRequests;
  readonly #chains: InboxChains;
  readonly #tracker: MembershipTracker;
  readonly #worker: ConsumerWorker<Event>;
  /** Inbox copies stored (tests, logs). */
  copies = 0;

  constructor(deps: FanoutDeps) {
    this.#deps = deps;
    this.#requests = new JetStreamRequests(deps.nc);
    this.#chains = new InboxChains(this.#requests);
    this.#tracker = new MembershipTracker(deps.directory);
    const sources = Array.from({ length: deps.topology.conversationShards }, (_, shard) => ({ stream: names.conversationStream(shard), consumer: names.fanoutConsumer }));
    this.#worker = new ConsumerWorker<Event>(
      {
        name: "fanout",
        sources,
        decode: (m) => this.#decode(m),
        key: (e) => e.ev.conv,
        handle: (batch) => this.#handle(batch),
        failed: (err, batch) => {
          // An unknown conversation may be one whose creation is still in flight elsewhere: a few
          // tries, then dead-lettered. Anything else is NATS trouble: retried until it works.
          const unknown = err instanceof NatterError && err.code === "CONVERSATION_NOT_FOUND";
          if (unknown && Math.max(...batch.map((d) => d.attempts)) >= (deps.maxAttempts ?? 5)) return { kind: "dead", reason: err.message };
          deps.metrics?.fanoutFailures.inc();
          return { kind: "retry" };
        },
        resetOnStart: true,
        maxBatch: deps.maxBatch ?? 64,
        maxInFlight: deps.maxInFlight ?? 256,
        pullAhead: 1024,
      },
      { nc: deps.nc, log: deps.log, metrics: deps.metrics, ackWaitMs: deps.ackWaitMs },
    );
  }

  #decode(m: SourceMsg): { value: Event } | { unreadable: string } {
    // In arrival order, synchronously: the tracker drops what it knows when another process took
    // some of this consumer's deliveries.
    this.#tracker.observe(m.info.deliverySequence);
    const parsed = ConversationEventSchema.safeParse(decodeJsonOrUndefined(m.data));
    if (!parsed.success) return { unreadable: `unreadable: not a natter conversation event (${m.info.stream}#${m.seq})` };
    return { value: { ev: parsed.data, exact: m.redelivered } };
  }

  async #handle(batch: readonly Delivery<Event>[]): Promise<void> {
    const copies: { stream: string; subject: string; msgID: string; data: Uint8Array }[] = [];
    const index: IndexUpdate[] = [];
    const messages: FannedOutMessage[] = [];
    for (const d of batch) {
      const { ev, exact } = d.value;
      let recipients: string[];
      if (ev.type === "members") {
        // Everyone before and after the change hears of it (a removed member learns of the removal).
        const before = (await this.#tracker.membersAt(ev.conv, d.seq - 1, exact)) ?? [];
        recipients = [...new Set([...before, ...ev.members])];
        this.#tracker.remember(ev.conv, ev.members, d.seq);
        for (const u of ev.members) if (!before.includes(u)) index.push({ user: u, conv: ev.conv, membership: { member: true, at: d.seq } });
        for (const u of before) if (!ev.members.includes(u)) index.push({ user: u, conv: ev.conv, membership: { member: false, at: d.seq } });
      } else {
        const members = await this.#tracker.membersAt(ev.conv, d.seq, exact);
        if (!members) throw new NatterError("CONVERSATION_NOT_FOUND", `conversation ${ev.conv} of ${d.stream}#${d.seq}`);
        recipients = members;
        if (ev.type === "receipt") index.push({ user: ev.user, conv: ev.conv, receipt: { delivered: ev.delivered, read: ev.read } });
        else messages.push({ stream: d.stream, seq: d.seq, message: ev, members });
      }
      const entry: InboxEntry = { ...ev, id: d.seq };
      const data = encodeJson(entry);
      for (const user of recipients) copies.push({ stream: inboxStreamOf(this.#deps.topology, user), subject: inboxSubject(this.#deps.topology, user), msgID: fanoutMsgId(d.stream, d.seq, user), data });
    }
    // Copies leave in stream order on one connection (this loop is synchronous). Index writes
    // merge (order-free, idempotent) and push requests stand alone, so they go beside them.
    const { index: indexed, beside } = this.#deps;
    await Promise.all([
      // Appended to each user's chain in the order of this loop: one user's copies one at a time.
      ...copies.map((c) => this.#chains.append(c.stream, c.subject, c.data, c.msgID)),
      ...(indexed ? index.map((u) => indexed.apply(u)) : []),
      ...(beside && messages.length > 0 ? [beside(messages)] : []),
    ]);
    this.copies += copies.length;
    this.#deps.metrics?.fanoutCopies.inc(copies.length);
  }

  async start(): Promise<void> {
    await this.#worker.start();
  }

  /** Stops pulling, lets running batches finish (acked or retried), hands the rest back. */
  async stop(): Promise<void> {
    await this.#worker.stop();
    this.#requests.close();
  }
}
