// The push decision: for each message the fan-out stored (streams/fanout.ts hands them over with
// the members as of the message, so a member removed before it is never a recipient), leave out
// the sender, keep those with a push subscription, ask presence which of them are online, and
// queue one push request per offline recipient in PUSH_<n> with msg id (stream, seq, user): a
// repeat queues nothing twice. It runs inside the fan-out's pass over the conversation stream (no
// consumer of its own): the fan-out acks a message only after its requests are stored.
import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger, Metrics } from "../core/index.ts";
import { encodeJson, JetStreamRequests, pushMsgId, pushSubject, type Topology } from "../nats/index.ts";
import type { FannedOutMessage } from "../streams/index.ts";
import { renderNotification, type PushContent } from "./content.ts";
import type { PushRequest } from "./request.ts";
import type { PushSubscriptions } from "./subscriptions.ts";

export interface PushDispatcherDeps {
  nc: NatsConnection;
  subscriptions: Pick<PushSubscriptions, "usersWithSubscriptions">;
  /** Those of `users` with an online device now. */
  online(users: readonly string[]): Promise<Set<string>>;
  topology: Topology;
  content: PushContent;
  previewChars: number;
  /** Messages older than this are not pushed (seconds). */
  maxAgeSec: number;
  log: Logger;
  metrics?: Metrics | undefined;
}

export class PushDispatcher {
  readonly #deps: PushDispatcherDeps;
  readonly #requests: JetStreamRequests;
  /** Push requests queued (tests, logs). */
  queued = 0;

  constructor(deps: PushDispatcherDeps) {
    this.#deps = deps;
    this.#requests = new JetStreamRequests(deps.nc);
  }

  /** The push requests of one stored message. */
  async requestsOf(m: FannedOutMessage): Promise<PushRequest[]> {
    const msg = m.message;
    if (Date.now() - msg.ts > this.#deps.maxAgeSec * 1000) return [];
    const recipients = m.members.filter((u) => u !== msg.from);
    if (recipients.length === 0) return [];
    const subscribed = [...(await this.#deps.subscriptions.usersWithSubscriptions(recipients))];
    if (subscribed.length === 0) return [];
    const online = await this.#deps.online(subscribed);
    const notification = renderNotification(
      { conv: msg.conv, id: m.seq, from: msg.from, text: msg.text, ts: msg.ts, images: msg.images?.length },
      this.#deps.content,
      this.#deps.previewChars,
    );
    return subscribed.filter((u) => !online.has(u)).map((user) => ({ v: 1, user, conv: msg.conv, stream: m.stream, seq: m.seq, ts: msg.ts, notification }));
  }

  /** Queues the push requests of `messages`; resolves once every one is stored. */
  async dispatch(messages: readonly FannedOutMessage[]): Promise<void> {
    const requests = (await Promise.all(messages.map((m) => this.requestsOf(m)))).flat();
    if (requests.length === 0) return;
    const { topology } = this.#deps;
    await Promise.all(requests.map((r) => this.#requests.publish(pushSubject(topology, r.user), encodeJson(r), { msgID: pushMsgId(r.stream, r.seq, r.user) })));
    this.queued += requests.length;
    this.#deps.metrics?.pushQueued.inc(requests.length);
  }

  close(): void {
    this.#requests.close();
  }
}
