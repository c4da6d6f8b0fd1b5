// Runs every command of docs/operations.md's runbook with the real `nats` CLI v0.5.0 against the
// embedded nats-server of a real `natter start`, as the operator: with the ops identity natter
// generated, set up as the runbook's `export` lines say (the server refuses anyone else). So the
// runbook, and how an operator gets in, cannot rot.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { binPath, REPO_ROOT } from "../config/index.ts";
import { devToken, spawnNatter, type NatterProcess } from "./support/natter-process.ts";
import { TestClient } from "./support/ws-client.ts";

/**
 * Runs a command until its output contains `expected` (then stops it: `nats kv watch` never ends
 * by itself) or it exits. Resolves with the output and whether it failed.
 */
function run(bin: string, args: string[], expected: string, env: NodeJS.ProcessEnv, timeoutMs = 20_000): Promise<{ out: string; failed: string | undefined }> {
  return new Promise((resolve) => {
    const p = spawn(bin, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let done = false;
    const finish = (failed: string | undefined) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (p.exitCode === null && p.signalCode === null) p.kill("SIGTERM");
      resolve({ out, failed });
    };
    const timer = setTimeout(() => finish(`no "${expected}" within ${timeoutMs} ms`), timeoutMs);
    const onData = (d: Buffer) => {
      out += d.toString();
      if (out.includes(expected)) finish(undefined);
    };
    p.stdout.on("data", onData);
    p.stderr.on("data", onData);
    p.on("error", (err) => finish(err.message));
    p.on("exit", (code) => finish(code === 0 ? undefined : `exit code ${code}`));
  });
}
let natter: NatterProcess;
beforeAll(async () => {
  // alice says nothing while the commands run one after another (seconds each on a loaded
  // machine): her presence key must outlive them all, since three steps show it.
  natter = await spawnNatter({ NATTER_PRESENCE__TTL_SEC: "300" });
});
afterAll(async () => {
  await natter?.stop();
});

interface Step {
  args: string[];
  expect: string;
  line: string;
}

function runbookBlock(): string[] {
  const doc = readFileSync(path.join(REPO_ROOT, "docs", "operations.md"), "utf8");
  const block = /<!-- runbook:begin -->\s*```sh\n([\s\S]*?)```\s*<!-- runbook:end -->/.exec(doc)?.[1];
  if (!block) throw new Error("docs/operations.md has no runbook block");
  return block.split("\n");
}

/**
 * The block's `export NAME=value` lines, pointed at this node: its NATS URL, and paths under the
 * default data folder (`.data/…`) under this node's.
 */
function runbookEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of runbookBlock()) {
    const m = /^export ([A-Z_]+)=(\S+)/.exec(line);
    if (!m) continue;
    const [, name = "", value = ""] = m;
    env[name] = name === "NATS_URL" ? natter.natsUrl : value.startsWith(".data/") ? path.join(natter.dataDir, value.slice(".data/".length)) : value;
  }
  return env;
}

function runbook(): Step[] {
  return runbookBlock()
    .filter((l) => l.startsWith("nats "))
    .map((line) => {
      const [cmd, expectText] = line.split(/\s+# expect: /);
      const args = (cmd!.trim().match(/'[^']*'|\S+/g) ?? []).slice(1).map((a) => a.replace(/^'(.*)'$/, "$1"));
      if (!expectText) throw new Error(`runbook line without "# expect:": ${line}`);
      return { args, expect: expectText.trim(), line };
    });
}

describe("docs/operations.md runbook", () => {
  it("runs every documented nats command and finds what the doc says it shows", async () => {
    const steps = runbook();
    expect(steps.length).toBeGreaterThanOrEqual(8);
    const sender = await TestClient.connect(natter.url, { token: await devToken(natter.url, "bob"), device: "d" });
    onTestFinished(() => sender.close());
    const alice = await TestClient.connect(natter.url, { token: await devToken(natter.url, "alice"), device: "d" });
    onTestFinished(() => alice.close());
    const { conv } = (await sender.request({ type: "dm.open", peer: "alice" })) as unknown as { conv: { id: string } };
    const ack = await sender.request({ type: "send", conv: conv.id, cid: "r1", text: "hello alice" });
    await alice.waitFor((f) => f.type === "msg" && f.id === ack.id);
    // The presence worker has recorded alice as online (the presence commands look at it).
    await expect
      .poll(async () => ((await sender.request({ type: "presence", users: ["alice"] })).users as { online: boolean }[])[0]?.online, { timeout: 10_000 })
      .toBe(true);
    const base = { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", NATS_CONTEXT: "" };
    const doc = runbookEnv();
    expect(Object.keys(doc), "the runbook's export lines").toEqual(expect.arrayContaining(["NATS_URL", "NATS_NKEY"]));
    // Without the ops identity the server lets nobody in: the credential is what the steps need.
    const anonymous = await run(binPath("nats"), ["stream", "ls"], "Authorization Violation", { ...base, NATS_URL: natter.natsUrl });
    expect(anonymous.out).toContain("Authorization Violation");
    const env = { ...base, ...doc };
    for (const step of steps) {
      const { out, failed } = await run(binPath("nats"), step.args, step.expect, env);
      if (failed !== undefined) throw new Error(`\`${step.line}\` failed: ${failed}\n${out}`);
      expect(out, `\`${step.line}\``).toContain(step.expect);
    }
  });
});
