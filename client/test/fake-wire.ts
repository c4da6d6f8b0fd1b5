// Stand-ins for the connection in unit tests of the client's parts (requests, outbox, …): a
// socket that records what the part puts on the wire, and a Wire the test moves through the
// connection's states by hand.
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
