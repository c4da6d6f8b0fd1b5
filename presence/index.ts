// Presence and service discovery on NATS KV with per-key TTL. The public surface of presence/.
export type { DeviceChange, PresenceStore } from "./store.ts";
export { NatsKvPresence } from "./nats-kv-presence.ts";
export { DevicePresence, type DeviceHandle } from "./device-presence.ts";
export { PresenceWorker, presenceOf, type PresenceEntry } from "./worker.ts";
export { DEVICES_HEADER, natsDeviceCounter, natsNotifier, parsePresenceEntry } from "./notify.ts";
export { EdgeRegistry, rankEdges, type EdgeRegistration } from "./edges.ts";
export { ensurePresenceBuckets, presenceStreams } from "./buckets.ts";
