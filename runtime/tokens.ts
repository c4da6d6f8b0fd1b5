// The token secret a node signs and verifies with: configured, or kept in the data folder so
// tokens survive restarts of a single node; and the revocation of a user's tokens (`natter revoke`).
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { weakSecretReason, type Config } from "../config/index.ts";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { checkId, type Logger, NatterError } from "../core/index.ts";
import { Revocations, type TokenSettings } from "../edge/index.ts";
import { names } from "../nats/index.ts";
import { connectOps } from "./ops-connection.ts";

export function tokenSettings(cfg: Config): TokenSettings {
  let secret = cfg.auth.jwtSecret;
  if (!secret) {
    const file = path.resolve(cfg.dataDir, "jwt-secret");
    if (existsSync(file)) {
      secret = readFileSync(file, "utf8").trim();
      const why = weakSecretReason(secret);
      if (why !== undefined) throw new NatterError("CONFIG_INVALID", `the token secret in ${file} is too weak to sign tokens: it ${why}; remove the file to have a random one made`);
    } else {
      mkdirSync(path.dirname(file), { recursive: true });
      secret = randomBytes(32).toString("base64url");
      writeFileSync(file, `${secret}\n`, { mode: 0o600 });
    }
  }
  const a = cfg.auth;
  return { secret, issuer: a.issuer, audience: a.audience, ttlSec: a.tokenTtlSec, maxAgeSec: a.maxTokenAgeSec, expiryGraceSec: a.expiryGraceSec };
}

/**
 * Revokes every token of `user` issued before `notBefore` (Unix seconds): `natter revoke`. Writes
 * the revocations bucket on the cluster natter runs on (nats.servers, or the embedded server);
 * edges close the user's sockets that run on such a token and refuse them from then on.
 */
export async function revokeTokens(cfg: Config, user: string, notBefore: number, log: Logger): Promise<void> {
  checkId("user id", user);
  const nc = await connectOps(cfg, "natter-revoke", log);
  try {
    const jsm = await jetstreamManager(nc);
    const stream = names.kvStream(names.revocationsBucket);
    await jsm.streams.info(stream).catch((err: unknown) => {
      throw new NatterError("UNAVAILABLE", `NATS has no ${stream} stream: start natter (this version) on it first`, { cause: err });
    });
    await new Revocations({ nc, js: jetstream(nc), jsm, log, maxTokenAgeSec: cfg.auth.maxTokenAgeSec }).revoke(user, notBefore);
  } finally {
    await nc.drain();
  }
}
