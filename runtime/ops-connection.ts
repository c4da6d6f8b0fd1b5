// The operator's connection, for natter's admin commands (`natter revoke`, `natter dead`): the ops
// identity (nats.credentials.ops; with the embedded nats-server the seed natter generated in the
// data folder), never an edge's or the workers'.
import { existsSync } from "node:fs";
import path from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Config } from "../config/index.ts";
import { type Logger, NatterError } from "../core/index.ts";
import { connectRole } from "../nats/index.ts";

export async function connectOps(cfg: Config, name: string, log: Logger): Promise<NatsConnection> {
  const servers = cfg.nats.servers ?? [`nats://${cfg.nats.embedded.host}:${cfg.nats.embedded.port}`];
  let nats = cfg.nats;
  if (cfg.nats.servers === undefined && !cfg.nats.credentials?.ops) {
    const seed = path.resolve(cfg.dataDir, "nats", "auth", "ops.nk");
    if (!existsSync(seed)) throw new NatterError("UNAVAILABLE", `no NATS identity at ${seed}: start natter on this data folder first (it makes one), or set nats.credentials.ops`);
    nats = { ...cfg.nats, credentials: { ...cfg.nats.credentials, ops: { nkeySeedFile: seed } } };
  }
  return connectRole({ nats, servers, role: "ops", name, log });
}
