import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { nkeys } from "@nats-io/transport-node";
import { afterAll, describe, expect, it } from "vitest";
import { silentLogger } from "../core/logger.ts";
import { embeddedCredentials, embeddedIdentities } from "./nats-identities.ts";

const root = mkdtempSync(path.join(os.tmpdir(), "natter-identities-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("the embedded nats-server's identities", () => {
  it("are generated once per role into <dataDir>/nats/auth (0600 in 0700) and kept", () => {
    const dataDir = path.join(root, "a");
    const first = embeddedIdentities(dataDir, silentLogger());
    expect(first.dir).toBe(path.join(dataDir, "nats", "auth"));
    expect(statSync(first.dir).mode & 0o777).toBe(0o700);
    for (const role of ["edge", "workers", "ops"] as const) {
      expect(statSync(first.seedFiles[role]).mode & 0o777).toBe(0o600);
      const seed = readFileSync(first.seedFiles[role], "utf8").trim();
      expect(nkeys.fromSeed(new TextEncoder().encode(seed)).getPublicKey()).toBe(first.publicKeys[role]);
      expect(first.publicKeys[role]).toMatch(/^U[A-Z2-7]{55}$/);
    }
    expect(new Set(Object.values(first.publicKeys)).size).toBe(3);
    expect(embeddedIdentities(dataDir, silentLogger()).publicKeys).toEqual(first.publicKeys);
    expect(embeddedCredentials(first)).toEqual({ edge: { nkeySeedFile: first.seedFiles.edge }, workers: { nkeySeedFile: first.seedFiles.workers } });
  });

  it("makes a new identity for a removed file (a rotation), tightens a readable one and refuses a broken one", () => {
    const dataDir = path.join(root, "b");
    const first = embeddedIdentities(dataDir, silentLogger());
    rmSync(first.seedFiles.edge);
    chmodSync(first.seedFiles.ops, 0o644);
    const second = embeddedIdentities(dataDir, silentLogger());
    expect(second.publicKeys.edge).not.toBe(first.publicKeys.edge);
    expect(second.publicKeys.workers).toBe(first.publicKeys.workers);
    expect(statSync(second.seedFiles.ops).mode & 0o777).toBe(0o600);
    writeFileSync(first.seedFiles.workers, "not a seed\n");
    expect(() => embeddedIdentities(dataDir, silentLogger())).toThrow(/workers\.nk holds no user nkey seed .*remove it/);
  });
});
