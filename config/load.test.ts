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
    expect(problems(() => loadConfig({ env: { ...servers, NATTER_NATS__CREDENTIALS__OPS__USER: "ops" } }))).toContain("NATTER_NATS__CREDENTIALS__OPS__USER: unknown setting");
    expect(problems(() => loadConfig({ env: { ...servers, NATTER_NATS__TLS__CERT_FILE: "c.pem" } }))).toContain("nats.tls: give both certFile and keyFile");
    expect(problems(() => loadConfig({ env: { ...servers, NATTER_NATS__TLS__ENABLED: "false", NATTER_NATS__TLS__CA_FILE: "ca.pem" } }))).toContain("enabled is false");
    // The embedded nats-server uses the identities natter generates, on loopback.
    const embedded = problems(() => loadConfig({ env: { NATTER_NATS__CREDENTIALS__EDGE__USER: "edge", NATTER_NATS__CREDENTIALS__EDGE__PASSWORD: "pw", NATTER_NATS__TLS__ENABLED: "true" } }));
    expect(embedded).toContain("nats.credentials: applies to nats.servers");
    expect(embedded).toContain("nats.tls: applies to nats.servers");
  });
});
