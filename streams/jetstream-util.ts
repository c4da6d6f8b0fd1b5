// Small readings of JetStream answers that several modules need.
import type { MsgHdrs } from "@nats-io/transport-node";

/** A "not found" from JetStream: a missing message, key or subject (API status or direct-get 404). */
export function isNotFound(err: unknown): boolean {
  const e = err as { status?: unknown; code?: unknown; message?: unknown } | undefined;
  return e?.status === 404 || e?.code === 404 || /no message found/i.test(String(e?.message));
}

export type KvOperation = "PUT" | "DEL" | "PURGE";

/** The KV operation of a stored or consumed bucket message; an expiry marker counts as PURGE. */
export function kvOperation(h: MsgHdrs | undefined): KvOperation {
  if (h?.has("Nats-Marker-Reason")) return "PURGE";
  const op = h?.get("KV-Operation");
  return op === "DEL" || op === "PURGE" ? op : "PUT";
}
