import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { NatterError } from "../core/errors.ts";
import { loadConfig } from "./index.ts";

const dir = mkdtempSync(path.join(os.tmpdir(), "natter-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function problems(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(NatterError);
    expect((err as NatterError).code).toBe("CONFIG_INVALID");
    return (err as Error).message;
  }
  throw new Error("expected the configuration to be refused");
}

describe("loadConfig", () => {
  it("gives the embedded single-node defaults with no file and no variables", () => {
    const cfg = loadConfig({ env: {} });
    expect(cfg.edge).toMatchObject({ host: "127.0.0.1", port: 8080, enabled: true });
    expect(cfg.store).toEqual({ kind: "sqlite" });
    expect(cfg.blobs).toEqual({ kind: "fs" });
    expect(cfg.nats.servers).toBeUndefined();
    expect(cfg.streams.replicas).toBe(1);
  });

  it("reads NATTER_* variables with sections split by __ and typed values", () => {
    const cfg = loadConfig({
      env: {
        NATTER_EDGE__PORT: "9001",
        NATTER_STORE__KIND: "cassandra",
        NATTER_STORE__CONTACT_POINTS: "c1:9042, c2:9042",
        NATTER_STORE__REPLICATION__CLASS: "NetworkTopologyStrategy",
        NATTER_STORE__REPLICATION__DATA_CENTERS: '{"dc1":3}',
        NATTER_BLOBS__KIND: "s3",
        NATTER_BLOBS__END_POINT: "minio",
        NATTER_BLOBS__USE_SSL: "true",
        NATTER_BLOBS__ACCESS_KEY: "a",
        NATTER_BLOBS__SECRET_KEY: "s",
        NATTER_BLOBS__BUCKET: "natter-blobs",
        NATTER_CACHE_DIR: "/not/a/setting",
      },
    });
    expect(cfg.edge.port).toBe(9001);
    expect(cfg.store).toMatchObject({ kind: "cassandra", contactPoints: ["c1:9042", "c2:9042"], consistency: "LOCAL_QUORUM" });
    expect(cfg.store.kind === "cassandra" && cfg.store.replication).toEqual({ class: "NetworkTopologyStrategy", dataCenters: { dc1: 3 } });
    expect(cfg.blobs).toMatchObject({ kind: "s3", endPoint: "minio", useSSL: true, port: 9000 });
  });

  it("lets variables override the file", () => {
    const file = path.join(dir, "natter.yaml");
    writeFileSync(file, "edge:\n  port: 7000\n  region: eu\nstreams:\n  replicas: 3\n");
    const cfg = loadConfig({ file, env: { NATTER_EDGE__PORT: "7001" } });
    expect(cfg.edge).toMatchObject({ port: 7001, region: "eu" });
    expect(cfg.streams.replicas).toBe(3);
  });

  it("reports every problem at once: unknown keys, unknown variables, bad values", () => {
    const file = path.join(dir, "bad.json");
    writeFileSync(file, JSON.stringify({ edge: { prot: 1 }, colour: "blue", streams: { replicas: 9 } }));
    const message = problems(() => loadConfig({ file, env: { NATTER_EDGE__PORT: "eighty", NATTER_TYPO: "1" } }));
    expect(message).toMatch(/5 problems/);
    expect(message).toContain("edge.prot: unknown setting");
    expect(message).toContain("colour: unknown setting");
    expect(message).toContain("NATTER_TYPO: unknown setting");
    expect(message).toContain("NATTER_EDGE__PORT (edge.port)");
    expect(message).toContain("streams.replicas");
  });

  it("refuses an edge without workers on the embedded NATS: its workers must share a NATS with it", () => {
    expect(problems(() => loadConfig({ env: { NATTER_WORKERS__ENABLED: "false" } }))).toContain("an edge without workers (workers.enabled false, or --role edge) needs nats.servers");
    expect(loadConfig({ env: { NATTER_WORKERS__ENABLED: "false", NATTER_NATS__SERVERS: "nats://n1:4222" } }).edge.enabled).toBe(true);
  });

  it("names the missing fields of a backend choice", () => {
    const message = problems(() => loadConfig({ env: { NATTER_BLOBS__KIND: "s3" } }));
    for (const field of ["blobs.endPoint", "blobs.accessKey", "blobs.secretKey", "blobs.bucket"]) expect(message).toContain(field);
    expect(problems(() => loadConfig({ env: { NATTER_STORE__KIND: "postgres" } }))).toContain("store.kind");
  });

  it("says which file could not be read or parsed", () => {
    expect(problems(() => loadConfig({ file: path.join(dir, "missing.yaml"), env: {} }))).toContain("cannot read config file");
    const broken = path.join(dir, "broken.json");
    writeFileSync(broken, "{ nope");
    expect(problems(() => loadConfig({ file: broken, env: {} }))).toContain("is not valid JSON");
  });

  it("takes one NATS identity per role, in one of three forms, for nats.servers only", () => {
    const servers = { NATTER_NATS__SERVERS: "nats://n1:4222" };
    const cfg = loadConfig({
      env: {
        ...servers,
        NATTER_NATS__CREDENTIALS__EDGE__USER: "edge",
        NATTER_NATS__CREDENTIALS__EDGE__PASSWORD: "pw",
        NATTER_NATS__CREDENTIALS__WORKERS__NKEY_SEED_FILE: "/run/secrets/workers.nk",
        NATTER_NATS__TLS__CA_FILE: "/etc/ca.pem",
      },
    });
    expect(cfg.nats.credentials).toEqual({ edge: { user: "edge", password: "pw" }, workers: { nkeySeedFile: "/run/secrets/workers.nk" } });
    expect(cfg.nats.tls).toEqual({ caFile: "/etc/ca.pem" });
    expect(problems(() => loadConfig({ env: { ...servers, NATTER_NATS__CREDENTIALS__EDGE__USER: "edge" } }))).toContain("nats.credentials.edge: give both user and password");
    expect(
      problems(() => loadConfig({ env: { ...servers, NATTER_NATS__CREDENTIALS__EDGE__CREDS_FILE: "a.creds", NATTER_NATS__CREDENTIALS__EDGE__NKEY_SEED_FILE: "a.nk" } })),
    ).toContain("nats.credentials.edge: give exactly one of: user and password, nkeySeedFile, credsFile");
    expect(problems(() => loadConfig({ env: { ...servers, NATTER_NATS__CREDENTIALS__ADMIN__USER: "admin" } }))).toContain("NATTER_NATS__CREDENTIALS__ADMIN__USER: unknown setting");
    expect(problems(() => loadConfig({ env: { ...servers, NATTER_NATS__TLS__CERT_FILE: "c.pem" } }))).toContain("nats.tls: give both certFile and keyFile");
    expect(problems(() => loadConfig({ env: { ...servers, NATTER_NATS__TLS__ENABLED: "false", NATTER_NATS__TLS__CA_FILE: "ca.pem" } }))).toContain("enabled is false");
    // The embedded nats-server uses the identities natter generates, on loopback.
    const embedded = problems(() => loadConfig({ env: { NATTER_NATS__CREDENTIALS__EDGE__USER: "edge", NATTER_NATS__CREDENTIALS__EDGE__PASSWORD: "pw", NATTER_NATS__TLS__ENABLED: "true" } }));
    expect(embedded).toContain("nats.credentials: applies to nats.servers");
    expect(embedded).toContain("nats.tls: applies to nats.servers");
  });
});

describe("secrets", () => {
  const strong = "q3V8xTnL0wZr5KcY2mPa7GdH9sJb4EuF6iNoR1tX";

  it("reads every secret setting from the file its <VARIABLE>_FILE names, without the trailing newline", () => {
    const files: Record<string, string> = {};
    for (const [name, value] of [
      ["jwt", strong],
      ["store", "cassandra pass"],
      ["s3", "s3-secret-key"],
      ["vapid", "vapid-private"],
      ["nats", "nats pass"],
    ] as const) {
      files[name] = path.join(dir, `secret-${name}`);
      writeFileSync(files[name], `${value}\n`);
    }
    const cfg = loadConfig({
      env: {
        NATTER_AUTH__JWT_SECRET_FILE: files.jwt,
        NATTER_STORE__KIND: "cassandra",
        NATTER_STORE__PASSWORD_FILE: files.store,
        NATTER_BLOBS__KIND: "s3",
        NATTER_BLOBS__END_POINT: "minio",
        NATTER_BLOBS__ACCESS_KEY: "natter",
        NATTER_BLOBS__SECRET_KEY_FILE: files.s3,
        NATTER_BLOBS__BUCKET: "natter-blobs",
        NATTER_PUSH__VAPID__PRIVATE_KEY_FILE: files.vapid,
        NATTER_NATS__SERVERS: "nats://nats-1:4222",
        NATTER_NATS__CREDENTIALS__EDGE__USER: "edge",
        NATTER_NATS__CREDENTIALS__EDGE__PASSWORD_FILE: files.nats,
        // A setting whose own name ends in _FILE is still an ordinary setting.
        NATTER_NATS__EMBEDDED__CONFIG_FILE: "/etc/nats.conf",
      },
    });
    expect(cfg.auth.jwtSecret).toBe(strong);
    expect(cfg.store.kind === "cassandra" && cfg.store.password).toBe("cassandra pass");
    expect(cfg.blobs.kind === "s3" && cfg.blobs.secretKey).toBe("s3-secret-key");
    expect(cfg.push.vapid.privateKey).toBe("vapid-private");
    expect(cfg.nats.credentials?.edge?.password).toBe("nats pass");
    expect(cfg.nats.embedded.configFile).toBe("/etc/nats.conf");
  });

  it("names the variable and the file when a secret file is missing or empty, or given twice; _FILE of other settings is unknown", () => {
    const empty = path.join(dir, "empty-secret");
    writeFileSync(empty, "\n");
    const message = problems(() =>
      loadConfig({
        env: {
          NATTER_AUTH__JWT_SECRET_FILE: path.join(dir, "no-such-secret"),
          NATTER_NATS__CREDENTIALS__EDGE__PASSWORD_FILE: empty,
          NATTER_STORE__KIND: "cassandra",
          NATTER_STORE__PASSWORD: "a",
          NATTER_STORE__PASSWORD_FILE: empty,
          NATTER_EDGE__PORT_FILE: "/run/secrets/port",
        },
      }),
    );
    expect(message).toContain(`NATTER_AUTH__JWT_SECRET_FILE: cannot read the secret file ${path.join(dir, "no-such-secret")}: ENOENT`);
    expect(message).toContain(`NATTER_NATS__CREDENTIALS__EDGE__PASSWORD_FILE: the secret file ${empty} is empty`);
    expect(message).toContain("NATTER_STORE__PASSWORD_FILE: NATTER_STORE__PASSWORD is set too");
    expect(message).toContain("NATTER_EDGE__PORT_FILE: unknown setting");
  });

  it.each([
    ["too short", "aB3dE5gH7jK9mN1pQ3sT5vX7zA9cD"],
    ["one character", "x".repeat(48)],
    ["few different characters", "abcdabcdabcdabcdabcdabcdabcdabcdabcdefg"],
    ["a repeated piece", "0123456789abcdef0123456789abcdef"],
    ["a placeholder", "ChangeMe-please-4f9a7c2e1b8d6h3k5m0n"],
    ["the word secret", "my-super-Secret-jwt-key-for-prod-2026"],
  ])("refuses a weak jwtSecret (%s) and says why without showing it", (_what, weak) => {
    const message = problems(() => loadConfig({ env: { NATTER_AUTH__JWT_SECRET: weak } }));
    expect(message).toContain("NATTER_AUTH__JWT_SECRET (auth.jwtSecret): too weak to sign tokens");
    expect(message).not.toContain(weak);
  });

  it("takes random secrets as hex or base64", () => {
    for (const s of [strong, "9f86d081884c7d659a2feaa0c55ad015", "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWpr"]) {
      expect(loadConfig({ env: { NATTER_AUTH__JWT_SECRET: s } }).auth.jwtSecret).toBe(s);
    }
  });

  it("refuses token lifetimes longer than the maximum token age", () => {
    expect(problems(() => loadConfig({ env: { NATTER_AUTH__TOKEN_TTL_SEC: "7200", NATTER_AUTH__MAX_TOKEN_AGE_SEC: "3600" } }))).toContain(
      "NATTER_AUTH__TOKEN_TTL_SEC (auth.tokenTtlSec): must not exceed auth.maxTokenAgeSec",
    );
  });
});

describe("development tokens", () => {
  it.each(["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])("are served on the loopback address %s", (host) => {
    expect(loadConfig({ env: { NATTER_AUTH__DEV_TOKENS: "true", NATTER_EDGE__HOST: host } }).auth.devTokens).toBe(true);
  });

  it.each(["0.0.0.0", "::", "10.0.0.5", "chat.example.com"])("are refused at start on %s, saying why", (host) => {
    const message = problems(() => loadConfig({ env: { NATTER_AUTH__DEV_TOKENS: "true", NATTER_EDGE__HOST: host } }));
    expect(message).toContain(`auth.devTokens (NATTER_AUTH__DEV_TOKENS) is on while edge.host is "${host}"`);
    expect(message).toContain("loopback address only");
    // `natter start --dev` sets it by an override.
    expect(problems(() => loadConfig({ env: { NATTER_EDGE__HOST: host }, overrides: { auth: { devTokens: true } } }))).toContain("auth.devTokens (--dev)");
  });

  it("do not matter on a process without an edge", () => {
    expect(loadConfig({ env: { NATTER_AUTH__DEV_TOKENS: "true", NATTER_EDGE__HOST: "0.0.0.0", NATTER_EDGE__ENABLED: "false" } }).auth.devTokens).toBe(true);
  });
});
