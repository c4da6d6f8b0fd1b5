// Small helpers with no dependency on the platform beyond what browsers and Node 20 share.
import { NatterError } from "./errors.js";

/**
 * The WebSocket URL for an edge: `http(s)://host[:port]` becomes `ws(s)://host[:port]/ws`; a
 * `ws(s)://` URL with a path is used as it is.
 */
export function toWebSocketUrl(url: string): string {
  const u = new URL(url);
  if (u.protocol === "http:") u.protocol = "ws:";
  else if (u.protocol === "https:") u.protocol = "wss:";
  else if (u.protocol !== "ws:" && u.protocol !== "wss:") throw new TypeError(`not an http(s) or ws(s) URL: ${url}`);
  if (u.pathname === "" || u.pathname === "/") u.pathname = "/ws";
  return u.toString();
}

/** The HTTP base of an edge (`http(s)://host[:port]`) from any URL the client accepts for it. */
export function toHttpUrl(url: string): string {
  const u = new URL(url);
  if (u.protocol === "ws:") u.protocol = "http:";
  else if (u.protocol === "wss:") u.protocol = "https:";
  else if (u.protocol !== "http:" && u.protocol !== "https:") throw new TypeError(`not an http(s) or ws(s) URL: ${url}`);
  return u.origin;
}

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/**
 * A fresh client message id: 22 characters of `A-Z a-z 0-9 - _` (132 random bits). Uses
 * crypto.getRandomValues, which browsers offer on plain http pages too (unlike randomUUID).
 */
export function newClientId(): string {
  const bytes = new Uint8Array(22);
  globalThis.crypto.getRandomValues(bytes);
  let id = "";
  for (const b of bytes) id += ALPHABET[b & 63];
  return id;
}

/** POST /dev/token on a natter started with --dev: a token for any user name (development only). */
export async function devToken(url: string, user: string): Promise<string> {
  const u = new URL(url);
  if (u.protocol === "ws:") u.protocol = "http:";
  else if (u.protocol === "wss:") u.protocol = "https:";
  const res = await fetch(new URL("/dev/token", u), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user }),
  });
  const body = (await res.json().catch(() => ({}))) as { token?: string; error?: { code?: string; message?: string; temporary?: boolean } };
  if (!res.ok || typeof body.token !== "string") {
    const message = body.error?.message ?? (res.status === 404 ? "no /dev/token here: is natter running with --dev?" : `HTTP ${res.status}`);
    throw new NatterError(body.error?.code ?? (res.status === 404 ? "FORBIDDEN" : "UNAVAILABLE"), `POST /dev/token: ${message}`, {
      temporary: body.error?.temporary ?? res.status >= 500,
    });
  }
  return body.token;
}
