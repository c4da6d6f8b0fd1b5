// Publishing a client's message into its conversation stream. Idempotent: the msg id is
// derived from (sender, client message id), so a retry on any edge within the stream's
// duplicate window returns the same id and stores nothing new.
import type { JetStreamRequests } from "../nats/index.ts";
import { NatterError } from "../core/index.ts";
import { conversationSubject, encodeJson, messageTtl, sendMsgId, type Topology } from "../nats/index.ts";
import type { ConversationMessage, ImageRef } from "./messages.ts";
import type { SendGate } from "./send-gate.ts";

export interface SendInput {
  conv: string;
  from: string;
  device: string;
  cid: string;
  text: string;
  /** Images already attached (media/: uploaded by the sender, recorded as shared in `conv`). */
  images?: ImageRef[] | undefined;
}

export interface SendResult {
  /** The message id: its sequence in the conversation's stream. */
  id: number;
  /** True when this was a retry of a message already stored. */
  duplicate: boolean;
  ts: number;
}

/**
 * Publishes `input`; refused first (STORE_BEHIND) when `gate` says the conversation's stream has
 * a persister backlog too old to take more messages (send-gate.ts).
 */
export async function publishMessage(requests: JetStreamRequests, t: Topology, input: SendInput, gate?: Pick<SendGate, "check">): Promise<SendResult> {
  gate?.check(input.conv);
  const ts = Date.now();
  const { images, ...rest } = input;
  const msg: ConversationMessage = { v: 1, type: "msg", ...rest, ts, ...(images !== undefined && images.length > 0 ? { images } : {}) };
  try {
    const ack = await requests.publish(conversationSubject(t, input.conv), encodeJson(msg), {
      msgID: sendMsgId(input.from, input.cid),
      ttl: messageTtl(t).ttl,
      timeoutMs: 5000,
    });
    return { id: ack.seq, duplicate: ack.duplicate, ts };
  } catch (err) {
    if (err instanceof NatterError) throw err;
    throw new NatterError("UNAVAILABLE", "could not store the message; retry with the same cid", { cause: err });
  }
}
