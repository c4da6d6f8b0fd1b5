// The send ledger: one marker per (message, subscription) in the KV bucket `push-sent`, so a push
// is sent once however often its request is delivered (redeliveries, a retry after another
// subscription of the same user failed, two worker processes, a dispatcher redelivery after the
// PUSH stream's duplicate window).
//
//   claim:  absent (or "retry") → write "sending until T" with compare-and-set; only one claimer wins
//           "sent" / "dropped"  → done, nothing to send
//           "sending", T ahead  → busy: another attempt is in flight (retry after T)
//           "sending", T passed → the attempt that wrote it died between the request and
//                                 settling: claim it again (at-least-once in that window only)
//   settle: "sent", "dropped", or "retry" (a later attempt may send), compare-and-set on the claim.
//
// T is now + the request deadline + a margin, so an attempt still running never has its claim
// taken. The one window where a push can go out twice: a worker that dies after the push service
// accepted the request and before "sent" is written (one round trip to NATS). The repeat carries
// the same push id (Web Push `Topic`, webhook `Natter-Push-Id`), so the receiver can drop it.
import type { JetStreamClient, JetStreamManager, StoredMsg } from "@nats-io/jetstream";
import type { MsgHdrs } from "@nats-io/transport-node";
import { z } from "zod";
import { NatterError } from "../core/index.ts";
import { decodeJsonOrUndefined, encodeJson, isNotFound, isWrongLastSequence, kvKeySubject, names } from "../nats/index.ts";

const TIMEOUT_MS = 5000;
const SETTLE_ATTEMPTS = 3;

const Marker = z.discriminatedUnion("state", [
  z.object({ v: z.literal(1), state: z.literal("sending"), until: z.number() }),
  z.object({ v: z.literal(1), state: z.literal("sent"), at: z.number() }),
  z.object({ v: z.literal(1), state: z.literal("retry"), at: z.number() }),
  z.object({ v: z.literal(1), state: z.literal("dropped"), at: z.number(), reason: z.string() }),
]);
type Marker = z.infer<typeof Marker>;

export type Claim =
  | { kind: "claimed"; revision: number; /** a previous attempt died mid-send */ resumed: boolean }
  | { kind: "done"; state: "sent" | "dropped" }
  | { kind: "busy"; waitMs: number };

export type Settlement = { state: "sent" } | { state: "retry" } | { state: "dropped"; reason: string };



function isPut(h: MsgHdrs | undefined): boolean {
  return !h?.has("Nats-Marker-Reason") && !h?.has("KV-Operation");
}

export class SendLedger {
  readonly #js: JetStreamClient;
  readonly #jsm: JetStreamManager;
  readonly #stream = names.kvStream(names.pushSentBucket);

  constructor(js: JetStreamClient, jsm: JetStreamManager) {
    this.#js = js;
    this.#jsm = jsm;
  }

  async #last(subject: string): Promise<StoredMsg | null> {
    try {
      return await this.#jsm.direct.getMessage(this.#stream, { last_by_subj: subject });
    } catch (err) {
      if (isNotFound(err)) return null;
      throw new NatterError("UNAVAILABLE", "push ledger unavailable", { cause: err });
    }
  }

  /** Claims the send of `key` for `holdMs` (the request deadline plus a margin). */
  async claim(key: string, holdMs: number): Promise<Claim> {
    const subject = kvKeySubject(names.pushSentBucket, key);
    const last = await this.#last(subject);
    let resumed = false;
    if (last && isPut(last.header)) {
      const parsed = Marker.safeParse(decodeJsonOrUndefined(last.data));
      const m: Marker | undefined = parsed.success ? parsed.data : undefined;
      if (m?.state === "sent" || m?.state === "dropped") return { kind: "done", state: m.state };
      if (m?.state === "sending") {
        const wait = m.until - Date.now();
        if (wait > 0) return { kind: "busy", waitMs: wait };
        resumed = true;
      }
    }
    const marker: Marker = { v: 1, state: "sending", until: Date.now() + holdMs };
    try {
      const ack = await this.#js.publish(subject, encodeJson(marker), { expect: { lastSubjectSequence: last?.seq ?? 0 }, timeout: TIMEOUT_MS });
      return { kind: "claimed", revision: ack.seq, resumed };
    } catch (err) {
      if (isWrongLastSequence(err)) return { kind: "busy", waitMs: 100 }; // another attempt claimed it just now
      throw new NatterError("UNAVAILABLE", "push ledger unavailable", { cause: err });
    }
  }

  /**
   * Records the outcome of a claimed send. False when the claim was taken over meanwhile (the
   * attempt outlived its hold). Retries a NATS failure a few times: a "sent" that is not
   * written lets the push go out again once the hold passes.
   */
  async settle(key: string, revision: number, outcome: Settlement): Promise<boolean> {
    const subject = kvKeySubject(names.pushSentBucket, key);
    const at = Date.now();
    const marker: Marker = outcome.state === "dropped" ? { v: 1, state: "dropped", at, reason: outcome.reason.slice(0, 200) } : { v: 1, state: outcome.state, at };
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#js.publish(subject, encodeJson(marker), { expect: { lastSubjectSequence: revision }, timeout: TIMEOUT_MS });
        return true;
      } catch (err) {
        if (isWrongLastSequence(err)) return false;
        if (attempt >= SETTLE_ATTEMPTS) throw new NatterError("UNAVAILABLE", "could not record a push in the ledger", { cause: err });
        await new Promise((r) => setTimeout(r, 100 * attempt));
      }
    }
  }
}

