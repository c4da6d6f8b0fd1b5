// Runs every command of docs/operations.md's runbook with the real `nats` CLI v0.5.0 against a
// real server holding natter's streams, so the runbook cannot rot.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { binPath, REPO_ROOT } from "../config/index.ts";
import { useNats } from "./harness/nats.ts";
import { testConfig, useNode } from "./support/node.ts";
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
const nats = useNats({ extraConfig: 'server_name: "natter"' });
// alice says nothing while the commands run one after another (seconds each on a loaded machine):
// her presence key must outlive them all, since three steps show it.
const node = useNode(() => testConfig(nats.url, { presence: { ttlSec: 300 } }));

interface Step {
  args: string[];
  expect: string;
  line: string;
}

function runbook(): Step[] {
  const doc = readFileSync(path.join(REPO_ROOT, "docs", "operations.md"), "utf8");
  const block = /<!-- runbook:begin -->\s*```sh\n([\s\S]*?)```\s*<!-- runbook:end -->/.exec(doc)?.[1];
  if (!block) throw new Error("docs/operations.md has no runbook block");
  return block
    .split("\n")
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
    const sender = await TestClient.connect(node.url, { token: await node.token("bob"), device: "d" });
    onTestFinished(() => sender.close());
    const alice = await TestClient.connect(node.url, { token: await node.token("alice"), device: "d" });
    onTestFinished(() => alice.close());
    const { conv } = (await sender.request({ type: "dm.open", peer: "alice" })) as unknown as { conv: { id: string } };
    const ack = await sender.request({ type: "send", conv: conv.id, cid: "r1", text: "hello alice" });
    await alice.waitFor((f) => f.type === "msg" && f.id === ack.id);
    // The presence worker has recorded alice as online (the presence commands look at it).
    await expect
      .poll(async () => ((await sender.request({ type: "presence", users: ["alice"] })).users as { online: boolean }[])[0]?.online, { timeout: 10_000 })
      .toBe(true);
    const env = { ...process.env, NATS_URL: nats.url, NATS_CONTEXT: "", HOME: process.env.HOME ?? "/tmp" };
    for (const step of steps) {
      const { out, failed } = await run(binPath("nats"), step.args, step.expect, env);
      if (failed !== undefined) throw new Error(`\`${step.line}\` failed: ${failed}\n${out}`);
      expect(out, `\`${step.line}\``).toContain(step.expect);
    }
  });
});
