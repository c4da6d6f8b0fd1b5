// Small readings of JetStream answers that several modules need: a KV message's operation, and a
// scan of a stream's messages by subject filter.
import type { JetStreamManager, StoredMsg } from "@nats-io/jetstream";
import type { MsgHdrs } from "@nats-io/transport-node";
import { directBatch } from "./direct.ts";
import { isNotFound } from "./errors.ts";


export type KvOperation = "PUT" | "DEL" | "PURGE";

/** The KV operation of a stored or consumed bucket message; an expiry marker counts as PURGE. */
export function kvOperation(h: MsgHdrs | undefined): KvOperation {
  if (h?.has("Nats-Marker-Reason")) return "PURGE";
  const op = h?.get("KV-Operation");
  return op === "DEL" || op === "PURGE" ? op : "PUT";
}

/**
 * Every message of `stream` on subjects matching `filter`, oldest first, read in direct-get
 * batches of `page` (at most `maxPages` of them). The end of the matches is the end of the scan
 * however JetStream reports it: a short page, or a 404 from the batch request or from its
 * iterator (the page after one that was exactly full). A key rewritten while the scan pages ahead
 * is met again: callers keep the last value per subject.
 */
export async function* scanFiltered(
  jsm: JetStreamManager,
  stream: string,
  filter: string,
  opts: { page: number; maxPages: number },
): AsyncGenerator<StoredMsg> {
  let seq = 1;
  for (let p = 0; p < opts.maxPages; p++) {
    let n = 0;
    try {
      const it = await directBatch(jsm, stream, { seq, next_by_subj: filter, batch: opts.page });
      for await (const sm of it) {
        n++;
        seq = sm.seq + 1;
        yield sm;
      }
    } catch (err) {
      if (isNotFound(err)) return;
      throw err;
    }
    if (n < opts.page) return;
  }
}
