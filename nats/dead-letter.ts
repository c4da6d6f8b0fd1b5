// Dead letters: a message a worker cannot process however often it tries (unreadable, or failing
// alone while its neighbours succeed) is copied to the DEAD stream with the reason, then
// terminated on its consumer, so the rest keep flowing. Nothing is dropped silently.
import type { JetStreamClient, JsMsg } from "@nats-io/jetstream";
import { headers } from "@nats-io/transport-node";
import { deadLetterSubject } from "./subjects.ts";

/** Header values are ours, never a client's: printable ASCII only, bounded. */
function headerValue(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, "?").slice(0, 256);
}

export const DEAD_HEADERS = {
  reason: "Natter-Dead-Reason",
  stream: "Natter-Dead-Stream",
  seq: "Natter-Dead-Seq",
  worker: "Natter-Dead-Worker",
  deliveries: "Natter-Dead-Deliveries",
} as const;

/** The workers that dead-letter (a subject token: `dead.<worker>.<stream>`). */
export const DEAD_LETTER_WORKERS = ["fanout", "persister", "push", "push-sender", "presence", "uploads-sweeper"] as const;
export type DeadLetterWorker = (typeof DEAD_LETTER_WORKERS)[number];

/** Stores `m` in the dead-letter stream (idempotently), then terminates it. */

export async function deadLetter(js: JetStreamClient, m: JsMsg, worker: DeadLetterWorker, reason: string): Promise<void> {
  const h = headers();
  h.set(DEAD_HEADERS.reason, headerValue(reason));
  h.set(DEAD_HEADERS.stream, m.info.stream);
  h.set(DEAD_HEADERS.seq, String(m.seq));
  h.set(DEAD_HEADERS.worker, worker);
  h.set(DEAD_HEADERS.deliveries, String(m.info.deliveryCount));
  await js.publish(deadLetterSubject(worker, m.info.stream), m.data, {
    headers: h,
    msgID: `d:${worker}:${m.info.stream}:${m.seq}`,
    timeout: 5000,
  });
  m.term(headerValue(reason));
}
