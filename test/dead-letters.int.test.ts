// `natter dead list` and `natter dead replay` end to end, as an operator runs them: a message the
// store refuses is dead-lettered by the persister after its attempts; a replay before the cause is
// fixed fails again and comes back as a new dead letter (not lost to deduplication); after the
// fix, a replay writes it once, under its original id, without a second copy in the conversation
// stream or in any inbox, and DEAD is empty. The workers' gauges count it.
import { execFile } from "node:child_process";
import path from "node:path";
import Database from "better-sqlite3";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { REPO_ROOT, type Config } from "../config/index.ts";
import { DEAD_HEADERS, names } from "../nats/index.ts";
import { useNats } from "./harness/nats.ts";
import { testConfig, useNode } from "./support/node.ts";
import { TestClient } from "./support/ws-client.ts";

const nats = useNats();
let cfg: Config;
const node = useNode(() => (cfg = testConfig(nats.url)));
let nc: NatsConnection;
let jsm: JetStreamManager;
beforeAll(async () => {
  nc = await connect({ servers: nats.url });
  jsm = await jetstreamManager(nc);
});
afterAll(async () => {
  await nc?.drain();
});

/** `natter <args>` as a separate process against the test's NATS: its exit code and output. */
function natter(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ["--import", "tsx", "bin/natter.ts", ...args],
      { cwd: REPO_ROOT, env: { PATH: process.env.PATH, HOME: process.env.HOME, NATTER_NATS__SERVERS: nats.url, NATTER_LOG__PRETTY: "false" } },
      (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: unknown }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** The dead letters in DEAD now: their DEAD sequence and the source sequence they carry. */
async function deadLetters(): Promise<{ seq: number; source: number; reason: string }[]> {
  const out: { seq: number; source: number; reason: string }[] = [];
  const { state } = await jsm.streams.info(names.deadLetterStream);
  for (let seq = state.first_seq; state.messages > 0 && seq <= state.last_seq; seq++) {
    const sm = await jsm.direct.getMessage(names.deadLetterStream, { seq });
    if (sm) out.push({ seq, source: Number(sm.header.get(DEAD_HEADERS.seq)), reason: sm.header.get(DEAD_HEADERS.reason) });
  }
  return out;
}

async function metric(name: string): Promise<number | undefined> {
  const page = await (await fetch(`${node.node.workersUrl}/metrics`)).text();
  const m = new RegExp(`^${name.replace(/[{}"]/g, "\\$&")} (\\S+)$`, "m").exec(page);
  return m ? Number(m[1]) : undefined;
}

describe("natter dead", () => {
  it("lists a dead letter, replays it once its cause is fixed: written once under its original id, and DEAD is empty", { timeout: 180_000 }, async () => {
    // The store refuses one message (a trigger), as a store refuses a row it cannot take.
    const db = new Database(path.join(cfg.dataDir, "natter.sqlite"));
    onTestFinished(() => void db.close());
    db.exec("CREATE TRIGGER poison BEFORE INSERT ON messages WHEN NEW.text = 'poison' BEGIN SELECT RAISE(ABORT, 'the store refuses this row'); END");

    const alice = await TestClient.connect(node.url, { token: await node.token("dl_alice"), device: "d" });
    onTestFinished(() => alice.close());
    const bob = await TestClient.connect(node.url, { token: await node.token("dl_bob"), device: "d" });
    onTestFinished(() => bob.close());
    const { conv } = (await alice.request({ type: "dm.open", peer: "dl_bob" })) as unknown as { conv: { id: string } };
    const ids: number[] = [];
    for (const text of ["before", "poison", "after"]) ids.push(Number((await alice.request({ type: "send", conv: conv.id, cid: text, text })).id));
    const poisonId = ids[1]!;
    await bob.waitFor((f) => f.type === "msg" && f.id === ids[2]);

    // The persister gives up on it after its attempts (the others are written): one dead letter.
    await expect.poll(deadLetters, { timeout: 30_000, interval: 250 }).toMatchObject([{ source: poisonId }]);
    const [first] = await deadLetters();
    expect(first!.reason).toContain("store write failed 5 times");
    expect((await node.node.store.history(conv.id, { limit: 10 })).map((m) => m.id)).not.toContain(poisonId);
    expect(await metric('natter_dead_letter_messages{worker="persister"}')).toBe(1);
    expect(await metric("natter_dead_letter_oldest_age_seconds")).toBeGreaterThan(0);

    const listed = await natter("dead", "list");
    expect(listed.code, listed.stderr).toBe(0);
    const line = listed.stdout.split("\n").find((l) => l.startsWith(`${first!.seq} `));
    expect(line, listed.stdout).toContain(`persister  CONV_0#${poisonId}`);
    expect(line).toContain("store write failed 5 times");
    expect(listed.stdout).toContain("1 dead letter;");
    expect((await natter("dead", "list", "--worker", "fanout")).stdout).toContain("no dead letters of fanout");

    // Replayed before the fix: it fails again and is dead-lettered anew (a fresh dead letter, not
    // deduplicated against the first one's id), with the same source.
    const early = await natter("dead", "replay", "--all", "--worker", "persister");
    expect(early.code, early.stderr).toBe(0);
    expect(early.stdout).toContain(`replayed DEAD#${first!.seq} (persister, CONV_0#${poisonId}) to persister as REPLAY#`);
    await expect.poll(deadLetters, { timeout: 30_000, interval: 250 }).toMatchObject([{ source: poisonId }]);
    const [second] = await deadLetters();
    expect(second!.seq).toBeGreaterThan(first!.seq);

    // The cause is fixed; the replay writes it once, under its original id.
    db.exec("DROP TRIGGER poison");
    const lastConvSeq = (await jsm.streams.info(names.conversationStream(0))).state.last_seq;
    const replay = await natter("dead", "replay", String(second!.seq));
    expect(replay.code, replay.stderr).toBe(0);
    expect(replay.stdout).toContain("replayed 1 of 1");
    await expect
      .poll(async () => (await node.node.store.history(conv.id, { limit: 10 })).filter((m) => m.kind === "msg").map((m) => m.id), { timeout: 20_000, interval: 250 })
      .toEqual([...ids].reverse());
    // Handled: the persister's replay consumer has nothing left; DEAD is empty.
    await expect
      .poll(async () => {
        const c = await jsm.consumers.info(names.replayStream, names.replayConsumer("persister"));
        return c.num_pending + c.num_ack_pending;
      })
      .toBe(0);
    expect(await deadLetters()).toEqual([]);
    expect(await metric('natter_dead_letter_messages{worker="persister"}')).toBe(0);
    // Once: no second event in the conversation stream, so no second copy in any inbox.
    expect((await jsm.streams.info(names.conversationStream(0))).state.last_seq).toBe(lastConvSeq);
    expect((await natter("dead", "list")).stdout).toContain("no dead letters");

    // The same one again: gone, and the command says what to do.
    const again = await natter("dead", "replay", String(second!.seq));
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(`there is no DEAD#${second!.seq}`);
  });

  it("says what is wrong with a command line, with exit code 2", async () => {
    const results = await Promise.all([natter("dead"), natter("dead", "replay"), natter("dead", "list", "--worker", "nobody"), natter("dead", "replay", "x1")]);
    expect(results.map((r) => r.code)).toEqual([2, 2, 2, 2]);
    expect(results[0]!.stderr).toContain("give `list` or `replay`");
    expect(results[1]!.stderr).toContain("the sequence of a dead letter");
    expect(results[2]!.stderr).toContain('unknown worker "nobody"');
    expect(results[3]!.stderr).toContain('"x1" is not a sequence of DEAD');
  });
});
