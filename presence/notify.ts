// Live presence goes to a user's connected devices over core NATS, on the user's presence subject
// (`presence.<shard>.<user>`), which each edge subscribes to for the users connected to it.
// Ephemeral by design: never stored; a device that was away asks with a `presence` query.
import { headers, type NatsConnection } from "@nats-io/transport-node";
import { z } from "zod";
import { decodeJson, encodeJson, presenceSubject, type Topology } from "../nats/index.ts";
import type { PresenceEntry } from "./worker.ts";

const PresenceEntrySchema = z.object({
  user: z.string(),
  online: z.boolean(),
  lastSeen: z.number().optional(),
  rev: z.number().int().min(0),
});

export function natsNotifier(nc: NatsConnection, topology: Topology): (recipients: readonly string[], entry: PresenceEntry) => void {
  return (recipients, entry) => {
    const data = encodeJson(entry);
    for (const r of recipients) nc.publish(presenceSubject(topology, r), data);
  };
}

/**
 * The count of a user's online devices, on its own presence subject: a message with no body and
 * this header, which edges read and never pass to clients.
 */
export const DEVICES_HEADER = "Natter-Devices";

export function natsDeviceCounter(nc: NatsConnection, topology: Topology): (user: string, count: number) => void {
  return (user, count) => {
    const h = headers();
    h.set(DEVICES_HEADER, String(count));
    nc.publish(presenceSubject(topology, user), new Uint8Array(0), { headers: h });
  };
}

/** A presence entry received on a presence subject, or null when it is not one. */
export function parsePresenceEntry(data: Uint8Array): PresenceEntry | null {
  try {
    const r = PresenceEntrySchema.safeParse(decodeJson(data));
    return r.success ? r.data : null;
  } catch {
    return null;
  }
}
