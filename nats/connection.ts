// natter's NATS connection: one per process, shared by the edge and the workers.
//
// Writes are coalesced. nats.js writes its outbound buffer to the socket once per microtask, so
// code that publishes after an await (an ack after a store write, a send after a membership
// check) costs one socket write per message; measured: 100,000 publishes issued one per microtask
// took 100,001 writes and 1 s of CPU, and 85 writes and 0.1 s when flushed once the microtask
// queue drains (process.nextTick: never later than the current turn of the event loop). nats.js
// has no option for this, so the connection's protocol handler gets a deferred flush; a test
// (nats/connection.int.test.ts) checks it still takes with the installed nats.js.
import { connect, type ConnectionOptions, type NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "../core/index.ts";

/** Buffered bytes past which a flush happens at once (bounds memory in tight loops). */
const FLUSH_AT_BYTES = 256 * 1024;

interface ProtocolInternals {
  flushPending(): void;
  outbound: { size(): number };
}

/**
 * Makes `nc` write once per drained microtask queue instead of once per microtask. False (and
 * nothing changed) when the nats.js internals it relies on are not there.
 */
function coalesceWrites(nc: NatsConnection): boolean {
  const p = (nc as unknown as { protocol?: Partial<ProtocolInternals> }).protocol;
  if (!p || typeof p.flushPending !== "function" || typeof p.outbound?.size !== "function") return false;
  const protocol = p as ProtocolInternals;
  const flushNow = protocol.flushPending.bind(protocol);
  let scheduled = false;
  const run = () => {
    scheduled = false;
    flushNow();
  };
  protocol.flushPending = () => {
    if (protocol.outbound.size() >= FLUSH_AT_BYTES) {
      flushNow();
      return;
    }
    if (!scheduled) {
      scheduled = true;
      process.nextTick(run);
    }
  };
  return true;
}

export interface NatsConnectOptions extends ConnectionOptions {
  log?: Logger | undefined;
}

/** Connects the way natter's processes do: reconnecting forever, no async stack traces, coalesced writes. */
export async function connectNats(opts: NatsConnectOptions): Promise<NatsConnection> {
  const { log, ...options } = opts;
  const nc = await connect({
    maxReconnectAttempts: -1,
    // A stack trace captured for every request (a timer error and an error context) cost ~8% of
    // the process's CPU in the bench:burst profile; errors still say which operation failed.
    noAsyncTraces: true,
    ...options,
  });
  if (!coalesceWrites(nc)) log?.warn("nats.js internals changed: socket writes are not coalesced (slower, still correct)");
  return nc;
}
