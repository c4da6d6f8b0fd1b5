// What a NatterClient is constructed with: its options and the WebSocket shape it needs. The parts
// of the client read their own few options from this one object when they use them, as the client
// always has, so every part sees the same values.
import type { BackoffOptions } from "./backoff.js";
import type { CursorStore } from "./cursor-store.js";
import type { DiscoveryOptions } from "./discovery.js";

/**
 * The part of the WebSocket API the client uses; the browser's WebSocket and the `ws` package's
 * both fit. Handlers are typed `unknown` so that either implementation's own handler types fit.
 */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: unknown;
  onmessage: unknown;
  onclose: unknown;
  onerror: unknown;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/**
 * Asked for a token before every connection attempt; `refresh` after the server refused the last
 * one (close 4401), and when the server says the open socket's token expired (`token.expired`:
 * the client sends the fresh token on the socket, which stays open).
 */
export type TokenProvider = (reason: "connect" | "refresh") => string | Promise<string>;

export interface NatterClientOptions {
  /**
   * The edge: `http(s)://host:port` or `ws(s)://host:port/ws`, or a function asked before every
   * attempt (your own discovery). Give either this or `discovery`.
   */
  url?: string | (() => string | Promise<string>);
  /**
   * Ask `GET /discovery` on `bootstrap` before connecting and go through the edges it recommends:
   * on a failed attempt, a dropped connection, a close 1001 or 4503 to the next one; a list used up
   * or older than `maxAgeMs` is asked for again. Give either this or `url`.
   */
  discovery?: DiscoveryOptions;
  /** The user the token is for; the cursor is kept per user and device. */
  user: string;
  /** This device's stable id (1–64 of `A-Z a-z 0-9 _ -`): the server keeps one position per device. */
  device: string;
  /** A token, or a function that returns a fresh one (called before every connection attempt). */
  token: string | TokenProvider;
  /** Where the cursor survives restarts. Default: memory (lost when the process ends). */
  cursorStore?: CursorStore;
  /** The WebSocket implementation: default `globalThis.WebSocket` (browsers); pass `ws`'s in Node 20. */
  WebSocket?: WebSocketConstructor;
  /** Reconnect backoff. Default: 250 ms doubling up to 30 s, jittered. */
  backoff?: BackoffOptions;
  /** How long a request (not a send) waits for its reply. Default 15 s. */
  requestTimeoutMs?: number;
  /** How long a send is retried before it rejects with TIMEOUT. Default 5 min (the server deduplicates for 10). */
  sendTimeoutMs?: number;
  /**
   * Sends in flight at once. Default 1: sends are stored in the order they were made. Keep it within
   * the server's frames in flight per socket (`edge.maxInFlightPerSocket`, 16 by default, less any
   * requests you make meanwhile): a send beyond it is refused RATE_LIMITED and retried with backoff.
   */
  sendWindow?: number;
  /** A ping this often (more often if the server's welcome asks for heartbeats); no answer by the next one drops the connection. Default 20 s; 0 turns it off. */
  pingIntervalMs?: number;
  /** A connection attempt that is not welcomed within this time is dropped and retried. Default 10 s. */
  handshakeTimeoutMs?: number;
}
