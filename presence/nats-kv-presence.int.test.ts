// NatsKvPresence against a real nats-server: the conformance suite, plus what only the KV shows
// (the bucket's settings, the expiry marker, tombstones that do not pile up).
import { jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ConfigSchema } from "../config/index.ts";
import { silentLogger } from "../core/logger.ts";
import { names } from "../nats/index.ts";
import { presenceStoreConformance } from "../test/conformance/presence-store.ts";
import { useNats } from "../test/harness/nats.ts";
import { ensurePresenceBuckets } from "./buckets.ts";
import { NatsKvPresence } from "./nats-kv-presence.ts";

const nats = useNats();
const cfg = ConfigSchema.parse({ presence: { ttlSec: 2, markerTtlSec: 3 } });
let nc: NatsConnection;
let jsm: JetStreamManager;

beforeAll(async () => {
  nc = await connect({ servers: nats.url });
  jsm = await jetstreamManager(nc);
  await ensurePresenceBuckets(jsm, cfg.streams, cfg.presence);
});
afterAll(async () => {
  await nc?.close();
});

const open = (ttlSec: number) => new NatsKvPresence({ nc, js: jetstream(nc), jsm, ttlSec, markerTtlSec: cfg.presence.markerTtlSec, log: silentLogger() });

presenceStoreConformance("NatsKvPresence", (ttlSec) => ({ store: open(ttlSec), close: () => undefined }));

describe("NatsKvPresence bucket", () => {
  test("is a KV bucket with per-key TTL and limit markers, history 1; ensuring it again changes nothing", async () => {
    const info = await jsm.streams.info(names.kvStream(names.presenceBucket));
    expect(info.config).toMatchObject({
      subjects: ["$KV.presence.>"],
      max_msgs_per_subject: 1,
      allow_msg_ttl: true,
      subject_delete_marker_ttl: 3_000_000_000,
      allow_direct: true,
      allow_rollup_hdrs: true,
      num_replicas: 1,
    });
    await ensurePresenceBuckets(jsm, cfg.streams, cfg.presence);
    expect((await jsm.streams.info(names.kvStream(names.presenceBucket))).config).toEqual(info.config);
  });

  test("markers and leave tombstones vanish after markerTtlSec: nothing piles up", async () => {
    const ttlMs = 2000;
    const markerTtlMs = cfg.presence.markerTtlSec * 1000;
    const store = open(ttlMs / 1000);
    const a = await store.touch("tomb_a", "d");
    const touchingB = Date.now();
    await store.touch("tomb_b", "d");
    const leaving = Date.now();
    expect(await store.leave("tomb_a", "d", a.revision)).toBe(true);
    const subjects = async () => {
      const it = await jsm.direct.getLastMessagesFor(names.kvStream(names.presenceBucket), { multi_last: ["$KV.presence.tomb_a.*", "$KV.presence.tomb_b.*"] }).catch(() => undefined);
      const out: string[] = [];
      if (it) for await (const sm of it) out.push(`${sm.subject}:${sm.header?.get("KV-Operation") || sm.header?.get("Nats-Marker-Reason") || "PUT"}`);
      return out.sort();
    };
    const [tombstone, live, marker] = ["$KV.presence.tomb_a.d:PURGE", "$KV.presence.tomb_b.d:PUT", "$KV.presence.tomb_b.d:MaxAge"];
    expect(await subjects()).toEqual([tombstone, live]);
    // tomb_b expires ttl after its touch, leaving a MaxAge marker; the marker and tomb_a's
    // tombstone each live markerTtlSec. Watch until nothing is left, noting when each look was answered by.
    const looks: { by: number; subjects: string[] }[] = [];
    await expect
      .poll(
        async () => {
          const now = await subjects();
          looks.push({ by: Date.now(), subjects: now });
          return now;
        },
        { timeout: ttlMs + markerTtlMs + 10_000, interval: 100 },
      )
      .toEqual([]);
    // Only these records, and the marker was there to be seen.
    for (const l of looks) expect([tombstone, live, marker]).toEqual(expect.arrayContaining(l.subjects));
    const markerSeen = looks.findIndex((l) => l.subjects.includes(marker));
    expect(markerSeen).toBeGreaterThanOrEqual(0);
    // Neither went before markerTtlSec: the tombstone was written after `leaving`; tomb_b's marker
    // at its expiry, at least ttl after `touchingB`.
    for (const l of looks.filter((l) => l.by < leaving + markerTtlMs)) expect(l.subjects).toContain(tombstone);
    for (const l of looks.slice(markerSeen).filter((l) => l.by < touchingB + ttlMs + markerTtlMs)) expect(l.subjects).toContain(marker);
    // And tomb_b did not expire before its ttl.
    for (const l of looks.filter((l) => l.by < touchingB + ttlMs)) expect(l.subjects).toContain(live);
  });
});
