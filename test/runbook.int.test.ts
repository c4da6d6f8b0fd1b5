// Runs every command of docs/operations.md's runbook with the real `nats` CLI v0.5.0 against a
// real server holding natter's streams, so the runbook cannot rot.
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it, onTestFinished } from "vitest";
import { binPath, REPO_ROOT } from "../config/index.ts";
import { useNats } from "./harness/nats.ts";
import { testConfig, useNode } from "./support/node.ts";
import { TestClient } from "./support/ws-client.ts";

const run = promisify(execFile);
const nats = useNats({ extraConfig: 'server_name: "natter"' });
const node = useNode(() => testConfig(nats.url));

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
    for (const step of steps) {
      const { stdout, stderr } = await run(binPath("nats"), step.args, {
        env: { ...process.env, NATS_URL: nats.url, NATS_CONTEXT: "", HOME: process.env.HOME ?? "/tmp" },
        timeout: 20_000,
      }).catch((err: { stdout?: string; stderr?: string; message: string }) => {
        throw new Error(`\`${step.line}\` failed: ${err.message}\n${err.stdout ?? ""}${err.stderr ?? ""}`);
      });
      expect(`${stdout}${stderr}`, `\`${step.line}\``).toContain(step.expect);
    }
  });
});
