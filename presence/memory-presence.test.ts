import { presenceStoreConformance } from "../test/conformance/presence-store.ts";
import { MemoryPresence } from "./memory-presence.ts";

presenceStoreConformance("MemoryPresence", (ttlSec) => {
  const store = new MemoryPresence({ ttlMs: ttlSec * 1000 });
  return { store, close: () => store.close() };
});
