// natter's whole JetStream topology: every stream, KV bucket and worker consumer. The workers
// create and update it at start (their identity may; the edge's may not: docs/security.md); an
// edge waits until it is there.
import type { JetStreamManager } from "@nats-io/jetstream";
import type { Config } from "../config/index.ts";
import { type Logger, NatterError } from "../core/index.ts";
import { ensureImageBuckets, imageStreams } from "../media/index.ts";
import { ensureTopology, expectedStreams } from "../nats/index.ts";
import { ensurePresenceBuckets, presenceStreams } from "../presence/index.ts";
import { ensurePushTopology, pushStreams } from "../push/index.ts";

/** Creates or updates everything natter needs in JetStream (idempotent). */
export async function ensureNatterTopology(jsm: JetStreamManager, cfg: Config): Promise<void> {
  await ensureTopology(jsm, cfg.streams);
  await ensurePresenceBuckets(jsm, cfg.streams, cfg.presence);
  if (cfg.push.enabled) await ensurePushTopology(jsm, cfg.streams, cfg.push);
  await ensureImageBuckets(jsm, cfg.streams);
}

/** The streams a node of this configuration needs (readiness checks them). */
export function natterStreams(cfg: Config): string[] {
  return [...expectedStreams(cfg.streams), ...presenceStreams(), ...imageStreams(), ...(cfg.push.enabled ? pushStreams(cfg.streams) : [])];
}

async function missingStreams(jsm: JetStreamManager, cfg: Config): Promise<string[]> {
  const present = new Set<string>();
  for await (const name of jsm.streams.names()) present.add(name);
  return natterStreams(cfg).filter((s) => !present.has(s));
}

/**
 * Waits until every stream this node needs exists (the workers make them), checking every
 * `pollMs`; UNAVAILABLE after `timeoutMs`, naming what is missing and who makes it.
 */
export async function awaitTopology(jsm: JetStreamManager, cfg: Config, log: Logger, opts: { timeoutMs?: number; pollMs?: number } = {}): Promise<void> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const deadline = Date.now() + timeoutMs;
  let told = false;
  for (;;) {
    const missing = await missingStreams(jsm, cfg);
    if (missing.length === 0) return;
    if (Date.now() >= deadline) {
      throw new NatterError(
        "UNAVAILABLE",
        `natter's streams are still missing after ${Math.round(timeoutMs / 1000)} s (${missing.join(", ")}): a natter process with workers.enabled creates them at start; run one against the same NATS (with the workers identity) and see its log`,
      );
    }
    if (!told) {
      log.info({ missing }, "waiting for the workers to create natter's streams");
      told = true;
    }
    await new Promise((r) => setTimeout(r, opts.pollMs ?? 500));
  }
}
