// Membership in force at each event of a conversation stream, for a worker that reads the stream
// in order (fan-out, push dispatch): the last membership event it saw for the conversation, so
// most events cost no lookup. Exact only while this worker sees every delivery of its consumer in
// order; `observe` drops everything when a delivery sequence is skipped (another process took
// some), and redeliveries (out of order) read the membership as of their sequence instead.
import type { ConversationDirectory } from "./conversations.ts";

const MAX_CONVERSATIONS = 100_000;

export class MembershipTracker {
  readonly #directory: ConversationDirectory;
  readonly #members = new Map<string, { members: string[]; seq: number }>();
  #lastDelivery = 0;

  constructor(directory: ConversationDirectory) {
    this.#directory = directory;
  }

  /** Call with each delivery's consumer delivery sequence, in the order the loop receives them. */
  observe(deliverySequence: number): void {
    if (deliverySequence !== this.#lastDelivery + 1) this.#members.clear();
    this.#lastDelivery = deliverySequence;
  }

  /** A membership event at `seq` (call synchronously in stream order, before any await). */
  remember(conv: string, members: string[], seq: number): void {
    const known = this.#members.get(conv);
    if (known && known.seq > seq) return;
    this.#members.delete(conv);
    this.#members.set(conv, { members, seq });
    if (this.#members.size > MAX_CONVERSATIONS) this.#members.delete(this.#members.keys().next().value!);
  }

  /** Members as of stream sequence `seq`; `exact` (a redelivery) always asks the stream. */
  async membersAt(conv: string, seq: number, exact: boolean): Promise<string[] | null> {
    if (seq <= 0) return null; // before the stream's first message (up_to_seq 0 would mean "no limit")
    const known = exact ? undefined : this.#members.get(conv);
    if (known && known.seq < seq) return known.members;
    const c = await this.#directory.getAsOf(conv, seq);
    if (c && !exact) this.remember(conv, c.members, c.revision);
    return c?.members ?? null;
  }
}
