// Bookkeeping for every server process the harness spawns, so the global teardown can prove
// none was left behind; plus free-port picking and pid-based termination.
//
// The global setup makes a run folder and puts its path in NATTER_TEST_RUN_DIR before any test
// worker starts; workers inherit it. Each spawn appends one JSON line to `<run dir>/pids.jsonl`.
// A pid is identified together with its start time (from /proc) so a pid reused by an unrelated
// process is never mistaken for ours, let alone killed.
import { appendFileSync, mkdirSync, readFileSync } from "node:fs";
import fs from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

export const RUN_DIR_ENV = "NATTER_TEST_RUN_DIR";

export type ServerKind = "nats-server" | "cassandra" | "minio" | "natter";

export interface RecordedProcess {
  pid: number;
  kind: ServerKind;
  /** Start time in clock ticks since boot (/proc/<pid>/stat field 22); undefined off Linux. */
  startTime: number | undefined;
  /** The server's temp folder, removed if the process is found leaked. */
  dir: string;
}

function pidsFile(runDir: string): string {
  return path.join(runDir, "pids.jsonl");
}

/** The start time of a live process, or undefined if it is gone (or /proc is unavailable). */
export function processStartTime(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name, which is in parentheses and may contain spaces.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const state = fields[0];
    const start = Number(fields[19]);
    if (state === "Z" || state === "X" || !Number.isFinite(start)) return undefined;
    return start;
  } catch {
    return undefined;
  }
}

/** Is this process (pid plus start time, when known) still running? Zombies count as gone. */
export function isAlive(pid: number, startTime?: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  const now = processStartTime(pid);
  if (now === undefined) return !isLinux();
  return startTime === undefined || now === startTime;
}

function isLinux(): boolean {
  return process.platform === "linux";
}

/** Records a spawned server in the run's pid file (no-op outside a harness run). */
export function recordProcess(pid: number, kind: ServerKind, dir: string): void {
  const runDir = process.env[RUN_DIR_ENV];
  if (runDir === undefined || runDir === "") return;
  const entry: RecordedProcess = { pid, kind, startTime: processStartTime(pid), dir };
  mkdirSync(runDir, { recursive: true });
  appendFileSync(pidsFile(runDir), `${JSON.stringify(entry)}\n`);
}

async function recordedProcesses(runDir: string): Promise<RecordedProcess[]> {
  let text: string;
  try {
    text = await fs.readFile(pidsFile(runDir), "utf8");
  } catch {
    return [];
  }
  return text
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as RecordedProcess);
}

/**
 * Waits up to `graceMs` for every recorded process to be gone, SIGKILLs the survivors, removes
 * their temp folders and returns them (empty when nothing leaked).
 */
export async function reapLeftovers(runDir: string, graceMs = 15_000): Promise<RecordedProcess[]> {
  const recorded = await recordedProcesses(runDir);
  const deadline = performance.now() + graceMs;
  let alive = recorded.filter((p) => isAlive(p.pid, p.startTime));
  while (alive.length > 0 && performance.now() < deadline) {
    await sleep(200);
    alive = alive.filter((p) => isAlive(p.pid, p.startTime));
  }
  for (const p of alive) {
    try {
      process.kill(p.pid, "SIGKILL");
    } catch {
      // gone meanwhile
    }
  }
  const tmp = `${path.resolve(os.tmpdir())}${path.sep}`;
  for (const p of alive) {
    if (path.resolve(p.dir).startsWith(tmp)) await fs.rm(p.dir, { recursive: true, force: true });
  }
  return alive;
}

/**
 * Sends `signal`, waits up to `graceMs` for the process to go, then SIGKILLs it and waits up to
 * 5 s more. Works for processes this one did not spawn (a detached server from an earlier run).
 */
export async function terminate(
  pid: number,
  opts: { startTime?: number; signal?: NodeJS.Signals; graceMs?: number } = {},
): Promise<void> {
  const alive = (): boolean => isAlive(pid, opts.startTime);
  const waitGone = async (ms: number): Promise<boolean> => {
    const deadline = performance.now() + ms;
    while (alive()) {
      if (performance.now() > deadline) return false;
      await sleep(50);
    }
    return true;
  };
  if (!alive()) return;
  try {
    process.kill(pid, opts.signal ?? "SIGTERM");
  } catch {
    return;
  }
  if (await waitGone(opts.graceMs ?? 10_000)) return;
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    return;
  }
  if (!(await waitGone(5_000))) throw new Error(`pid ${pid} survived SIGKILL for 5 s`);
}

/**
 * Picks `count` distinct free TCP ports on 127.0.0.1 by binding port 0 and releasing. Another
 * process could take one before our server binds it: callers retry on "address already in use".
 */
export async function freePorts(count: number): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const server = net.createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(0, "127.0.0.1", () => resolve());
      });
    }
    return servers.map((s) => (s.address() as net.AddressInfo).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}

/** Resolves once something accepts TCP connections on host:port, or rejects after timeoutMs. */
export async function tcpAccepts(host: string, port: number, timeoutMs = 1_000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}

/** The last `lines` lines of a text file ("" if it does not exist). */
export async function fileTail(file: string, lines = 30): Promise<string> {
  try {
    const text = await fs.readFile(file, "utf8");
    return text.trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}

export function indent(text: string, prefix = "    "): string {
  return text === "" ? `${prefix}(empty)` : text.split("\n").map((l) => `${prefix}${l}`).join("\n");
}

/** A short random lowercase id for names of keyspaces, buckets and folders. */
export function randomId(length = 10): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  let id = "";
  for (let i = 0; i < length; i++) id += alphabet[Math.floor(Math.random() * alphabet.length)];
  return id;
}
