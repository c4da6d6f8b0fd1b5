// The identities of the embedded nats-server (`natter start` without nats.servers): one nkey per
// role (edge, workers, ops), generated into <dataDir>/nats/auth/ on the first start (files 0600 in
// a folder 0700) and kept. The server's config lists only their public keys, with each role's
// allow-list (nats/permissions.ts), so a client without one of the seeds is refused.
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { nkeys } from "@nats-io/transport-node";
import type { NatsConfig } from "../config/index.ts";
import { type Logger, NatterError } from "../core/index.ts";
import { NATS_IDENTITY_ROLES, type NatsIdentityRole } from "../nats/index.ts";

export interface EmbeddedIdentities {
  /** <dataDir>/nats/auth */
  dir: string;
  /** The seed file of each role (`<role>.nk`): what a client connects with (`nats --nkey <file>`). */
  seedFiles: Record<NatsIdentityRole, string>;
  /** The public key of each role: what the server's config lists. */
  publicKeys: Record<NatsIdentityRole, string>;
}

/** The folder of the embedded server's identities. */
function identitiesDir(dataDir: string): string {
  return path.resolve(dataDir, "nats", "auth");
}

function publicKeyOf(file: string): string {
  const seed = readFileSync(file, "utf8").trim();
  try {
    if (!seed.startsWith("SU")) throw new Error("not a user seed");
    return nkeys.fromSeed(new TextEncoder().encode(seed)).getPublicKey();
  } catch (err) {
    throw new NatterError("CONFIG_INVALID", `${file} holds no user nkey seed (SU…): remove it and natter makes a new identity at the next start`, { cause: err });
  }
}

/** Loads the identities, making those that are missing (a first start, or a removed file: a rotation). */
export function embeddedIdentities(dataDir: string, log: Logger): EmbeddedIdentities {
  const dir = identitiesDir(dataDir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const seedFiles = {} as Record<NatsIdentityRole, string>;
  const publicKeys = {} as Record<NatsIdentityRole, string>;
  for (const role of NATS_IDENTITY_ROLES) {
    const file = path.join(dir, `${role}.nk`);
    if (existsSync(file)) {
      if ((statSync(file).mode & 0o077) !== 0) {
        log.warn({ file }, "a NATS identity was readable by others: made it 0600");
        chmodSync(file, 0o600);
      }
    } else {
      const seed = new TextDecoder().decode(nkeys.createUser().getSeed());
      // "wx": never replace a seed another process has just written.
      writeFileSync(file, `${seed}\n`, { mode: 0o600, flag: "wx" });
      log.info({ role, file }, "generated a NATS identity for the embedded nats-server");
    }
    seedFiles[role] = file;
    publicKeys[role] = publicKeyOf(file);
  }
  return { dir, seedFiles, publicKeys };
}

/** natter's roles' credentials for the embedded server (the ops identity is the operator's, not natter's). */
export function embeddedCredentials(ids: EmbeddedIdentities): NonNullable<NatsConfig["credentials"]> {
  return { edge: { nkeySeedFile: ids.seedFiles.edge }, workers: { nkeySeedFile: ids.seedFiles.workers } };
}
