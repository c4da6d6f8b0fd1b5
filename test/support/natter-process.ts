// `natter start` as its own process, as a user runs it: its own nats-server (embedded), SQLite and
// blobs in a temp folder, free ports, JSON logs captured. For tests that need the process itself:
// its exit, its RSS, its log lines, kill -9.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { REPO_ROOT } from "../../config/index.ts";
import { freePorts, isAlive } from "../harness/processes.ts";

export interface NatterProcess {
  proc: ChildProcess;
  url: string;
  /** http://host:port of its /metrics, /healthz and /readyz (the workers' port). */
  workersUrl: string;
  /** The embedded nats-server's client URL and monitoring URL. */
  natsUrl: string;
  natsMonitorUrl: string;
  dataDir: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Everything it printed so far. */
  output(): string;
  /** Its JSON log lines so far (lines that are not JSON are left out). */
  logLines(): { level: number; msg?: string; [k: string]: unknown }[];
  /** Resident set size now, in KiB. */
  rssKb(): number;
  /** SIGINT, wait for the exit; SIGKILL of it and its nats-server if it does not go within 15 s. Removes the data folder unless it was given. */
  stop(): Promise<void>;
  /** kill -9 of natter and of the nats-server it runs (the whole tree), as a power cut of the process would. */
  kill(): Promise<void>;
}

export interface SpawnOptions {
  /** Start on this data folder (a restart); it is left in place by stop(). Default: a fresh temp folder, removed by stop(). */
  dataDir?: string;
  /** The process's open-file limit (`ulimit -n`). Default: the test's own. */
  openFiles?: number;
}

/** Starts `natter start --dev` with `env` over the defaults below; resolves once /readyz answers 200. */
export async function spawnNatter(env: Record<string, string> = {}, opts: SpawnOptions = {}): Promise<NatterProcess> {
  const dataDir = opts.dataDir ?? mkdtempSync(path.join(os.tmpdir(), "natter-proc-"));
  const [edge, nats, monitor, workers] = await freePorts(4);
  const args = ["--import", "tsx", "bin/natter.ts", "start", "--dev"];
  // With a file limit, a shell sets it and then becomes natter (exec), so the pid stays natter's.
  const [command, argv] = opts.openFiles === undefined ? [process.execPath, args] : ["/bin/sh", ["-c", `ulimit -n ${opts.openFiles} && exec "$0" "$@"`, process.execPath, ...args]];
  const proc = spawn(command, argv, {
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
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  proc.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  proc.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.on("exit", (code, signal) => resolve({ code, signal })));
  const url = `http://127.0.0.1:${edge}`;
  const natsPid = () => {
    const pidFile = path.join(dataDir, "nats", "nats-server.pid");
    return existsSync(pidFile) ? Number(readFileSync(pidFile, "utf8")) : 0;
  };
  const kill = async () => {
    const nats = natsPid();
    if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
    if (nats > 0 && isAlive(nats)) process.kill(nats, "SIGKILL");
    await exited;
    for (let i = 0; i < 100 && nats > 0 && isAlive(nats); i++) await new Promise((r) => setTimeout(r, 50));
  };
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill("SIGINT");
      const done = await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000, "late"))]);
      if (done === "late") proc.kill("SIGKILL");
    }
    await exited;
    const nats = natsPid();
    if (nats > 0 && isAlive(nats)) process.kill(nats, "SIGKILL");
    if (!opts.dataDir) rmSync(dataDir, { recursive: true, force: true });
  };
  // Polled by hand: this also runs in hooks, where expect.poll is not available.
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (proc.exitCode !== null) {
      await stop();
      throw new Error(`natter exited early (${proc.exitCode}):\n${out}`);
    }
    if ((await fetch(`${url}/readyz`).catch(() => undefined))?.status === 200) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`natter was not ready within 60 s:\n${out.slice(-4000)}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    proc,
    url,
    workersUrl: `http://127.0.0.1:${workers}`,
    natsUrl: `nats://127.0.0.1:${nats}`,
    natsMonitorUrl: `http://127.0.0.1:${monitor}`,
    dataDir,
    exited,
    output: () => out,
    logLines: () =>
      out.split("\n").flatMap((l) => {
        if (!l.startsWith("{")) return [];
        try {
          return [JSON.parse(l) as { level: number; msg?: string }];
        } catch {
          return [];
        }
      }),
    rssKb: () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${proc.pid}/status`, "utf8"))?.[1] ?? NaN),
    stop,
    kill,
  };
}

/** A token from the dev endpoint of a natter started with --dev. */
export async function devToken(url: string, user: string): Promise<string> {
  const r = await fetch(`${url}/dev/token`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ user }) });
  if (r.status !== 200) throw new Error(`POST /dev/token: ${r.status} ${await r.text()}`);
  return ((await r.json()) as { token: string }).token;
}
