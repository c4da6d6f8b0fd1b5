#!/usr/bin/env -S npx tsx
// natter's command line: the only place that handles signals and exits.
import { parseArgs } from "node:util";
import { loadConfig, type Config } from "../config/index.ts";
import { createLogger, isValidId, type Logger, NatterError } from "../core/index.ts";
import { mintToken } from "../edge/index.ts";
import { deployAuthorization } from "../nats/index.ts";
import { migrateCassandra, openMessageStore } from "../persistence/index.ts";
import { revokeTokens, startNatter, tokenSettings } from "../runtime/index.ts";
import { runDead } from "./dead.ts";

const USAGE = `usage: natter <command> [options]

commands:
  start             run a natter node (edge + workers; spawns nats-server unless nats.servers is set)
  migrate           create or upgrade the store's schema (Cassandra keyspace and tables, or SQLite)
  token <user>      print a token for <user> signed with this node's secret (development)
  revoke <user>     refuse every token of <user> issued until now (or before --before): open
                    sockets on them are closed 4401, and the user must get a new token
  nats-auth         print the nats-server authorization block of natter's NATS identities
                    (edge, workers, ops) for this configuration's shards (deploy/nats/auth.conf)
  dead list         list the dead letters (messages a worker gave up on), oldest first
  dead replay <seq>|--all
                    send dead letters back to the worker that gave up on them, then remove them

options:
  -c, --config F    config file (JSON or YAML); NATTER_CONFIG also works
      --dev         development mode: POST /dev/token mints tokens for any user name
      --role R      what this process runs (start): edge (WebSocket clients), workers (fan-out,
                    persister, push, presence), or all (the default); edge and workers share a
                    NATS cluster (nats.servers), each process with its role's identity
      --ttl S       token lifetime in seconds (token)
      --before T    revoke tokens issued before T: an ISO 8601 time or Unix seconds (revoke)
      --limit N     at most N dead letters (dead list: default 100; dead replay --all)
      --worker W    only the dead letters of worker W (dead list, dead replay --all)
      --all         every dead letter (dead replay)
  -h, --help        this text

settings also come from NATTER_* variables, e.g. NATTER_EDGE__PORT=8081 (see docs/configuration.md)`;

/** `--role`: which parts of a node this process runs (edge.enabled, workers.enabled). */
function roleOverrides(role: string | undefined): Record<string, unknown> {
  switch (role) {
    case undefined:
    case "all":
      return {};
    case "edge":
      return { workers: { enabled: false } };
    case "workers":
      return { edge: { enabled: false } };
    default:
      throw new NatterError("CONFIG_INVALID", `--role ${role}: give edge, workers or all`);
  }
}

function fail(log: Logger | undefined, err: unknown): never {
  const e = err instanceof NatterError ? err : undefined;
  if (e && (e.code === "CONFIG_INVALID" || e.code === "TOOL_MISSING")) {
    process.stderr.write(`natter: ${e.message}\n`);
    process.exit(2);
  }
  if (log) log.fatal({ err: e?.cause ?? err }, e?.message ?? "natter failed");
  else process.stderr.write(`natter: ${String((err as Error)?.stack ?? err)}\n`);
  process.exit(1);
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      config: { type: "string", short: "c" },
      dev: { type: "boolean" },
      role: { type: "string" },
      ttl: { type: "string" },
      before: { type: "string" },
      limit: { type: "string" },
      worker: { type: "string" },
      all: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  const [command, ...rest] = positionals;
  if (values.help || !command) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(command || values.help ? 0 : 2);
  }
  let cfg: Config;
  try {
    cfg = loadConfig({ file: values.config, overrides: { ...(values.dev ? { auth: { devTokens: true } } : {}), ...roleOverrides(values.role) } });
  } catch (err) {
    fail(undefined, err);
  }
  const log = createLogger({ level: cfg.log.level, pretty: cfg.log.pretty ?? process.stdout.isTTY === true });

  switch (command) {
    case "start":
      return start(cfg, log);
    case "migrate":
      try {
        if (cfg.store.kind === "cassandra") {
          const applied = await migrateCassandra(cfg.store, log);
          log.info({ applied, keyspace: cfg.store.keyspace }, applied.length ? "migrations applied" : "schema is up to date");
        } else {
          const store = await openMessageStore(cfg, log);
          await store.close();
          log.info({ store: cfg.store.kind }, "schema is up to date");
        }
      } catch (err) {
        fail(log, err);
      }
      return;
    case "token": {
      const user = rest[0];
      if (!user) {
        process.stderr.write("natter token: give a user name, e.g. `natter token alice`\n");
        process.exit(2);
      }
      try {
        const ttl = values.ttl ? Number(values.ttl) : undefined;
        if (ttl !== undefined && !(Number.isInteger(ttl) && ttl > 0 && ttl <= cfg.auth.maxTokenAgeSec)) {
          // A longer token would be refused once older than auth.maxTokenAgeSec, whatever its exp.
          process.stderr.write(`natter token: --ttl must be whole seconds, 1 to auth.maxTokenAgeSec (${cfg.auth.maxTokenAgeSec})\n`);
          process.exit(2);
        }
        process.stdout.write(`${await mintToken(tokenSettings(cfg), user, ttl)}\n`);
      } catch (err) {
        fail(undefined, err);
      }
      return;
    }
    case "revoke": {
      const user = rest[0];
      if (!isValidId(user)) {
        process.stderr.write("natter revoke: give a user id (1-64 of A-Z a-z 0-9 _ -), e.g. `natter revoke alice`\n");
        process.exit(2);
      }
      // Tokens of the current second are revoked too: `iat` is in whole seconds.
      const notBefore = values.before === undefined ? Math.floor(Date.now() / 1000) + 1 : parseTime(values.before);
      if (notBefore === undefined) {
        process.stderr.write(`natter revoke: --before ${values.before} is neither an ISO 8601 time nor Unix seconds\n`);
        process.exit(2);
      }
      try {
        await revokeTokens(cfg, user, notBefore, log);
        process.stdout.write(`revoked the tokens of ${user} issued before ${new Date(notBefore * 1000).toISOString()}\n`);
      } catch (err) {
        fail(log, err);
      }
      return;
    }
    case "nats-auth":
      process.stdout.write(deployAuthorization(cfg.streams));
      return;
    case "dead":
      process.exitCode = await runDead(cfg, rest, { limit: values.limit, worker: values.worker, all: values.all }, log);
      return;
    default:
      process.stderr.write(`natter: unknown command "${command}"\n\n${USAGE}\n`);
      process.exit(2);
  }
}

/** Unix seconds of an ISO 8601 time or of a number of seconds; undefined for anything else. */
function parseTime(text: string): number | undefined {
  if (/^\d+$/.test(text)) return Number(text);
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? undefined : Math.ceil(ms / 1000);
}

async function start(cfg: Config, log: Logger): Promise<void> {
  let node: Awaited<ReturnType<typeof startNatter>>;
  try {
    node = await startNatter(cfg, log, {
      // A part that died for good (the workers' thread): stop the rest and exit non-zero, so a
      // supervisor restarts the whole process.
      onFailure: (err) => {
        log.fatal({ err }, err.message);
        void node
          .close()
          .catch(() => undefined)
          .finally(() => process.exit(1));
      },
    });
  } catch (err) {
    fail(log, err);
  }
  if (cfg.auth.devTokens) {
    log.info(`open ${node.url}/ in a browser, or mint a token: curl -s -XPOST ${node.url}/dev/token -H 'content-type: application/json' -d '{"user":"alice"}'`);
  }
  let stoppingSince = 0;
  const stop = (signal: string) => {
    if (stoppingSince > 0) {
      // Wrappers (npm, tsx) relay the terminal's signal too: only a later, deliberate one forces exit.
      if (Date.now() - stoppingSince < 1000) return;
      log.warn({ signal }, "second signal: exiting now (the embedded nats-server is told to stop)");
      node.abandon();
      process.exit(130);
    }
    stoppingSince = Date.now();
    log.info({ signal }, "stopping (drains NATS, at most 10 s)");
    const hard = setTimeout(() => {
      log.error("did not stop within 10 s; exiting (the embedded nats-server is told to stop)");
      node.abandon();
      process.exit(1);
    }, 10_000);
    hard.unref();
    node.close().then(
      () => {
        log.info("stopped");
        process.exit(0);
      },
      (err: unknown) => fail(log, err),
    );
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
}

main().catch((err: unknown) => fail(undefined, err));
