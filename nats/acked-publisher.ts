// JetStream publishes with acks, for the fan-out's hot path. nats.js's request path builds an
// Error (with a stack trace) on every completed request and arms a timer per request; at 20 inbox
// copies per message that was the fan-out's largest cost (bench:burst profile). This publisher
// shares one reply subscription, one sweep timer, and builds nothing for a request that succeeds.
// Same semantics as `js.publish`: the promise resolves with the stream's ack (seq, duplicate).
import { createInbox, headers, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { NatterError } from "../core/errors.ts";

export interface Ack {
  stream: string;
  seq: number;
  duplicate: boolean;
}

interface Pending {
  resolve: (ack: Ack) => void;
  reject: (err: unknown) => void;
  deadline: number;
}

const decoder = new TextDecoder();

export class AckedPublisher {
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
    this.#prefix = `${createInbox()}.`;
    this.#sub = nc.subscribe(`${this.#prefix}*`, {
      callback: (err, msg) => {
        if (err) return;
        const p = this.#pending.get(msg.subject);
        if (!p) return;
        this.#pending.delete(msg.subject);
        if (msg.headers?.hasError) {
          // 503: no JetStream stream listens on that subject.
          p.reject(new NatterError("UNAVAILABLE", `publish failed: ${msg.headers.code} ${msg.headers.description}`));
          return;
        }
        let body: { stream?: string; seq?: number; duplicate?: boolean; error?: { code: number; err_code?: number; description?: string } };
        try {
          body = JSON.parse(decoder.decode(msg.data)) as typeof body;
        } catch (cause) {
          p.reject(new NatterError("UNAVAILABLE", "unreadable publish ack", { cause }));
          return;
        }
        if (body.error || typeof body.seq !== "number") {
          p.reject(new NatterError("UNAVAILABLE", `publish refused: ${body.error?.description ?? "no sequence in ack"} (${body.error?.err_code ?? body.error?.code ?? "?"})`));
          return;
        }
        p.resolve({ stream: body.stream ?? "", seq: body.seq, duplicate: body.duplicate === true });
      },
    });
    this.#sweep = setInterval(() => this.#expire(), Math.min(1000, this.#timeoutMs)).unref();
  }

  #expire(): void {
    const now = Date.now();
    for (const [reply, p] of this.#pending) {
      if (p.deadline > now) continue;
      this.#pending.delete(reply);
      p.reject(new NatterError("TIMEOUT", `no publish ack within ${this.#timeoutMs} ms`));
    }
  }

  /** Publishes with a Nats-Msg-Id (deduplicated by the stream) and resolves with the ack. */
  publish(subject: string, data: Uint8Array, msgID: string): Promise<Ack> {
    const reply = `${this.#prefix}${(this.#next++).toString(36)}`;
    const h = headers();
    h.set("Nats-Msg-Id", msgID);
    return new Promise<Ack>((resolve, reject) => {
      this.#pending.set(reply, { resolve, reject, deadline: Date.now() + this.#timeoutMs });
      try {
        this.#nc.publish(subject, data, { reply, headers: h });
      } catch (err) {
        this.#pending.delete(reply);
        reject(new NatterError("UNAVAILABLE", "publish failed", { cause: err }));
      }
    });
  }

  close(): void {
    clearInterval(this.#sweep);
    this.#sub.unsubscribe();
    for (const p of this.#pending.values()) p.reject(new NatterError("UNAVAILABLE", "publisher closed"));
    this.#pending.clear();
  }
}
