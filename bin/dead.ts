// `natter dead list` and `natter dead replay`: the dead letters in DEAD (messages a worker gave up
// on), and sending them back to that worker once their cause is fixed (nats/dead-letter.ts says
// how a replay is handled once, and which workers take replays). Prints for people; returns the
// exit code (0 done, 1 failed, 2 a usage mistake).
import { jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Config } from "../config/index.ts";
import type { Logger } from "../core/index.ts";
import { connectOps } from "../runtime/index.ts";
import { DEAD_LETTER_WORKERS, isNotFound, names, readDeadLetters, replayDeadLetter, type DeadLetter, type DeadLetterWorker } from "../nats/index.ts";

export interface DeadOptions {
  limit?: string | undefined;
  worker?: string | undefined;
  all?: boolean | undefined;
}

const say = (line: string) => process.stdout.write(`${line}\n`);
const complain = (line: string) => process.stderr.write(`natter dead: ${line}\n`);

function usage(line: string): number {
  complain(line);
  return 2;
}

export async function runDead(cfg: Config, args: readonly string[], opts: DeadOptions, log: Logger): Promise<number> {
  const [sub, ...rest] = args;
  if (sub !== "list" && sub !== "replay") return usage("give `list` or `replay`, e.g. `natter dead list` (see natter --help)");
  if (opts.worker !== undefined && !(DEAD_LETTER_WORKERS as readonly string[]).includes(opts.worker)) {
    return usage(`unknown worker "${opts.worker}": one of ${DEAD_LETTER_WORKERS.join(", ")}`);
  }
  const worker = opts.worker as DeadLetterWorker | undefined;
  const limit = opts.limit === undefined ? undefined : Number(opts.limit);
  if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 1)) return usage(`--limit takes a whole number ≥ 1, not "${opts.limit}"`);
  let seqs: number[] = [];
  if (sub === "list") {
    if (rest.length > 0 || opts.all) return usage("`natter dead list` takes only --limit and --worker");
  } else {
    seqs = rest.map(Number);
    if (rest.length > 0 === Boolean(opts.all)) return usage("`natter dead replay` takes the sequence of a dead letter (from `natter dead list`) or --all, not both");
    const bad = rest.find((_, i) => !Number.isSafeInteger(seqs[i]) || seqs[i]! < 1);
    if (bad !== undefined) return usage(`"${bad}" is not a sequence of DEAD (a whole number, as \`natter dead list\` prints)`);
    if (worker !== undefined && !opts.all) return usage("--worker goes with `list` or `replay --all`");
  }

  const servers = cfg.nats.servers ?? [`nats://${cfg.nats.embedded.host}:${cfg.nats.embedded.port}`];
  let nc: NatsConnection;
  try {
    nc = await connectOps(cfg, "natter-dead", log);
  } catch (err) {
    complain(`cannot connect to NATS at ${servers.join(", ")} as the operator (${(err as Error).message}): is natter running? Set nats.servers (NATTER_NATS__SERVERS) to reach another NATS, nats.credentials.ops for its identity`);
    return 1;
  }
  try {
    const jsm = await jetstreamManager(nc);
    let last: number;
    try {
      last = (await jsm.streams.info(names.deadLetterStream)).state.last_seq;
    } catch (err) {
      if (!isNotFound(err) && !/stream not found/i.test(String((err as Error).message))) throw err;
      complain(`there is no ${names.deadLetterStream} stream on ${servers.join(", ")}: natter has not run against this NATS yet (or nats.servers points elsewhere)`);
      return 1;
    }
    if (sub === "list") return await list(jsm, worker, limit ?? 100);
    return await replay(nc, jsm, opts.all ? { worker, limit, untilSeq: last } : { seqs });
  } catch (err) {
    complain(`${(err as Error).message}; nothing more was done, run the command again`);
    return 1;
  } finally {
    await nc.close();
  }
}

function describe(d: DeadLetter): string {
  return `DEAD#${d.seq} (${d.worker}, ${d.stream}#${d.sourceSeq})`;
}

async function count(jsm: JetStreamManager, worker: DeadLetterWorker | undefined): Promise<number> {
  const info = await jsm.streams.info(names.deadLetterStream, { subjects_filter: worker ? `dead.${worker}.*` : names.deadLetterStreamSubjects });
  return Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0);
}

async function list(jsm: JetStreamManager, worker: DeadLetterWorker | undefined, limit: number): Promise<number> {
  const total = await count(jsm, worker);
  const of = worker ? ` of ${worker}` : "";
  if (total === 0) {
    say(`no dead letters${of}`);
    return 0;
  }
  const rows: string[][] = [["DEAD", "time", "worker", "source", "bytes", "reason"]];
  let replayable = 0;
  for await (const d of readDeadLetters(jsm, { worker })) {
    rows.push([String(d.seq), d.time.toISOString(), d.worker, `${d.stream}#${d.sourceSeq}`, String(d.size), d.reason]);
    if (d.replayable) replayable++;
    if (rows.length - 1 >= limit) break;
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  for (const r of rows) say(r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]!))).join("  "));
  const shown = rows.length - 1;
  say(
    `${total} dead letter${total === 1 ? "" : "s"}${of}${shown < total ? `, the oldest ${shown} shown (--limit N for more)` : ""}; ${replayable} of those shown can be replayed to their worker: natter dead replay <DEAD> or --all`,
  );
  return 0;
}

async function replay(
  nc: NatsConnection,
  jsm: JetStreamManager,
  what: { seqs: number[] } | { worker: DeadLetterWorker | undefined; limit: number | undefined; untilSeq: number },
): Promise<number> {
  const js = jetstream(nc);
  // --all: what is in DEAD now (a replay that fails again comes back as a new, later dead letter: not this run's).
  const seqs: AsyncIterable<number> | number[] =
    "seqs" in what
      ? what.seqs
      : (async function* () {
          let n = 0;
          for await (const d of readDeadLetters(jsm, { worker: what.worker, untilSeq: what.untilSeq })) {
            if (what.limit !== undefined && n++ >= what.limit) return;
            yield d.seq;
          }
        })();
  let replayed = 0;
  let skipped = 0;
  let failed = 0;
  for await (const seq of seqs) {
    let r: Awaited<ReturnType<typeof replayDeadLetter>>;
    try {
      r = await replayDeadLetter(js, jsm, seq);
    } catch (err) {
      const msg = (err as Error).message;
      const hint = /no responders|503/i.test(msg)
        ? `there is no ${names.replayStream} stream to send it to: start natter (this version) once, so it creates it, then run this again`
        : "it is still in DEAD; run this again (what was replayed is gone from DEAD)";
      complain(`could not replay DEAD#${seq} (${msg}): ${hint}`);
      return 1;
    }
    switch (r.kind) {
      case "replayed":
        replayed++;
        say(`replayed ${describe(r.letter)} to ${r.letter.worker} as ${names.replayStream}#${r.replaySeq}; removed from DEAD`);
        break;
      case "not-removed":
        failed++;
        complain(
          `replayed ${describe(r.letter)} as ${names.replayStream}#${r.replaySeq} but could not remove it from DEAD (${(r.cause as Error).message}): remove it with \`nats stream rmm DEAD ${seq}\`, or replay it again within streams.duplicateWindowSec (the repeat is deduplicated)`,
        );
        break;
      case "not-replayable":
        skipped++;
        say(`skipped ${describe(r.letter)}: ${r.letter.worker} dead letters are not replayed (docs/operations.md, "Dead letters"); remove it with \`nats stream rmm DEAD ${seq}\` once handled`);
        break;
      case "missing":
        failed++;
        complain(`there is no DEAD#${seq} (replayed or removed already?): \`natter dead list\` shows what is there`);
        break;
    }
  }
  const total = replayed + skipped + failed;
  say(
    total === 0
      ? "no dead letters to replay"
      : `replayed ${replayed} of ${total}${skipped ? `, ${skipped} skipped (not replayable)` : ""}${failed ? `, ${failed} failed` : ""}; the workers handle replays as they run — one that fails again is a new dead letter in \`natter dead list\``,
  );
  return failed > 0 || (skipped > 0 && "seqs" in what) ? 1 : 0;
}
