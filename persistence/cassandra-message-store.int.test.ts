import { silentLogger } from "../core/logger.ts";
import { imageIndexConformance } from "../test/conformance/image-index.ts";
import { messageStoreConformance } from "../test/conformance/message-store.ts";
import { useKeyspace } from "../test/harness/cassandra.ts";
import { loadConfig } from "../config/index.ts";
import { describe, expect, it } from "vitest";
import { CassandraMessageStore, migrateCassandra } from "./cassandra-message-store.ts";
import { MIGRATIONS } from "./cassandra-schema.ts";

const ks = useKeyspace();

function storeConfig() {
  const cfg = loadConfig({
    env: {},
    overrides: { store: { kind: "cassandra", contactPoints: [ks.contactPoint], localDataCenter: ks.localDataCenter, keyspace: ks.keyspace, consistency: "ONE" } },
  });
  if (cfg.store.kind !== "cassandra") throw new Error("expected a cassandra store config");
  return cfg.store;
}

describe("cassandra migrations", () => {
  it("apply once, record their versions, and are a no-op the second time", async () => {
    const first = await migrateCassandra(storeConfig(), silentLogger());
    expect(first).toEqual(MIGRATIONS.map((m) => m.version));
    expect(await migrateCassandra(storeConfig(), silentLogger())).toEqual([]);
    const rs = await ks.client.execute("SELECT version FROM schema_migrations");
    expect(rs.rows.map((r) => r.get("version") as number).sort()).toEqual(MIGRATIONS.map((m) => m.version));
  });
});

messageStoreConformance("Cassandra", async () => {
  await migrateCassandra(storeConfig(), silentLogger());
  return CassandraMessageStore.open(storeConfig());
});

imageIndexConformance("Cassandra", async () => {
  await migrateCassandra(storeConfig(), silentLogger());
  return CassandraMessageStore.open(storeConfig());
});
