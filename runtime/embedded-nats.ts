// The nats-server `natter start` runs itself when no NATS is configured (nats.servers unset): its
// own process group, its store in the data folder, its pid in a file so a server left behind by a
// killed natter is stopped on the next start. Never anonymous: its config is the repository's
// nats-server.conf plus the users of the identities in <dataDir>/nats/auth/ (nats-identities.ts).
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { binPath, REPO_ROOT, type Config, type NatsConfig } from "../config/index.ts";
import { type Logger, NatterError } from "../core/index.ts";
import { renderAuthorization } from "../nats/index.ts";
import { launchNatsServer, type NatsServerProcess } from "./nats-server.ts";
import { embeddedCredentials, embeddedIdentities, type EmbeddedIdentities } from "./nats-identities.ts";

export interface EmbeddedNats {
  server: NatsServerProcess;
  identities: EmbeddedIdentities;
  /** What natter's roles connect with. */
  credentials: NonNullable<NatsConfig["credentials"]>;
}

/** A nats-server left running by a natter that was killed (-9) still holds the store: stop it. */
async function stopStaleServer(pidFile: string, log: Logger): Promise<void> {
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, "utf8").trim());
  rmSync(pidFile, { force: true });
  if (!Number.isSafeInteger(pid) || pid <= 0) return;
  let cmdline = "";
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
  } catch {
    return; // not running
  }
  if (!cmdline.includes("nats-server")) return;
  log.warn({ pid }, "stopping the nats-server a previous natter left running");
  process.kill(pid, "SIGTERM");
  const deadline = Date.now() + 10_000;
  while (existsSync(`/proc/${pid}`) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (existsSync(`/proc/${pid}`)) process.kill(pid, "SIGKILL");
}

export async function startEmbeddedNats(cfg: Config, log: Logger): Promise<EmbeddedNats> {
  const e = cfg.nats.embedded;
  const binary = e.binary ?? binPath("nats-server");
  if (!existsSync(binary)) {
    throw new NatterError("TOOL_MISSING", `nats-server not found at ${binary}: run \`npm run obtain -- nats-server\` (or set nats.servers to use a running NATS)`);
  }
  const configFile = path.resolve(e.configFile ?? path.join(REPO_ROOT, "nats-server.conf"));
  const dir = path.resolve(cfg.dataDir, "nats");
  mkdirSync(dir, { recursive: true });
  const runDir = path.join(dir, "run");
  await stopStaleServer(path.join(dir, "nats-server.pid"), log);
  const identities = embeddedIdentities(cfg.dataDir, log);
  const nlog = log.child({ component: "nats-server" });
  const server = await launchNatsServer({
    binary,
    name: "nats-server",
    dir: runDir,
    // nats-server resolves includes relative to the including file. The users hold public keys
    // only; the allow-lists follow this version of natter at every start.
    configText: [
      `include ${JSON.stringify(path.relative(runDir, configFile))}`,
      renderAuthorization({
        shards: cfg.streams,
        users: { edge: { nkey: identities.publicKeys.edge }, workers: { nkey: identities.publicKeys.workers }, ops: { nkey: identities.publicKeys.ops } },
      }),
    ].join("\n\n"),
    args: ["--addr", e.host, "--port", String(e.port), "--http_port", String(e.httpPort), "--store_dir", dir],
    detached: true,
    log: (line) => nlog.debug(line),
  });
  writeFileSync(path.join(dir, "nats-server.pid"), `${server.pid}\n`);
  log.info({ url: server.clientUrl, monitor: server.monitorUrl, storeDir: dir, identities: identities.dir }, "nats-server started");
  return { server, identities, credentials: embeddedCredentials(identities) };
}
