// Conversation events still in JetStream, for the seam between the store and the stream: the
// newest events of a conversation may not be in the store yet (the persister acks after writing,
// so it trails the stream by its lag). History merges these into the store's page.
import type { JetStreamManager, StoredMsg } from "@nats-io/jetstream";
import { NatterError } from "../core/index.ts";
import { ConversationEventSchema, type HistoryEvent } from "./messages.ts";
import { conversationStreamOf, conversationSubject, decodeJsonOrUndefined, directBatch, isNotFound, membershipSubject, type Topology } from "../nats/index.ts";

export interface StreamEvent {
  id: number;
  event: HistoryEvent;
}

export interface StreamEventsPage {
  /** Oldest first. */
  events: StreamEvent[];
  /**
   * Every event of the conversation with afterId < id ≤ frontier is in `events`. When a subject
   * had more than `max` events, the frontier stops at the last one read: read again from there.
   */
  frontier: number;
}

/**
 * Events of `convId` with afterId < id < beforeId, oldest first, reading at most `max` events per
 * subject (messages and membership changes are two subjects of the same stream).
 */
export async function streamEvents(
  jsm: JetStreamManager,
  t: Topology,
  convId: string,
  afterId: number,
  beforeId: number,
  max: number,
): Promise<StreamEventsPage> {
  const stream = conversationStreamOf(t, convId);
  const out: StreamEvent[] = [];
  let frontier = beforeId - 1;
  for (const subject of [conversationSubject(t, convId), membershipSubject(t, convId)]) {
    let it: AsyncIterable<StoredMsg>;
    try {
      it = await directBatch(jsm, stream, { seq: afterId + 1, next_by_subj: subject, batch: max });
    } catch (err) {
      if (isNotFound(err)) continue;
      throw new NatterError("UNAVAILABLE", "conversation stream unavailable", { cause: err });
    }
    let read = 0;
    let last = afterId;
    try {
      for await (const sm of it) {
        if (sm.seq >= beforeId) break;
        read++;
        last = sm.seq;
        const parsed = ConversationEventSchema.safeParse(decodeJsonOrUndefined(sm.data));
        // Receipts live on their own subjects and are never history; skipped should one ever match.
        if (parsed.success && parsed.data.type !== "receipt") out.push({ id: sm.seq, event: parsed.data });
      }
    } catch (err) {
      if (isNotFound(err)) continue;
      throw new NatterError("UNAVAILABLE", "conversation stream unavailable", { cause: err });
    }
    if (read >= max) frontier = Math.min(frontier, last);
  }
  return { events: out.filter((e) => e.id <= frontier).sort((a, b) => a.id - b.id), frontier };
}


