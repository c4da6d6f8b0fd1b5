// Stand-ins for the connection in unit tests of the client's parts (requests, outbox, …): a
// socket that records what the part puts on the wire, and a Wire the test moves through the
// connection's states by hand; and a socket the test plays the server on, for the client whole.
import type { Wire } from "../src/connection.js";
import type { ConnectionState } from "../src/events.js";
import type { WebSocketLike } from "../src/options.js";

/** An open socket that records every frame sent on it. */
export class RecordingSocket implements WebSocketLike {
  readyState = 1;
  readonly sent: Record<string, unknown>[] = [];
  onopen: unknown = null;
  onmessage: unknown = null;
  onclose: unknown = null;
  onerror: unknown = null;
  send(data: string): void {
    this.sent.push(JSON.parse(data) as Record<string, unknown>);
  }
  close(): void {
    this.readyState = 3;
  }
  /** The frames of `type` sent so far. */
  frames(type: string): Record<string, unknown>[] {
    return this.sent.filter((f) => f.type === type);
  }
}

/** A connection the test drives: `welcome()` gives it a fresh welcomed socket, `drop()` takes it away. */
export class FakeWire implements Wire {
  state: ConnectionState = "connecting";
  socket: RecordingSocket | undefined;
  autoConnects = 0;
  autoConnect(): void {
    this.autoConnects++;
  }
  welcome(): RecordingSocket {
    this.state = "open";
    this.socket = new RecordingSocket();
    return this.socket;
  }
  drop(): void {
    this.state = "reconnecting";
    this.socket = undefined;
  }
}

/** Numbers refs as the client does: one counter for requests and sends. */
export function refCounter(): () => number {
  let n = 1;
  return () => n++;
}

/**
 * A socket the test plays the server on, for tests of the client as a whole: every one made is in
 * `ScriptedSocket.all` (clear it per test); it opens on the next microtask.
 */
export class ScriptedSocket implements WebSocketLike {
  static all: ScriptedSocket[] = [];
  readyState = 0;
  readonly sent: Record<string, unknown>[] = [];
  closedWith: number | undefined;
  onopen: (() => void) | null = null;
  onmessage: ((ev: { data: string }) => void) | null = null;
  onclose: ((ev: { code: number }) => void) | null = null;
  onerror: (() => void) | null = null;
  readonly url: string;
  constructor(url: string) {
    this.url = url;
    ScriptedSocket.all.push(this);
    queueMicrotask(() => {
      if (this.readyState !== 0) return;
      this.readyState = 1;
      this.onopen?.();
    });
  }
  send(data: string): void {
    this.sent.push(JSON.parse(data) as Record<string, unknown>);
  }
  close(code?: number): void {
    this.closedWith = code;
    this.readyState = 3;
  }
  serverSends(frame: Record<string, unknown>): void {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }
  serverCloses(code: number): void {
    this.readyState = 3;
    this.onclose?.({ code });
  }
}
