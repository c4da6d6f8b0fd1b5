// Presence and service discovery on NATS KV with per-key TTL. The public surface of presence/.
export type { ChangeFeed, DeviceChange, PresenceStore, Touch, UserPresence, UserRecord } from "./store.ts";
export { NatsKvPresence, type NatsKvPresenceOptions } from "./nats-kv-presence.ts";
export { MemoryPresence } from "./memory-presence.ts";
export { DevicePresence, type DeviceHandle, type DevicePresenceOptions } from "./device-presence.ts";
export { PresenceWorker, presenceOf, entryOf, type PresenceEntry, type PresenceWorkerDeps } from "./worker.ts";
export { natsNotifier, parsePresenceEntry, PresenceEntrySchema } from "./notify.ts";
export {
  EdgeRegistry,
  rankEdges,
  EDGE_TOMBSTONE_TTL_S,
  type EdgeInfo,
  type EdgeRegistration,
  type EdgeRegistryOptions,
  type EdgeSelf,
  type RankedEdge,
} from "./edges.ts";
export { ensurePresenceBuckets, presenceStreams, presenceBucketConfig, presenceUsersBucketConfig, edgesBucketConfig } from "./buckets.ts";
