// History: the store's page, with the newest events that JetStream holds and the store does not
// have yet (the persister's lag) merged in by id — no gap and no duplicate at the seam.
import type { JetStreamManager } from "@nats-io/jetstream";
import type { HistoryMessage, HistoryReader } from "../edge/index.ts";
import type { MessageStore } from "../persistence/index.ts";
import { streamEvents, type StreamEvent, type Topology } from "../streams/index.ts";

function toHistory(conv: string, e: StreamEvent): HistoryMessage {
  const ev = e.event;
  return ev.type === "msg"
    ? { conv, id: e.id, kind: "msg", from: ev.from, device: ev.device, cid: ev.cid, text: ev.text, ts: ev.ts }
    : {
        conv,
        id: e.id,
        kind: "members",
        from: ev.by,
        device: "",
        cid: "",
        text: JSON.stringify({ action: ev.action, user: ev.user, members: ev.members, name: ev.name, owner: ev.owner }),
        ts: ev.ts,
      };
}

export function historyReader(store: MessageStore, jsm: JetStreamManager, topology: Topology): HistoryReader {
  return async (conv, q) => {
    const page = await store.history(conv, q);
    const before = q.before ?? Number.MAX_SAFE_INTEGER;
    const newestStored = page[0]?.id ?? 0;
    // Only the range above the store's newest event of this page can be missing from it.
    if (newestStored + 1 >= before) return page;
    const recent = await streamEvents(jsm, topology, conv, newestStored, before, q.limit * 4);
    if (recent.length === 0) return page;
    const byId = new Map<number, HistoryMessage>(page.map((m) => [m.id, m]));
    for (const e of recent) if (!byId.has(e.id)) byId.set(e.id, toHistory(conv, e));
    return [...byId.values()].sort((a, b) => b.id - a.id).slice(0, q.limit);
  };
}
