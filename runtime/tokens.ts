// The token secret a node signs and verifies with: configured, or kept in the data folder so
// tokens survive restarts of a single node.
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { Config } from "../config/index.ts";
import type { TokenSettings } from "../edge/index.ts";

export function tokenSettings(cfg: Config): TokenSettings {
  let secret = cfg.auth.jwtSecret;
  if (!secret) {
    const file = path.resolve(cfg.dataDir, "jwt-secret");
    if (existsSync(file)) {
      secret = readFileSync(file, "utf8").trim();
    } else {
      mkdirSync(path.dirname(file), { recursive: true });
      secret = randomBytes(32).toString("base64url");
      writeFileSync(file, `${secret}\n`, { mode: 0o600 });
    }
  }
  return { secret, issuer: cfg.auth.issuer, audience: cfg.auth.audience, ttlSec: cfg.auth.tokenTtlSec };
}
