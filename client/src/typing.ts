// Typing signals. Apps call typing(conv) on every keystroke without awaiting it: at most one
// signal per conversation goes out every 3 s, none while the connection is not open, and a signal
// lost to a rate limit, a drop or close() is nobody's error. Typing is never queued nor stored.
import type { Wire } from "./connection.js";
import { NatterError } from "./errors.js";
import type { Request } from "./requests.js";

/** A typing signal is sent again at most this often per conversation (the server allows one per 2 s; it shows for 5 s). */
const TYPING_RESEND_MS = 3000;

export class TypingSignals {
  readonly #wire: Pick<Wire, "state">;
  readonly #request: Request;
  /** When the last signal went out, by conversation. */
  readonly #sent = new Map<string, number>();

  constructor(wire: Pick<Wire, "state">, request: Request) {
    this.#wire = wire;
    this.#request = request;
  }

  async typing(conv: string): Promise<void> {
    const now = Date.now();
    const last = this.#sent.get(conv);
    if ((last !== undefined && now - last < TYPING_RESEND_MS) || this.#wire.state !== "open") return;
    this.#sent.set(conv, now);
    try {
      await this.#request({ type: "typing", conv });
    } catch (err) {
      // Ephemeral: a signal lost to a rate limit, a disconnect or close() matters to no one, and
      // callers fire it on every keystroke without awaiting.
      if (err instanceof NatterError && (err.code === "RATE_LIMITED" || err.code === "DISCONNECTED" || err.code === "CLOSED")) return;
      throw err;
    }
  }
}
