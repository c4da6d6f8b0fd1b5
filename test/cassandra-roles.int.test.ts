// natter on a Cassandra set up as compose sets it up: logins and permissions on by the very
// `-D` settings of compose's cassandra service (over a cassandra.yaml that says AllowAll, as the
// image's does), the roles and grants of deploy/cassandra/*.cql run as the superuser, `migrate`
// as the schema's owner and the stores as natter's role. The message store and image index
// conformance suites pass as natter; what natter and migrate do not do is refused.
// Its own Cassandra (the run's shared one has no authentication): about 10 s more on a warm machine.
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import cassandra from "cassandra-driver";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { loadConfig, REPO_ROOT, type CassandraStoreConfig } from "../config/index.ts";
import { cassandraLibDir } from "../config/tools.ts";
import { cassandraJvmArgsPath } from "../scripts/obtain.ts";
import { NatterError } from "../core/errors.ts";
import { silentLogger } from "../core/logger.ts";
import { CassandraMessageStore, migrateCassandra } from "../persistence/index.ts";
import { imageIndexConformance } from "./conformance/image-index.ts";
import { messageStoreConformance } from "./conformance/message-store.ts";
import { launchCassandra, type CassandraLogin, type CassandraServer } from "./harness/cassandra.ts";
import { randomId, recordProcess } from "./harness/processes.ts";
import { cqlStatements, GRANTS_CQL, ROLES_CQL } from "./support/deploy.ts";

const SUPERUSER: CassandraLogin = { username: "cassandra", password: "cassandra" };
const values = {
  KEYSPACE: `natter_${randomId(8)}`,
  MIGRATE_ROLE: "natter_migrate",
  MIGRATE_PASSWORD: randomId(32),
  NATTER_ROLE: "natter",
  NATTER_PASSWORD: randomId(32),
};
const MIGRATE: CassandraLogin = { username: values.MIGRATE_ROLE, password: values.MIGRATE_PASSWORD };
const NATTER: CassandraLogin = { username: values.NATTER_ROLE, password: values.NATTER_PASSWORD };

/** The `-D…` arguments compose gives its (long-running) cassandra service. */
function composeCassandraSettings(): string[] {
  const compose = parseYaml(readFileSync(path.join(REPO_ROOT, "compose.yaml"), "utf8"), { merge: true }) as {
    services: Record<string, { image?: string; restart?: string; command?: unknown }>;
  };
  const server = Object.values(compose.services).find((s) => s.image?.startsWith("cassandra:") && s.restart !== "no");
  const args = (Array.isArray(server?.command) ? server.command : []).map(String).filter((a) => a.startsWith("-D"));
  if (args.length === 0) throw new Error("compose.yaml: the cassandra service passes no -D settings");
  return args;
}

/** What the image's cassandra.yaml (5.0) says about logins and permissions: compose's settings must turn it over. */
const IMAGE_YAML = `authenticator:
  class_name : org.apache.cassandra.auth.AllowAllAuthenticator
authorizer:
  class_name: AllowAllAuthorizer
`;

/**
 * This test's own: no permissions cache (Cassandra's default keeps what a role may do for 2 s),
 * so a REVOKE below is refused on the next statement. It changes when, not what, Cassandra allows.
 */
const NO_PERMISSIONS_CACHE = `permissions_validity: 0ms
`;

const UNAUTHORIZED = cassandra.types.responseErrorCodes.unauthorized;

describe("natter on a Cassandra with compose's authentication and roles", () => {
  let server: CassandraServer;
  let admin: cassandra.Client;
  const clients: cassandra.Client[] = [];

  const client = (login?: CassandraLogin, keyspace?: string) => {
    const c = new cassandra.Client({
      contactPoints: [server.endpoint.contactPoint],
      localDataCenter: server.endpoint.localDataCenter,
      ...(login ? { credentials: login } : {}),
      ...(keyspace ? { keyspace } : {}),
    });
    clients.push(c);
    return c;
  };
  const storeConfig = (login?: CassandraLogin): CassandraStoreConfig => {
    const cfg = loadConfig({
      env: {},
      overrides: {
        store: {
          kind: "cassandra",
          contactPoints: [server.endpoint.contactPoint],
          localDataCenter: server.endpoint.localDataCenter,
          keyspace: values.KEYSPACE,
          consistency: "ONE",
          migrateOnStart: false,
          ...(login ? { username: login.username, password: login.password } : {}),
        },
      },
    });
    if (cfg.store.kind !== "cassandra") throw new Error("expected a cassandra store config");
    return cfg.store;
  };
  /** The driver's error code a statement fails with (undefined if it succeeds). */
  const refusal = (c: cassandra.Client, cql: string) =>
    c.execute(cql).then(
      () => undefined,
      (err: unknown) => (err as { code?: number }).code ?? String(err),
    );

  beforeAll(async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "natter-cass-auth-"));
    server = await launchCassandra({
      dir,
      onSpawn: (pid) => recordProcess(pid, "cassandra", dir),
      yaml: IMAGE_YAML + NO_PERMISSIONS_CACHE,
      // The default superuser at once, not 10 s after start (compose's setup job waits for it).
      jvmArgs: [...composeCassandraSettings(), "-Dcassandra.superuser_setup_delay_ms=0"],
      login: SUPERUSER,
    });
    // As compose's jobs do: cassandra-setup's roles, migrate as the schema's owner, cassandra-grants.
    admin = client(SUPERUSER);
    for (const st of cqlStatements(ROLES_CQL, values)) await admin.execute(st);
    await migrateCassandra(storeConfig(MIGRATE), silentLogger());
    for (const st of cqlStatements(GRANTS_CQL, values)) await admin.execute(st);
    // Another application's keyspace, which neither role may touch.
    await admin.execute("CREATE KEYSPACE other_app WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}");
    await admin.execute("CREATE TABLE other_app.secrets (id int PRIMARY KEY, v text)");
  });
  afterAll(async () => {
    try {
      await Promise.allSettled(clients.map((c) => c.shutdown()));
    } finally {
      await server?.stop();
    }
  });

  it("compose's settings turn on PasswordAuthenticator and CassandraAuthorizer: no login, no connection", async () => {
    const rs = await admin.execute("SELECT name, value FROM system_views.settings WHERE name IN ('authenticator', 'authorizer')");
    const settings = Object.fromEntries(rs.rows.map((r) => [r.get("name") as string, r.get("value") as string]));
    expect(settings.authenticator).toMatch(/PasswordAuthenticator/);
    expect(settings.authorizer).toMatch(/CassandraAuthorizer/);
    await expect(client().connect()).rejects.toThrow(/requires authentication/);
  });

  it("the healthcheck's `nodetool statusbinary` needs no login and says running", async () => {
    const { stdout } = await promisify(execFile)(
      "java",
      // The JVM options the server runs with (Java 17's module opens), as bin/nodetool passes its own.
      [`@${cassandraJvmArgsPath()}`, "-cp", `${cassandraLibDir()}/*`, "org.apache.cassandra.tools.NodeTool", "-h", "127.0.0.1", "-p", String(server.jmxPort), "statusbinary"],
      { timeout: 60_000 },
    );
    // Its last line (before it, the tool's own logging: the image's nodetool sends that elsewhere).
    expect(stdout.trim().split("\n").at(-1)).toBe("running");
  });

  it("a node with no login or a wrong password does not start: UNAVAILABLE, saying why", async () => {
    for (const [login, why] of [
      [undefined, /requires authentication/],
      [{ ...NATTER, password: "wrong-password" }, /incorrect/],
    ] as const) {
      const err = await CassandraMessageStore.open(storeConfig(login)).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(NatterError);
      expect(err).toMatchObject({ code: "UNAVAILABLE" });
      expect(String((err as NatterError).cause) + JSON.stringify((err as NatterError).cause)).toMatch(why);
    }
  });

  it("migrate, as the schema's owner, made the keyspace and runs again as a no-op", async () => {
    expect(await migrateCassandra(storeConfig(MIGRATE), silentLogger())).toEqual([]);
  });

  it("migrate needs CREATE ON ALL KEYSPACES even once the keyspace exists (why roles.cql grants it)", async () => {
    await admin.execute(`REVOKE CREATE ON ALL KEYSPACES FROM ${values.MIGRATE_ROLE}`);
    try {
      const err = await migrateCassandra(storeConfig(MIGRATE), silentLogger()).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toMatchObject({ code: "UNAVAILABLE", cause: { code: UNAUTHORIZED } });
    } finally {
      await admin.execute(`GRANT CREATE ON ALL KEYSPACES TO ${values.MIGRATE_ROLE}`);
    }
  });

  messageStoreConformance("Cassandra as natter's role", () => CassandraMessageStore.open(storeConfig(NATTER)));
  imageIndexConformance("Cassandra as natter's role", () => CassandraMessageStore.open(storeConfig(NATTER)));

  it("natter's role reads and writes rows and may do nothing else", async () => {
    const natter = client(NATTER, values.KEYSPACE);
    const ks = values.KEYSPACE;
    for (const cql of [
      `CREATE TABLE ${ks}.extra (id int PRIMARY KEY)`,
      `ALTER TABLE ${ks}.messages ADD extra text`,
      `DROP TABLE ${ks}.messages`,
      `DROP KEYSPACE ${ks}`,
      "CREATE KEYSPACE more WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
      "SELECT * FROM other_app.secrets",
      "INSERT INTO other_app.secrets (id, v) VALUES (1, 'x')",
      "SELECT * FROM system_auth.roles",
      `GRANT SELECT ON KEYSPACE other_app TO ${values.NATTER_ROLE}`,
      `GRANT DROP ON KEYSPACE ${ks} TO ${values.NATTER_ROLE}`,
      "CREATE ROLE intruder WITH LOGIN = true AND PASSWORD = 'intruder-password'",
    ]) {
      expect({ cql, code: await refusal(natter, cql) }).toEqual({ cql, code: UNAUTHORIZED });
    }
  });

  it("migrate's role changes natter's schema but not another keyspace, nor any role", async () => {
    const migrate = client(MIGRATE);
    expect(await refusal(migrate, `CREATE TABLE IF NOT EXISTS ${values.KEYSPACE}.later (id int PRIMARY KEY)`)).toBeUndefined();
    for (const cql of [
      "SELECT * FROM other_app.secrets",
      "DROP TABLE other_app.secrets",
      "SELECT * FROM system_auth.roles",
      `ALTER ROLE ${values.NATTER_ROLE} WITH PASSWORD = 'taken-over-password'`,
      "CREATE ROLE intruder WITH LOGIN = true AND PASSWORD = 'intruder-password'",
    ]) {
      expect({ cql, code: await refusal(migrate, cql) }).toEqual({ cql, code: UNAUTHORIZED });
    }
  });

  it("the setup's CQL runs again without error (every `docker compose up` runs it)", async () => {
    for (const st of [...cqlStatements(ROLES_CQL, values), ...cqlStatements(GRANTS_CQL, values)]) await admin.execute(st);
    await client(NATTER).connect();
  });
});
