// This user's receipts (delivered, read) per conversation as far as this client knows them, and
// markRead/markDelivered. Marks only move forward; marks made while one is in flight become one
// request after it; a mark already covered sends nothing. Every reply, inbox receipt item and
// conversation list teaches it the state, so a later mark knows what is already covered.
import type { Wire } from "./connection.js";
import { closedError } from "./errors.js";
import type { ReceiptEvent } from "./events.js";
import type { ReceiptState, ServerFrame } from "./protocol.js";
import { expectReply, type Request, type RequestFrame } from "./requests.js";

/** This user's receipts in one conversation as far as this client knows, and the marks waiting to be sent. */
interface MarkState {
  delivered: number;
  read: number;
  queue: Set<{ delivered: number; read: number }>;
  chain: Promise<unknown>;
}

export class Receipts {
  readonly #user: string;
  readonly #wire: Pick<Wire, "state">;
  readonly #request: Request;
  readonly #marks = new Map<string, MarkState>();

  constructor(user: string, wire: Pick<Wire, "state">, request: Request) {
    this.#user = user;
    this.#wire = wire;
    this.#request = request;
  }

  /** This user's receipts in `conv` are at least (delivered, read). */
  learn(conv: string, delivered: number, read: number): void {
    const m = this.#state(conv);
    m.read = Math.max(m.read, read);
    m.delivered = Math.max(m.delivered, delivered, m.read);
  }

  /** The event for a receipt inbox item at `cursor` (learning from it when it is this user's). */
  item(f: Extract<ServerFrame, { type: "receipt" }>, cursor: number): ReceiptEvent {
    if (f.user === this.#user) this.learn(f.conv, f.delivered, f.read);
    return { conv: f.conv, id: f.id, user: f.user, device: f.device ?? "", delivered: f.delivered, read: f.read, ts: f.ts ?? 0, cursor };
  }

  /** Raises this user's receipts in `conv` to `want` (merged with the marks waiting beside it); resolves with the state. */
  mark(conv: string, want: { delivered: number; read: number }): Promise<ReceiptState> {
    if (this.#wire.state === "closed") return Promise.reject(closedError());
    const m = this.#state(conv);
    m.queue.add(want);
    const run = async (): Promise<ReceiptState> => {
      try {
        let read = 0;
        let delivered = 0;
        for (const q of m.queue) {
          read = Math.max(read, q.read);
          delivered = Math.max(delivered, q.delivered, q.read);
        }
        const frame: RequestFrame = { type: "receipt", conv };
        if (read > m.read) frame.read = read;
        if (delivered > Math.max(m.delivered, read)) frame.delivered = delivered;
        if (frame.read === undefined && frame.delivered === undefined) return { user: this.#user, delivered: m.delivered, read: m.read };
        const f = expectReply(await this.#request(frame), "receipt");
        this.learn(conv, f.delivered, f.read);
        return { user: this.#user, delivered: m.delivered, read: m.read };
      } finally {
        m.queue.delete(want);
      }
    };
    const p = m.chain.then(run, run);
    m.chain = p.catch(() => undefined);
    return p;
  }

  #state(conv: string): MarkState {
    let m = this.#marks.get(conv);
    if (m === undefined) {
      m = { delivered: 0, read: 0, queue: new Set(), chain: Promise.resolve() };
      this.#marks.set(conv, m);
    }
    return m;
  }
}
