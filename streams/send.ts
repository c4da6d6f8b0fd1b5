// Publishing a client's message into its conversation stream. Idempotent: the msg id is
// derived from (sender, client message id), so a retry on any edge within the stream's
// duplicate window returns the same id and stores nothing new.
import { NatterError } from "../core/index.ts";
import { conversationSubject, encodeJson, isStreamFull, type JetStreamRequests, messageTtl, sendMsgId, type Topology } from "../nats/index.ts";
import type { ConversationMessage, ImageRef } from "./messages.ts";

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
 * What may refuse a message before it is stored: the persister being too far behind (SendGate,
 * STORE_BEHIND) and the conversation's stream being full for messages (StorageGuard, STORAGE_FULL).
 */
interface SendCheck {
  admit(conv: string, bytes: number): void;
}

export async function publishMessage(requests: JetStreamRequests, t: Topology, input: SendInput, checks: readonly SendCheck[] = []): Promise<SendResult> {
  const ts = Date.now();
  const { images, ...rest } = input;
  const msg: ConversationMessage = { v: 1, type: "msg", ...rest, ts, ...(images !== undefined && images.length > 0 ? { images } : {}) };
  const data = encodeJson(msg);
  for (const c of checks) c.admit(input.conv, data.length);
  try {
    const ack = await requests.publish(conversationSubject(t, input.conv), data, {
      msgID: sendMsgId(input.from, input.cid),
      ttl: messageTtl(t).ttl,
      timeoutMs: 5000,
    });
    return { id: ack.seq, duplicate: ack.duplicate, ts };
  } catch (err) {
    if (err instanceof NatterError) throw err;
    if (isStreamFull(err)) throw new NatterError("STORAGE_FULL", undefined, { cause: err });
    throw new NatterError("UNAVAILABLE", "could not store the message; retry with the same cid", { cause: err });
  }
}
