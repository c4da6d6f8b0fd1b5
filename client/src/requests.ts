// Request/reply over the socket. A request gets a ref the server echoes on its reply; made before
// the welcome, it waits for it. It rejects with a NatterError: the server's error frame, TIMEOUT
// after requestTimeoutMs, DISCONNECTED when the connection drops before the reply (it may or may
// not have happened: the caller decides), or the error that stopped the client. Sends are not
// requests: the outbox resends them instead.
import type { Wire } from "./connection.js";
import { closedError, errorFromFrame, NatterError } from "./errors.js";
import type { NatterClientOptions } from "./options.js";
import type { ClientFrame, ServerFrame } from "./protocol.js";

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** A client frame as a caller hands it over: its ref is added when it goes on the wire. */
export type RequestFrame = DistributiveOmit<ClientFrame, "ref">;

export type Request = (frame: RequestFrame) => Promise<ServerFrame>;

/** `f` if it is a `type` frame; otherwise the server answered something this client does not understand (INTERNAL). */
export function expectReply<T extends ServerFrame["type"]>(f: ServerFrame, type: T, to: string = type): Extract<ServerFrame, { type: T }> {
  if (f.type !== type) throw new NatterError("INTERNAL", `unexpected reply ${f.type} to ${to}`, { temporary: false });
  return f as Extract<ServerFrame, { type: T }>;
}

interface RequestEntry {
  frame: RequestFrame;
  resolve: (f: ServerFrame) => void;
  reject: (e: NatterError) => void;
  timer: ReturnType<typeof setTimeout>;
}

export class Requests {
  readonly #wire: Wire;
  readonly #opts: Pick<NatterClientOptions, "requestTimeoutMs">;
  /** Numbers refs; shared with the outbox, whose refs start with `s` where these start with `r`. */
  readonly #nextRef: () => number;
  /** Requests on the wire, by ref. */
  readonly #inflight = new Map<string, RequestEntry>();
  /** Requests made before the welcome, in order. */
  #queue: RequestEntry[] = [];

  constructor(wire: Wire, opts: Pick<NatterClientOptions, "requestTimeoutMs">, nextRef: () => number) {
    this.#wire = wire;
    this.#opts = opts;
    this.#nextRef = nextRef;
  }

  request(frame: RequestFrame): Promise<ServerFrame> {
    if (this.#wire.state === "closed") return Promise.reject(closedError());
    this.#wire.autoConnect();
    return new Promise((resolve, reject) => {
      const timeout = this.#opts.requestTimeoutMs ?? 15_000;
      const r: RequestEntry = {
        frame,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#queue = this.#queue.filter((q) => q !== r);
          for (const [ref, q] of this.#inflight) if (q === r) this.#inflight.delete(ref);
          reject(new NatterError("TIMEOUT", `no reply to ${frame.type} within ${timeout} ms`, { temporary: true }));
        }, timeout),
      };
      const ws = this.#wire.socket;
      if (ws !== undefined) this.#transmit(r, ws);
      else this.#queue.push(r);
    });
  }

  /** True when `ref` is the ref of a request waiting for its reply. */
  has(ref: unknown): ref is string {
    return typeof ref === "string" && this.#inflight.has(ref);
  }

  /** The reply to the request `ref`: an error frame rejects it, anything else resolves it. */
  reply(ref: string, f: ServerFrame): void {
    const r = this.#inflight.get(ref);
    if (r === undefined) return;
    this.#inflight.delete(ref);
    clearTimeout(r.timer);
    if (f.type === "error") r.reject(errorFromFrame(f));
    else r.resolve(f);
  }

  /** The server welcomed this device: requests made while connecting go out, in the order they were made. */
  flush(): void {
    const ws = this.#wire.socket;
    if (ws === undefined) return;
    const queued = this.#queue;
    this.#queue = [];
    for (const r of queued) this.#transmit(r, ws);
  }

  /** The connection dropped: requests on the wire reject with DISCONNECTED; queued ones wait for the next welcome. */
  disconnected(closeCode: number): void {
    for (const [ref, r] of this.#inflight) {
      this.#inflight.delete(ref);
      clearTimeout(r.timer);
      r.reject(new NatterError("DISCONNECTED", `the connection dropped before the reply to ${r.frame.type}; retry`, { temporary: true, closeCode }));
    }
  }

  /** The client stopped for good: every request, on the wire or waiting, rejects with `err`. */
  stopped(err: NatterError): void {
    for (const [ref, r] of this.#inflight) {
      this.#inflight.delete(ref);
      clearTimeout(r.timer);
      r.reject(err);
    }
    const pending = this.#queue;
    this.#queue = [];
    for (const r of pending) {
      clearTimeout(r.timer);
      r.reject(err);
    }
  }

  #transmit(r: RequestEntry, ws: NonNullable<Wire["socket"]>): void {
    const ref = `r${this.#nextRef()}`;
    this.#inflight.set(ref, r);
    ws.send(JSON.stringify({ ...r.frame, ref }));
  }
}
