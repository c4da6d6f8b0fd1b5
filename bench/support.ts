// What the benchmarks share: a single-node natter started as its own process on free ports in a
// temp folder (so its RSS is its own), stopped with SIGINT like a user's Ctrl-C.
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { connect, type NatsConnection, nkeyAuthenticator } from "@nats-io/transport-node";
import { REPO_ROOT } from "../config/index.ts";

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) : NaN;
}

/** Clock ticks per second (utime and stime in /proc are counted in them). */
export const CLK_TCK = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** utime + stime of a process, all its threads, in clock ticks. */
export function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(f[11]) + Number(f[12]);
}

export function rssMb(pid: number): number {
  return Math.round(rssKb(pid) / 1024);
}

export interface BenchNode {
  url: string;
  natsUrl: string;
  /** The workers' HTTP server (GET /metrics, /readyz). */
  workersUrl: string;
  pid: number;
  /** The embedded nats-server's pid (natter writes it to <NATTER_DATA_DIR>/nats/nats-server.pid). */
  natsPid(): number;
  /** A NATS connection as the ops identity (the seed natter generated in its data folder). */
  opsConnect(): Promise<NatsConnection>;
  stop(): Promise<void>;
}

/**
 * `natter start --dev` with `env` (NATTER_* settings) over bench defaults; waits for /readyz. The
 * defaults turn the daily quota off: a benchmark's few senders send a day's worth in seconds.
 * `onLogLine`: natter's log (JSON lines on its stdout) goes there instead of to this process's.
 */
export async function startBenchNode(env: Record<string, string> = {}, opts: { onLogLine?: (line: string) => void } = {}): Promise<BenchNode> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "natter-bench-"));
  const [edge, nats, mon, workers] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const proc = spawn(process.execPath, ["--import", "tsx", "bin/natter.ts", "start", "--dev"], {
    cwd: REPO_ROOT,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      NATTER_DATA_DIR: dir,
      NATTER_EDGE__PORT: String(edge),
      NATTER_NATS__EMBEDDED__PORT: String(nats),
      NATTER_NATS__EMBEDDED__HTTP_PORT: String(mon),
      NATTER_WORKERS__HTTP_PORT: String(workers),
      NATTER_LOG__LEVEL: "warn",
      NATTER_LOG__PRETTY: "false",
      NATTER_QUOTA__MESSAGES_PER_DAY: "0",
      NATTER_QUOTA__STORED_BYTES_PER_DAY: "0",
      ...env,
    },
    stdio: ["ignore", opts.onLogLine ? "pipe" : "inherit", "inherit"],
  });
  if (opts.onLogLine && proc.stdout) {
    const onLine = opts.onLogLine;
    createInterface({ input: proc.stdout, crlfDelay: Number.POSITIVE_INFINITY }).on("line", onLine);
  }
  const exited = new Promise((r) => proc.once("exit", r));
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGINT");
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };
  const url = `http://127.0.0.1:${edge}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`natter exited (${proc.exitCode}) before it was ready`);
    if (Date.now() > deadline) {
      await stop();
      throw new Error("natter was not ready within 60 s");
    }
    if (await fetch(`${url}/readyz`).then((r) => r.ok, () => false)) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  const natsPid = () => Number(readFileSync(path.join(dir, "nats", "nats-server.pid"), "utf8").trim());
  const natsUrl = `nats://127.0.0.1:${nats}`;
  const opsConnect = () => {
    const seed = readFileSync(path.join(dir, "nats", "auth", "ops.nk"), "utf8").trim();
    return connect({ servers: natsUrl, authenticator: nkeyAuthenticator(new TextEncoder().encode(seed)), noAsyncTraces: true });
  };
  return { url, natsUrl, workersUrl: `http://127.0.0.1:${workers}`, pid: proc.pid!, natsPid, opsConnect, stop };
}

/** The soft limit on open files (`ulimit -n`): natter and the bench each hold a descriptor per socket. */
export function openFileLimit(): number {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync("/proc/self/limits", "utf8"));
  return !m || m[1] === "unlimited" ? Number.POSITIVE_INFINITY : Number(m[1]);
}

/** A dev token for `user` (POST /dev/token: natter started with --dev). */
export async function devToken(url: string, user: string): Promise<string> {
  const r = await fetch(`${url}/dev/token`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ user }) });
  if (!r.ok) throw new Error(`POST /dev/token answered ${r.status}`);
  return ((await r.json()) as { token: string }).token;
}

/** fn(0…n-1), at most `width` at a time. */
export async function pooled(n: number, width: number, fn: (k: number) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < n) await fn(next++);
  };
  await Promise.all(Array.from({ length: Math.min(width, n) }, lane));
}

/**
 * Ends a benchmark that runs past `seconds`: says so as `bench:<name> failed`, runs `cleanup`
 * (close the bench's sockets), stops natter (SIGINT; killed after 15 s), then kills its
 * nats-server if it is still there (a natter that gives up stopping leaves it), and exits 1.
 * clearTimeout() the handle when the run ends in time.
 */
export function watchdog(name: string, seconds: number, node: () => BenchNode | undefined, cleanup: () => void = () => {}): NodeJS.Timeout {
  return setTimeout(() => {
    process.stderr.write(`bench:${name} failed: timed out after ${seconds} s\n`);
    cleanup();
    const n = node();
    const natsPid = natsPidOf(n); // read before stop() removes natter's folder
    const kill = (pid: number | undefined) => {
      try {
        if (pid) process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    };
    void Promise.race([n?.stop(), new Promise((r) => setTimeout(r, 15_000))])
      .then(() => {
        kill(n?.pid);
        kill(natsPid);
      })
      .finally(() => process.exit(1));
  }, seconds * 1000);
}

function natsPidOf(node: BenchNode | undefined): number | undefined {
  try {
    return node?.natsPid();
  } catch {
    return undefined; // natter stopped before it wrote the pid file
  }
}

