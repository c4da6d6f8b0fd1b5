// JetStream requests on the hot paths (a client's send, the fan-out's inbox copies, membership
// reads): publishes with acks and direct gets, with the same meaning as nats.js's `js.publish`
// and `jsm.direct.getMessage`, for a fraction of the CPU. nats.js builds an Error with a stack
// trace for every request that succeeds (a discarded "cancelled") and arms a timer per request;
// measured at 13.6 µs of CPU per publish and 16.2 µs per direct get, against 4.2 and 5.8 µs here.
// One reply subscription is shared by every request, one timer sweeps the overdue ones, and
// nothing is built for a request that succeeds.
import { JetStreamApiError, type StoredMsg } from "@nats-io/jetstream";
import { createInbox, headers as natsHeaders, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { NatterError } from "../core/index.ts";

export interface Ack {
  stream: string;
  seq: number;
  duplicate: boolean;
}

export interface PublishOptions {
  /** Nats-Msg-Id: deduplicated by the stream within its duplicate window. */
  msgID?: string | undefined;
  /** Nats-Expected-Last-Subject-Sequence: compare-and-set on the subject's last sequence. */
  expectLastSubjectSequence?: number | undefined;
  /** Nats-TTL, e.g. "604800s" (the stream must allow per-message TTLs). */
  ttl?: string | undefined;
  /** This request's deadline (TIMEOUT after it); default the requester's. */
  timeoutMs?: number | undefined;
  /** More headers, natter's own (names chosen by natter, never a client's). */
  headers?: Record<string, string> | undefined;
}

/** A direct get: the last message of a subject, or the message at a sequence. */
export type DirectGet = { last_by_subj: string } | { seq: number };

interface Pending {
  resolve: (msg: Msg) => void;
  reject: (err: unknown) => void;
  deadline: number;
}

const decoder = new TextDecoder();
const EMPTY = new Uint8Array(0);

export class JetStreamRequests {
  readonly #nc: NatsConnection;
  readonly #prefix: string;
  readonly #sub: Subscription;
  readonly #pending = new Map<string, Pending>();
  readonly #sweep: NodeJS.Timeout;
  readonly #timeoutMs: number;
  #next = 0;

  constructor(nc: NatsConnection, opts: { timeoutMs?: number } = {}) {
    this.#nc = nc;
    this.#timeoutMs = opts.timeoutMs ?? 10_000;
    // Under the connection's reply prefix (a role's own: its permissions allow that one only).
    const inboxPrefix = (nc as { options?: { inboxPrefix?: string } }).options?.inboxPrefix;
    this.#prefix = `${createInbox(inboxPrefix)}.`;
    this.#sub = nc.subscribe(`${this.#prefix}*`, {
      callback: (err, msg) => {
        if (err) return;
        const p = this.#pending.get(msg.subject);
        if (!p) return;
        this.#pending.delete(msg.subject);
        p.resolve(msg);
      },
    });
    this.#sweep = setInterval(() => this.#expire(), 250).unref();
  }

  #expire(): void {
    const now = Date.now();
    for (const [reply, p] of this.#pending) {
      if (p.deadline > now) continue;
      this.#pending.delete(reply);
      p.reject(new NatterError("TIMEOUT", "no answer from JetStream in time"));
    }
  }

  #request(subject: string, data: Uint8Array, h?: MsgHdrs, timeoutMs = this.#timeoutMs): Promise<Msg> {
    const reply = `${this.#prefix}${(this.#next++).toString(36)}`;
    return new Promise<Msg>((resolve, reject) => {
      this.#pending.set(reply, { resolve, reject, deadline: Date.now() + timeoutMs });
      try {
        this.#nc.publish(subject, data, h ? { reply, headers: h } : { reply });
      } catch (err) {
        this.#pending.delete(reply);
        reject(new NatterError("UNAVAILABLE", "NATS connection unavailable", { cause: err }));
      }
    });
  }

  /**
   * Publishes into a stream and resolves with its ack. A refusal by the stream rejects with
   * nats.js's JetStreamApiError (its `code` is the JetStream error code: isWrongLastSequence and
   * friends read it); no stream on the subject rejects UNAVAILABLE.
   */
  async publish(subject: string, data: Uint8Array, opts: PublishOptions = {}): Promise<Ack> {
    let h: MsgHdrs | undefined;
    if (opts.msgID !== undefined || opts.expectLastSubjectSequence !== undefined || opts.ttl !== undefined || opts.headers !== undefined) {
      h = natsHeaders();
      for (const [k, v] of Object.entries(opts.headers ?? {})) h.set(k, v);
      if (opts.msgID !== undefined) h.set("Nats-Msg-Id", opts.msgID);
      if (opts.expectLastSubjectSequence !== undefined) h.set("Nats-Expected-Last-Subject-Sequence", String(opts.expectLastSubjectSequence));
      if (opts.ttl !== undefined) h.set("Nats-TTL", opts.ttl);
    }
    const msg = await this.#request(subject, data, h, opts.timeoutMs);
    if (msg.headers?.hasError) {
      // 503: no stream listens on the subject (or no JetStream at all).
      throw new NatterError("UNAVAILABLE", `publish failed: ${msg.headers.code} ${msg.headers.description}`);
    }
    let body: { stream?: string; seq?: number; duplicate?: boolean; error?: { code: number; err_code: number; description: string } };
    try {
      body = JSON.parse(decoder.decode(msg.data)) as typeof body;
    } catch (cause) {
      throw new NatterError("UNAVAILABLE", "unreadable publish ack", { cause });
    }
    if (body.error) throw new JetStreamApiError(body.error);
    if (typeof body.seq !== "number") throw new NatterError("UNAVAILABLE", "publish ack without a sequence");
    return { stream: body.stream ?? "", seq: body.seq, duplicate: body.duplicate === true };
  }

  /** A direct get from `stream` (served by any replica); null when there is no such message. */
  async directGet(stream: string, query: DirectGet): Promise<StoredMsg | null> {
    const msg = await this.#request(`$JS.API.DIRECT.GET.${stream}`, new TextEncoder().encode(JSON.stringify(query)));
    const status = msg.headers?.code ?? 0;
    if (status === 404) return null;
    if (msg.headers?.hasError || status >= 400) {
      throw new NatterError("UNAVAILABLE", `direct get from ${stream} failed: ${status} ${msg.headers?.description ?? ""}`.trim());
    }
    return storedMsgOf(msg);
  }

  close(): void {
    clearInterval(this.#sweep);
    this.#sub.unsubscribe();
    for (const p of this.#pending.values()) p.reject(new NatterError("UNAVAILABLE", "JetStream requests closed"));
    this.#pending.clear();
  }
}

/** A direct get's answer as a StoredMsg (what nats.js's direct get returns). */
function storedMsgOf(msg: Msg): StoredMsg {
  const h = msg.headers!;
  const subject = h.get("Nats-Subject");
  const seq = Number(h.get("Nats-Sequence"));
  const time = new Date(Date.parse(h.get("Nats-Time-Stamp")));
  const data = msg.data ?? EMPTY;
  return {
    subject,
    seq,
    header: h,
    data,
    time,
    timestamp: h.get("Nats-Time-Stamp"),
    lastSequence: Number(h.get("Nats-Last-Sequence") || 0),
    pending: h.has("Nats-Num-Pending") ? Number(h.get("Nats-Num-Pending")) : -1,
    json<T>(): T {
      return JSON.parse(decoder.decode(data)) as T;
    },
    string(): string {
      return decoder.decode(data);
    },
  } as StoredMsg;
}
