import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadConfig } from "../config/index.ts";
import { NatterError } from "../core/errors.ts";
import { silentLogger } from "../core/logger.ts";
import { connectRole } from "./connection.ts";

const dir = mkdtempSync(path.join(os.tmpdir(), "natter-conn-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
// Nothing listens here: each case below fails before dialling.
const servers = ["nats://127.0.0.1:1"];
const connectWith = (nats: Record<string, unknown>) =>
  connectRole({ nats: loadConfig({ env: {}, overrides: { nats: { servers, ...nats } } }).nats, servers, role: "edge", name: "t", log: silentLogger() });

describe("connectRole", () => {
  it("names the setting of a credential or TLS file it cannot read, before connecting", async () => {
    const missing = path.join(dir, "missing.nk");
    await expect(connectWith({ credentials: { edge: { nkeySeedFile: missing } } })).rejects.toThrow(
      `nats.credentials.edge.nkeySeedFile: cannot read ${missing} (ENOENT): point the setting at the file`,
    );
    await expect(connectWith({ credentials: { edge: { credsFile: missing } } })).rejects.toThrow("nats.credentials.edge.credsFile: cannot read");
    await expect(connectWith({ tls: { caFile: missing } })).rejects.toThrow("nats.tls.caFile: cannot read");
    const notASeed = path.join(dir, "edge.nk");
    writeFileSync(notASeed, "hello\n");
    const err = await connectWith({ credentials: { edge: { nkeySeedFile: notASeed } } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NatterError);
    expect((err as NatterError).code).toBe("CONFIG_INVALID");
    expect((err as Error).message).toContain("holds no user nkey seed");
  });
});
