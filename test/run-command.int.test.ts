// The README's run line, as a user runs it: `natter start` as its own process on embedded
// defaults (it spawns nats-server, SQLite, filesystem blobs). Ctrl-C stops it cleanly within 10 s;
// a restart after Ctrl-C, and after kill -9, starts with the history intact.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it, onTestFinished } from "vitest";
import { REPO_ROOT } from "../config/index.ts";
import { freePorts, isAlive } from "./harness/processes.ts";
import { TestClient, type Frame } from "./support/ws-client.ts";

const dataDir = mkdtempSync(path.join(os.tmpdir(), "natter-run-"));
const running = new Set<ChildProcess>();
afterAll(async () => {
  for (const p of running) p.kill("SIGKILL");
  const pidFile = path.join(dataDir, "nats", "nats-server.pid");
  if (existsSync(pidFile)) {
    const pid = Number(readFileSync(pidFile, "utf8"));
    if (isAlive(pid)) process.kill(pid, "SIGKILL");
  }
  rmSync(dataDir, { recursive: true, force: true });
});

interface Natter {
  proc: ChildProcess;
  url: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output: () => string;
}

async function startNatter(ports: number[]): Promise<Natter> {
  const [edge, nats, monitor, workers] = ports;
  const proc = spawn(process.execPath, ["--import", "tsx", "bin/natter.ts", "start", "--dev"], {
    cwd: REPO_ROOT,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      NATTER_DATA_DIR: dataDir,
      NATTER_EDGE__PORT: String(edge),
      NATTER_NATS__EMBEDDED__PORT: String(nats),
      NATTER_NATS__EMBEDDED__HTTP_PORT: String(monitor),
      NATTER_WORKERS__HTTP_PORT: String(workers),
      NATTER_LOG__PRETTY: "false",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(proc);
  let out = "";
  proc.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  proc.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on("exit", (code, signal) => {
      running.delete(proc);
      resolve({ code, signal });
    }),
  );
  const url = `http://127.0.0.1:${edge}`;
  await expect
    .poll(
      async () => {
        if (proc.exitCode !== null) throw new Error(`natter exited early (${proc.exitCode}):\n${out}`);
        return (await fetch(`${url}/readyz`).catch(() => undefined))?.status;
      },
      { timeout: 45_000, interval: 200 },
    )
    .toBe(200);
  return { proc, url, exited, output: () => out };
}

async function devToken(url: string, user: string): Promise<string> {
  const r = await fetch(`${url}/dev/token`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ user }) });
  expect(r.status).toBe(200);
  return ((await r.json()) as { token: string }).token;
}

async function history(url: string, conv: string): Promise<string[]> {
  const c = await TestClient.connect(url, { token: await devToken(url, "bob"), device: "history" });
  onTestFinished(() => c.close());
  const h = await c.request({ type: "history", conv, limit: 100 });
  return (h.messages as Frame[]).filter((m) => m.kind === "msg").map((m) => String(m.text)).reverse();
}

describe("natter start (the README's run line)", () => {
  it("serves health and readiness, lets two clients chat, stops on Ctrl-C, and keeps history across restarts", async () => {
    const ports = await freePorts(4);
    const first = await startNatter(ports);
    const health = await fetch(`${first.url}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: "ok" });
    const ready = (await (await fetch(`${first.url}/readyz`)).json()) as { checks: Record<string, { ok: boolean }> };
    expect(Object.keys(ready.checks).sort()).toEqual(["blobs", "nats", "store", "streams"]);
    expect((await fetch(`${first.url}/`)).headers.get("content-type")).toContain("text/html");
    const metrics = await fetch(`http://127.0.0.1:${ports[3]}/metrics`);
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toContain("natter_consumer_pending_messages");

    const alice = await TestClient.connect(first.url, { token: await devToken(first.url, "alice"), device: "phone" });
    const bob = await TestClient.connect(first.url, { token: await devToken(first.url, "bob"), device: "laptop" });
    const { conv } = (await alice.request({ type: "dm.open", peer: "bob" })) as unknown as { conv: { id: string } };
    const ack = await alice.request({ type: "send", conv: conv.id, cid: "m1", text: "hi bob" });
    expect(ack.type).toBe("ack");
    expect(await bob.waitFor((f) => f.type === "msg" && f.id === ack.id)).toMatchObject({ from: "alice", text: "hi bob" });
    const reply = await bob.request({ type: "send", conv: conv.id, cid: "m2", text: "hi alice" });
    await alice.waitFor((f) => f.type === "msg" && f.id === reply.id);
    await expect.poll(() => history(first.url, conv.id), { timeout: 10_000 }).toEqual(["hi bob", "hi alice"]);

    // Ctrl-C: clients are told to go away, NATS drains, the process and its nats-server exit.
    const natsPid = Number(readFileSync(path.join(dataDir, "nats", "nats-server.pid"), "utf8"));
    const t0 = performance.now();
    first.proc.kill("SIGINT");
    const bye = await alice.closed;
    expect(bye.code).toBe(1001);
    const end = await first.exited;
    expect(end, first.output()).toEqual({ code: 0, signal: null });
    expect(performance.now() - t0).toBeLessThan(10_000);
    expect(isAlive(natsPid)).toBe(false);

    // Second start: the history is intact; then kill -9 and start again.
    const second = await startNatter(ports);
    expect(await history(second.url, conv.id)).toEqual(["hi bob", "hi alice"]);
    const carol = await TestClient.connect(second.url, { token: await devToken(second.url, "carol"), device: "d" });
    onTestFinished(() => carol.close());
    const c2 = (await carol.request({ type: "dm.open", peer: "bob" })) as unknown as { conv: { id: string } };
    await carol.request({ type: "send", conv: c2.conv.id, cid: "k1", text: "before the crash" });
    await expect.poll(() => history(second.url, c2.conv.id), { timeout: 10_000 }).toEqual(["before the crash"]);
    second.proc.kill("SIGKILL");
    await second.exited;

    const third = await startNatter(ports);
    expect(await history(third.url, conv.id)).toEqual(["hi bob", "hi alice"]);
    expect(await history(third.url, c2.conv.id)).toEqual(["before the crash"]);
    third.proc.kill("SIGINT");
    expect((await third.exited).code).toBe(0);
  });
});
