#!/usr/bin/env -S npx tsx
// natter's command line: the only place that handles signals and exits.
import { parseArgs } from "node:util";
import { loadConfig, type Config } from "../config/index.ts";
import { createLogger, type Logger, NatterError } from "../core/index.ts";
import { mintToken } from "../edge/index.ts";
import { migrateCassandra, openMessageStore } from "../persistence/index.ts";
import { startNatter, tokenSettings } from "../runtime/index.ts";
import { runDead } from "./dead.ts";

const USAGE = `usage: natter <command> [options]

commands:
  start             run a natter node (edge + workers; spawns nats-server unless nats.servers is set)
  migrate           create or upgrade the store's schema (Cassandra keyspace and tables, or SQLite)
  token <user>      print a token for <user> signed with this node's secret (development)
  dead list         list the dead letters (messages a worker gave up on), oldest first
  dead replay <seq>|--all
                    send dead letters back to the worker that gave up on them, then remove them

options:
  -c, --config F    config file (JSON or YAML); NATTER_CONFIG also works
      --dev         development mode: POST /dev/token mints tokens for any user name
      --ttl S       token lifetime in seconds (token)
      --limit N     at most N dead letters (dead list: default 100; dead replay --all)
      --worker W    only the dead letters of worker W (dead list, dead replay --all)
      --all         every dead letter (dead replay)
  -h, --help        this text

settings also come from NATTER_* variables, e.g. NATTER_EDGE__PORT=8081 (see docs/configuration.md)`;

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
      ttl: { type: "string" },
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
    cfg = loadConfig({ file: values.config, overrides: values.dev ? { auth: { devTokens: true } } : {} });
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
        process.stdout.write(`${await mintToken(tokenSettings(cfg), user, ttl)}\n`);
      } catch (err) {
        fail(undefined, err);
      }
      return;
    }
    case "dead":
      process.exitCode = await runDead(cfg, rest, { limit: values.limit, worker: values.worker, all: values.all });
      return;
    default:
      process.stderr.write(`natter: unknown command "${command}"\n\n${USAGE}\n`);
      process.exit(2);
  }
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
      log.warn({ signal }, "second signal: exiting now");
      process.exit(130);
    }
    stoppingSince = Date.now();
    log.info({ signal }, "stopping (drains NATS, at most 10 s)");
    const hard = setTimeout(() => {
      log.error("did not stop within 10 s; exiting");
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
