// Batched direct gets that leave nothing behind. nats.js 3.4's iterator form of
// `jsm.direct.getBatch` and `jsm.direct.getLastMessagesFor` never unsubscribes its reply inbox: each
// call leaves one subscription on the connection and on the server for as long as the connection
// lives (one per hello, history page, unread count, presence read…; measured: 100 calls, 100 more
// subscriptions in the server's /connz). Its callback form unsubscribes when the batch ends, by end
// of batch, error or timeout; `directBatch` wraps that form in the async iterable callers expect.
import type { DirectBatchOptions, DirectLastFor, JetStreamManager, StoredMsg } from "@nats-io/jetstream";
import type { BatchCallback } from "@nats-io/jetstream";
import { isNotFound } from "./errors.ts";

/**
 * The messages of one batched direct get (`seq`/`start_time` with `batch`, or `multi_last`), in
 * the order the server sends them. No match ends the iteration (the server's 404 is not an error);
 * a timeout or another status is thrown by the iteration.
 */
export async function directBatch(jsm: JetStreamManager, stream: string, opts: DirectBatchOptions | DirectLastFor): Promise<AsyncIterable<StoredMsg>> {
  const queue: StoredMsg[] = [];
  let end: { err?: Error } | undefined;
  let wake: (() => void) | undefined;
  const callback: BatchCallback<StoredMsg> = (done, m) => {
    if (done) end ??= done.err && !isNotFound(done.err) ? { err: done.err } : {};
    else queue.push(m);
    wake?.();
    wake = undefined;
  };
  await ("multi_last" in opts ? jsm.direct.getLastMessagesFor(stream, { ...opts, callback }) : jsm.direct.getBatch(stream, { ...opts, callback }));
  return {
    async *[Symbol.asyncIterator]() {
      for (let i = 0; ; ) {
        if (i < queue.length) {
          const m = queue[i]!;
          queue[i++] = undefined as unknown as StoredMsg;
          yield m;
          continue;
        }
        if (end) {
          if (end.err) throw end.err;
          return;
        }
        await new Promise<void>((r) => {
          wake = r;
        });
      }
    },
  };
}
