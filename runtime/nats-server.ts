// Runs one nats-server as a child process: writes its config, spawns `nats-server -c`, waits for
// the ports file (racing an early exit) and for the monitoring health check, and stops it.
// Modelled on nats.js `nst/src/launcher.ts`. No signal handlers and no process.exit here: the
// caller owns the lifecycle.
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

export interface LaunchNatsServerOptions {
  /** Path of the nats-server binary (see config/tools.ts `binPath("nats-server")`). */
  binary: string;
  /**
   * The server's configuration. The launcher appends `ports_file_dir`, so the text must not set it.
   * Use `port: -1` / `http: "127.0.0.1:-1"` for random ports; the monitoring port is required.
   */
  configText: string;
  /** Folder for `nats-server.conf` and the ports file; created if missing. */
  dir: string;
  /** Names the server in messages and log lines. */
  name?: string;
  /** Extra command-line flags after `-c <file>` (they override the config file). */
  args?: string[];
  /** Own process group: a terminal's Ctrl-C reaches the parent only, which then stops the server in order. */
  detached?: boolean;
  /** How long to wait for the ports file and the health check. Default 15 s. */
  readyTimeoutMs?: number;
  /** Receives every line the server prints. */
  log?: (line: string) => void;
  /** Called right after spawn with the child's pid (before it is ready), e.g. to record it. */
  onSpawn?: (pid: number) => void;
}

/** The ports file nats-server writes into `ports_file_dir`. */
interface NatsServerPorts {
  nats: string[];
  monitoring: string[];
  cluster?: string[];
  websocket?: string[];
  leafnode?: string[];
}

export interface NatsServerProcess {
  readonly pid: number;
  readonly name: string;
  /** `nats://127.0.0.1:PORT` */
  readonly clientUrl: string;
  /** `http://127.0.0.1:PORT` */
  readonly monitorUrl: string;
  /** `nats://127.0.0.1:PORT` of the cluster listener, when the config has a cluster block. */
  readonly clusterUrl: string | undefined;
  readonly ports: NatsServerPorts;
  readonly configFile: string;
  /** Resolves with the exit code (null when ended by a signal) once the process has exited. */
  readonly exited: Promise<number | null>;
  /** SIGTERM, then SIGKILL after `timeoutMs` (default 10 s); resolves once the process has exited. */
  stop(timeoutMs?: number): Promise<void>;
  /** SIGKILL at once (a crash); resolves once the process has exited. */
  kill9(): Promise<void>;
  /** The last lines the server printed (for error messages). */
  outputTail(): string[];
}

/** nats-server did not become ready: it exited, could not be spawned, or timed out. */
export class NatsServerLaunchError extends Error {
  override name = "NatsServerLaunchError";
}

const TAIL_LINES = 30;

/** Appends `ports_file_dir` to a config text; exported for tests. */
function withPortsFileDir(configText: string, portsDir: string): string {
  return `${configText.trimEnd()}\n\n# added by the launcher\nports_file_dir: ${JSON.stringify(portsDir)}\n`;
}

/** Rewrites `0.0.0.0`/`[::]` hosts in a ports-file URL to loopback, so clients can dial it. */
function dialable(url: string): string {
  return url.replace("://0.0.0.0:", "://127.0.0.1:").replace("://[::]:", "://127.0.0.1:");
}

function pickUrl(urls: string[] | undefined): string | undefined {
  if (urls === undefined || urls.length === 0) return undefined;
  return dialable(urls.find((u) => u.includes("127.0.0.1")) ?? (urls[0] as string));
}

function waitForExit(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode);
    else child.once("exit", (code) => resolve(code));
  });
}

export async function launchNatsServer(opts: LaunchNatsServerOptions): Promise<NatsServerProcess> {
  const name = opts.name ?? "nats-server";
  const readyTimeoutMs = opts.readyTimeoutMs ?? 15_000;
  const portsDir = path.join(opts.dir, "ports");
  const configFile = path.join(opts.dir, "nats-server.conf");
  await fs.mkdir(portsDir, { recursive: true });
  await fs.writeFile(configFile, withPortsFileDir(opts.configText, portsDir));

  const tail: string[] = [];
  const child = spawn(opts.binary, ["-c", configFile, ...(opts.args ?? [])], { stdio: ["ignore", "pipe", "pipe"], detached: opts.detached ?? false });
  let spawnError: Error | undefined;
  const spawnFailed = new Promise<void>((resolve) => {
    child.once("error", (err) => {
      spawnError = err;
      resolve();
    });
  });
  // `exit` does not fire when spawn itself fails; then `exited` settles with null via `error`.
  const exited = Promise.race([waitForExit(child), spawnFailed.then(() => null)]);
  // `close` comes after `exit`, once the pipes have delivered the last lines (usually the reason).
  const closed = new Promise<void>((resolve) => child.once("close", () => resolve()));
  const lastWords = (): Promise<unknown> => Promise.race([closed, sleep(500)]);
  for (const stream of [child.stdout, child.stderr]) {
    let partial = "";
    stream.on("data", (chunk: Buffer) => {
      const parts = (partial + chunk.toString("utf8")).split("\n");
      partial = parts.pop() ?? "";
      for (const line of parts) {
        tail.push(line);
        if (tail.length > TAIL_LINES) tail.shift();
        opts.log?.(line);
      }
    });
  }

  const describeTail = (): string =>
    tail.length === 0 ? "(it printed nothing)" : tail.map((l) => `    ${l}`).join("\n");

  const kill = async (signal: NodeJS.Signals): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) child.kill(signal);
    await exited;
  };

  const stop = async (timeoutMs = 10_000): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null || spawnError !== undefined) return;
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    try {
      await exited;
    } finally {
      clearTimeout(timer);
    }
  };

  const deadline = performance.now() + readyTimeoutMs;
  try {
    if (child.pid !== undefined) opts.onSpawn?.(child.pid);
    const ports = await waitForReady();
    const clientUrl = pickUrl(ports.nats);
    const monitorUrl = pickUrl(ports.monitoring);
    if (clientUrl === undefined || monitorUrl === undefined) {
      throw new NatsServerLaunchError(
        `${name}: the ports file lists no ${clientUrl === undefined ? "client" : "monitoring"} URL ` +
          `(${JSON.stringify(ports)}); the config must set \`http\` (e.g. "127.0.0.1:-1") — see ${configFile}`,
      );
    }
    await waitForHealth(monitorUrl);
    return {
      pid: child.pid as number,
      name,
      clientUrl,
      monitorUrl,
      clusterUrl: pickUrl(ports.cluster),
      ports,
      configFile,
      exited,
      stop,
      kill9: () => kill("SIGKILL"),
      outputTail: () => [...tail],
    };
  } catch (err) {
    await kill("SIGKILL");
    throw err;
  }

  async function waitForReady(): Promise<NatsServerPorts> {
    for (let delay = 10; ; delay = Math.min(delay * 2, 100)) {
      if (spawnError !== undefined) {
        throw new NatsServerLaunchError(
          `${name}: could not start ${opts.binary}: ${spawnError.message}. ` +
            "Is the binary there? Obtain it with `npx tsx scripts/obtain.ts nats-server`.",
          { cause: spawnError },
        );
      }
      if (child.exitCode !== null || child.signalCode !== null) {
        await exited;
        await lastWords();
        throw new NatsServerLaunchError(
          `${name}: nats-server exited (code ${child.exitCode ?? child.signalCode}) before it was ready. ` +
            `Check the config ${configFile} and that ${opts.binary} is the pinned version. Its last output:\n${describeTail()}`,
        );
      }
      const ports = await readPortsFile();
      if (ports !== undefined) return ports;
      if (performance.now() > deadline) {
        throw new NatsServerLaunchError(
          `${name}: no ports file in ${portsDir} after ${readyTimeoutMs} ms (pid ${child.pid}). ` +
            `Check the config ${configFile}. Its last output:\n${describeTail()}`,
        );
      }
      await Promise.race([sleep(delay), exited]);
    }

    async function readPortsFile(): Promise<NatsServerPorts | undefined> {
      const names = await fs.readdir(portsDir);
      const file = names.find((n) => n.endsWith(`_${child.pid}.ports`));
      if (file === undefined) return undefined;
      try {
        const parsed = JSON.parse(await fs.readFile(path.join(portsDir, file), "utf8")) as NatsServerPorts;
        return Array.isArray(parsed.nats) ? parsed : undefined;
      } catch {
        return undefined; // written but not complete yet
      }
    }
  }

  async function waitForHealth(monitorUrl: string): Promise<void> {
    // Passes as soon as the server accepts clients and, when configured, JetStream is enabled.
    const url = `${monitorUrl}/healthz?js-enabled-only=true`;
    let last = "no answer yet";
    for (let delay = 10; ; delay = Math.min(delay * 2, 200)) {
      if (child.exitCode !== null || child.signalCode !== null) {
        await lastWords();
        throw new NatsServerLaunchError(
          `${name}: nats-server exited (code ${child.exitCode ?? child.signalCode}) while waiting for ${url}. ` +
            `Its last output:\n${describeTail()}`,
        );
      }
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
        if (res.ok) return;
        last = `HTTP ${res.status} ${await res.text()}`;
      } catch (err) {
        last = (err as Error).message;
      }
      if (performance.now() > deadline) {
        throw new NatsServerLaunchError(
          `${name}: ${url} not healthy after ${readyTimeoutMs} ms (last: ${last}). ` +
            `Is JetStream's store_dir writable? Its last output:\n${describeTail()}`,
        );
      }
      await sleep(delay);
    }
  }
}
