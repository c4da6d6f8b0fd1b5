// Conversation events still in JetStream, for the seam between the store and the stream: the
// newest events of a conversation may not be in the store yet (the persister acks after writing,
// so it trails the stream by its lag). History merges these into the store's page.
import type { JetStreamManager, StoredMsg } from "@nats-io/jetstream";
import { NatterError } from "../core/errors.ts";
import { ConversationEventSchema, decodeJson, type ConversationEvent } from "./messages.ts";
import { conversationStreamOf, conversationSubject, membershipSubject, type Topology } from "./subjects.ts";

export interface StreamEvent {
  id: number;
  event: ConversationEvent;
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
): Promise<StreamEvent[]> {
  const stream = conversationStreamOf(t, convId);
  const out: StreamEvent[] = [];
  for (const subject of [conversationSubject(t, convId), membershipSubject(t, convId)]) {
    let it;
    try {
      it = await jsm.direct.getBatch(stream, { seq: afterId + 1, next_by_subj: subject, batch: max });
    } catch (err) {
      if ((err as { code?: unknown }).code === 404 || /no message found/i.test(String((err as Error).message))) continue;
      throw new NatterError("UNAVAILABLE", "conversation stream unavailable", { cause: err });
    }
    try {
      for await (const sm of it as AsyncIterable<StoredMsg>) {
        if (sm.seq >= beforeId) break;
        const parsed = ConversationEventSchema.safeParse(safeJson(sm.data));
        if (parsed.success) out.push({ id: sm.seq, event: parsed.data });
      }
    } catch (err) {
      if ((err as { code?: unknown }).code === 404 || /no message found/i.test(String((err as Error).message))) continue;
      throw new NatterError("UNAVAILABLE", "conversation stream unavailable", { cause: err });
    }
  }
  return out.sort((a, b) => a.id - b.id);
}

function safeJson(data: Uint8Array): unknown {
  try {
    return decodeJson(data);
  } catch {
    return undefined;
  }
}
