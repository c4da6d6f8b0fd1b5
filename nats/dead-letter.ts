// Dead letters: a message a worker cannot process however often it tries (unreadable, or failing
// alone while its neighbours succeed) is copied to the DEAD stream with the reason, then
// terminated on its consumer, so the rest keep flowing. Nothing is dropped silently.
//
// Replay (`natter dead replay`): a dead letter goes back to the worker that gave up on it, not to
// its original subject. A conversation stream has two workers (fan-out and persister) and its
// messages are read by history and unread counts: a second copy there would be a second message,
// with a new id, to every member. So each replayable worker has a durable consumer of its own on
// the REPLAY stream (work queue, `replay.<worker>.<stream>`); the worker base takes a replayed
// message as the original (its stream, sequence and subject, from Natter-Replay-* headers), so its
// effect is keyed as the original's was and happens once. Only workers whose effect is keyed by
// the original message and does not depend on order replay: the persister (rows keyed by
// conversation and id) and the push sender (the send ledger). The fan-out would put an old message
// into inboxes after newer ones; the presence worker and the upload sweeper would act on stale
// bucket state (their next change of that key sets things right anyway).
import type { JetStreamClient, JetStreamManager, JsMsg } from "@nats-io/jetstream";
import { headers, type MsgHdrs } from "@nats-io/transport-node";
import { isNotFound } from "./errors.ts";
import { scanFiltered } from "./jetstream.ts";
import { deadLetterSubject, names, replaySubject } from "./subjects.ts";

/** Header values are ours, never a client's: printable ASCII only, bounded. */
function headerValue(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, "?").slice(0, 256);
}

export const DEAD_HEADERS = {
  reason: "Natter-Dead-Reason",
  stream: "Natter-Dead-Stream",
  seq: "Natter-Dead-Seq",
  subject: "Natter-Dead-Subject",
  worker: "Natter-Dead-Worker",
  deliveries: "Natter-Dead-Deliveries",
} as const;

/** On a replayed message: the original's stream, sequence and subject. */
const REPLAY_HEADERS = {
  stream: "Natter-Replay-Stream",
  seq: "Natter-Replay-Seq",
  subject: "Natter-Replay-Subject",
} as const;

/** The workers that dead-letter (a subject token: `dead.<worker>.<stream>`). */
export const DEAD_LETTER_WORKERS = ["fanout", "persister", "push", "push-sender", "presence", "uploads-sweeper"] as const;
export type DeadLetterWorker = (typeof DEAD_LETTER_WORKERS)[number];

/** The workers a dead letter can be replayed to (see above for why only these). */
export const REPLAYABLE_WORKERS = ["persister", "push-sender"] as const satisfies readonly DeadLetterWorker[];

export function isReplayable(worker: string): worker is (typeof REPLAYABLE_WORKERS)[number] {
  return (REPLAYABLE_WORKERS as readonly string[]).includes(worker);
}

/** Where a message a worker handles came from: its stream, sequence and subject (a replay's are the original's). */
export interface Origin {
  stream: string;
  seq: number;
  subject: string;
  /** The REPLAY stream's sequence, when it came back through a replay. */
  replaySeq?: number | undefined;
}

/** The original of a replayed message, from its headers; undefined when they are missing. */
export function replayOrigin(m: JsMsg): Origin | undefined {
  const stream = m.headers?.get(REPLAY_HEADERS.stream) ?? "";
  const seq = Number(m.headers?.get(REPLAY_HEADERS.seq));
  if (stream === "" || !Number.isSafeInteger(seq) || seq < 1) return undefined;
  return { stream, seq, subject: m.headers?.get(REPLAY_HEADERS.subject) || m.subject, replaySeq: m.seq };
}

/** Copies the headers natter keeps with a message (not JetStream's own, nor dead-letter or replay bookkeeping). */
function carriedHeaders(from: MsgHdrs | undefined, to: MsgHdrs): void {
  if (!from) return;
  for (const k of from.keys()) {
    if (/^(nats-|natter-dead-|natter-replay-)/i.test(k)) continue;
    for (const v of from.values(k)) to.append(k, v);
  }
}

/** Stores `m` (a delivery from `origin`) in the dead-letter stream (idempotently), then terminates it. */
export async function deadLetter(js: JetStreamClient, m: JsMsg, origin: Origin, worker: DeadLetterWorker, reason: string): Promise<void> {
  const h = headers();
  carriedHeaders(m.headers, h);
  h.set(DEAD_HEADERS.reason, headerValue(reason));
  h.set(DEAD_HEADERS.stream, origin.stream);
  h.set(DEAD_HEADERS.seq, String(origin.seq));
  h.set(DEAD_HEADERS.subject, headerValue(origin.subject));
  h.set(DEAD_HEADERS.worker, worker);
  h.set(DEAD_HEADERS.deliveries, String(m.info.deliveryCount));
  // A replay that fails again is a new dead letter: its id must not be the first one's, which may
  // still be in DEAD's duplicate window.
  const again = origin.replaySeq === undefined ? "" : `:r${origin.replaySeq}`;
  await js.publish(deadLetterSubject(worker, origin.stream), m.data, {
    headers: h,
    msgID: `d:${worker}:${origin.stream}:${origin.seq}${again}`,
    timeout: 5000,
  });
  m.term(headerValue(reason));
}

/** One dead letter as `natter dead list` shows it. */
export interface DeadLetter {
  /** Its sequence in DEAD. */
  seq: number;
  time: Date;
  worker: string;
  reason: string;
  /** The stream, sequence and subject it came from. */
  stream: string;
  sourceSeq: number;
  subject: string;
  deliveries: number;
  size: number;
  replayable: boolean;
}

function deadLetterOf(sm: { seq: number; time: Date; header: MsgHdrs; data: Uint8Array }): DeadLetter {
  const h = sm.header;
  const worker = h.get(DEAD_HEADERS.worker);
  return {
    seq: sm.seq,
    time: sm.time,
    worker,
    reason: h.get(DEAD_HEADERS.reason),
    stream: h.get(DEAD_HEADERS.stream),
    sourceSeq: Number(h.get(DEAD_HEADERS.seq)) || 0,
    subject: h.get(DEAD_HEADERS.subject),
    deliveries: Number(h.get(DEAD_HEADERS.deliveries)) || 0,
    size: sm.data.length,
    replayable: isReplayable(worker),
  };
}

/** DEAD's dead letters, oldest first, of one worker or all, up to `untilSeq` (inclusive) when given. */
export async function* readDeadLetters(jsm: JetStreamManager, opts: { worker?: DeadLetterWorker | undefined; untilSeq?: number | undefined } = {}): AsyncGenerator<DeadLetter> {
  const filter = opts.worker ? `dead.${opts.worker}.*` : names.deadLetterStreamSubjects;
  for await (const sm of scanFiltered(jsm, names.deadLetterStream, filter, { page: 256, maxPages: Number.MAX_SAFE_INTEGER })) {
    if (opts.untilSeq !== undefined && sm.seq > opts.untilSeq) return;
    yield deadLetterOf(sm);
  }
}

export type ReplayResult =
  | { kind: "replayed"; letter: DeadLetter; replaySeq: number }
  | { kind: "not-replayable"; letter: DeadLetter }
  | { kind: "missing" }
  /** Sent to the worker, but DEAD still holds it (the removal failed: `cause`). */
  | { kind: "not-removed"; letter: DeadLetter; replaySeq: number; cause: unknown };

/**
 * Sends dead letter `seq` back to the worker that gave up on it (through REPLAY, see above), and
 * removes it from DEAD only after JetStream acked that publish. Its msg id is the dead letter's
 * own, so a second replay of it within REPLAY's duplicate window stores nothing new.
 */
export async function replayDeadLetter(js: JetStreamClient, jsm: JetStreamManager, seq: number): Promise<ReplayResult> {
  const sm = await jsm.direct.getMessage(names.deadLetterStream, { seq });
  if (!sm) return { kind: "missing" };
  const letter = deadLetterOf(sm);
  if (!letter.replayable || letter.stream === "" || letter.sourceSeq < 1) return { kind: "not-replayable", letter };
  const h = headers();
  carriedHeaders(sm.header, h);
  h.set(REPLAY_HEADERS.stream, letter.stream);
  h.set(REPLAY_HEADERS.seq, String(letter.sourceSeq));
  if (letter.subject !== "") h.set(REPLAY_HEADERS.subject, letter.subject);
  const ack = await js.publish(replaySubject(letter.worker, letter.stream), sm.data, {
    headers: h,
    msgID: `r:${letter.worker}:${letter.stream}:${letter.sourceSeq}:${seq}`,
    timeout: 5000,
  });
  try {
    await jsm.streams.deleteMessage(names.deadLetterStream, seq, false);
  } catch (cause) {
    if (!isNotFound(cause)) return { kind: "not-removed", letter, replaySeq: ack.seq, cause };
  }
  return { kind: "replayed", letter, replaySeq: ack.seq };
}
