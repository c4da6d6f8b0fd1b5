// History: the store's page, with the newest events that JetStream holds and the store does not
// have yet (the persister's lag) merged in by id — no gap and no duplicate at the seam.
import type { JetStreamManager } from "@nats-io/jetstream";
import type { Topology } from "../nats/index.ts";
import { recordOf, streamEvents, type ChatRecord, type StreamEvent } from "../streams/index.ts";
import type { HistoryQuery, MessageStore } from "./message-store.ts";

/** A conversation's history page: newest first, at most `query.limit`. */
export type HistoryReader = (conv: string, query: HistoryQuery) => Promise<ChatRecord[]>;

const CHUNK = 500;
const MAX_ROUNDS = 40;

export function historyReader(store: MessageStore, jsm: JetStreamManager, topology: Topology): HistoryReader {
  return async (conv, q) => {
    const page = await store.history(conv, q);
    const before = q.before ?? Number.MAX_SAFE_INTEGER;
    const newestStored = page[0]?.id ?? 0;
    // Only the range above the store's newest event of this page can be missing from it.
    if (newestStored + 1 >= before) return page;
    // Read forward from the store's newest to `before`, keeping the newest `limit` events. The
    // persister's lag bounds how far that is; past MAX_ROUNDS chunks the page is the newest read.
    let recent: StreamEvent[] = [];
    let after = newestStored;
    for (let round = 0; round < MAX_ROUNDS && after + 1 < before; round++) {
      const chunk = await streamEvents(jsm, topology, conv, after, before, CHUNK);
      recent = [...recent, ...chunk.events].slice(-q.limit);
      if (chunk.frontier >= before - 1) break;
      after = chunk.frontier;
    }
    if (recent.length === 0) return page;
    const byId = new Map<number, ChatRecord>(page.map((m) => [m.id, m]));
    for (const e of recent) if (!byId.has(e.id)) byId.set(e.id, recordOf(e.id, e.event));
    return [...byId.values()].sort((a, b) => b.id - a.id).slice(0, q.limit);
  };
}
