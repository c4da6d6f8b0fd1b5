// Obtains the pinned external servers natter runs and tests against into the cache folder
// (config/tools.ts): nats-server, the nats CLI and MinIO with `go install`, Cassandra's jars
// with Maven. Idempotent: a tool whose stamp matches its pin is left alone. Debian's Chromium
// (for the browser tests) is a system package: installed with apt-get when it is missing.
//
//   tsx scripts/obtain.ts [all | nats-server | nats | minio | cassandra | chromium ...]
//
// Every build goes to a temporary folder beside its target and is renamed into place only
// after it succeeded and was checked, so an interrupted run never leaves half a tool behind.
// Over 400 lines on purpose: one recipe per tool (five), each short, with the checks and the
// one-line errors that say how to get a missing prerequisite; splitting them apart would scatter
// what a newcomer reads in one place.
import { spawn } from "node:child_process";
import { constants as fsConstants } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { binPath, cacheDir, cassandraLibDir, CHROMIUM, TOOLS, type ToolName } from "../config/tools.ts";

export const ALL_TOOLS: readonly ToolName[] = ["nats-server", "nats", "minio", "cassandra"];
/** System packages installed with apt-get rather than cached in .cache/. */
export const SYSTEM_TOOLS = ["chromium"] as const;
export type SystemTool = (typeof SYSTEM_TOOLS)[number];

type GoTool = "nats-server" | "nats" | "minio";

/** Rough cold build times on this project's machines, printed so a wait is expected. */
const EXPECTED_SECONDS: Record<ToolName, number> = { "nats-server": 60, nats: 70, minio: 180, cassandra: 15 };

/** The options of Cassandra 5.0's conf/jvm17-server.options (GC, module access, Netty). */
export const CASSANDRA_JVM17_OPTIONS: readonly string[] = [
  "-XX:+UseG1GC",
  "-XX:+ParallelRefProcEnabled",
  "-XX:MaxTenuringThreshold=1",
  "-XX:G1HeapRegionSize=16m",
  "-XX:G1RSetUpdatingPauseTimePercent=5",
  "-XX:MaxGCPauseMillis=300",
  "-XX:InitiatingHeapOccupancyPercent=70",
  "-Djdk.attach.allowAttachSelf=true",
  "--add-exports java.base/jdk.internal.misc=ALL-UNNAMED",
  "--add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED",
  "--add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED",
  "--add-exports java.rmi/sun.rmi.server=ALL-UNNAMED",
  "--add-exports java.sql/java.sql=ALL-UNNAMED",
  "--add-exports java.base/java.lang.ref=ALL-UNNAMED",
  "--add-exports jdk.unsupported/sun.misc=ALL-UNNAMED",
  "--add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED",
  "--add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED",
  "--add-opens java.base/java.lang.module=ALL-UNNAMED",
  "--add-opens java.base/jdk.internal.loader=ALL-UNNAMED",
  "--add-opens java.base/jdk.internal.ref=ALL-UNNAMED",
  "--add-opens java.base/jdk.internal.reflect=ALL-UNNAMED",
  "--add-opens java.base/jdk.internal.math=ALL-UNNAMED",
  "--add-opens java.base/jdk.internal.module=ALL-UNNAMED",
  "--add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED",
  "--add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED",
  "--add-opens java.base/sun.nio.ch=ALL-UNNAMED",
  "--add-opens java.base/java.io=ALL-UNNAMED",
  "--add-opens java.base/java.lang.reflect=ALL-UNNAMED",
  "--add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED",
  "--add-opens java.base/java.lang=ALL-UNNAMED",
  "--add-opens java.base/java.util=ALL-UNNAMED",
  "--add-opens java.base/java.nio=ALL-UNNAMED",
  "--add-opens java.base/sun.nio.fs=ALL-UNNAMED",
  "-Dio.netty.tryReflectionSetAccessible=true",
  "-Dio.netty.allocator.useCacheForAllThreads=true",
  "-Dio.netty.allocator.maxOrder=11",
];

/** A tool this script needs (go, mvn, java) is missing or too old; the message says how to get it. */
export class MissingPrerequisiteError extends Error {
  override name = "MissingPrerequisiteError";
}

/** A build step failed; the message carries the last lines of its output. */
export class ObtainError extends Error {
  override name = "ObtainError";
}

/** What a tool's stamp file must contain for the cached copy to count as the pinned one. */
export function pinOf(tool: ToolName): string {
  if (tool === "cassandra") return `${TOOLS.cassandra.artifact}:${TOOLS.cassandra.version}`;
  return `${TOOLS[tool].module}@${TOOLS[tool].version}`;
}

/** `nats-server v2.15.2`, `cassandra 5.0.9`: how a tool is named in messages. */
export function label(tool: ToolName): string {
  return `${tool} ${TOOLS[tool].version}`;
}

/** Folder holding one Cassandra version: `lib/`, `jvm17.args` and the stamp. */
export function cassandraDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.dirname(cassandraLibDir(env));
}

export function cassandraJvmArgsPath(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(cassandraDir(env), "jvm17.args");
}

/** Where the tool lives once obtained: a binary, or Cassandra's lib folder. */
export function targetPath(tool: ToolName, env: NodeJS.ProcessEnv = process.env): string {
  return tool === "cassandra" ? cassandraLibDir(env) : binPath(tool, env);
}

/** Stamp written after a successful, checked install: `<binary>.version`, `<cassandra dir>/cassandra-all.version`. */
export function stampPath(tool: ToolName, env: NodeJS.ProcessEnv = process.env): string {
  return tool === "cassandra" ? path.join(cassandraDir(env), "cassandra-all.version") : `${binPath(tool, env)}.version`;
}

async function readIfExists(file: string): Promise<string | undefined> {
  try {
    return await fs.readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

async function exists(file: string, mode: number = fsConstants.F_OK): Promise<boolean> {
  try {
    await fs.access(file, mode);
    return true;
  } catch {
    return false;
  }
}

/** True when the tool's stamp matches its pin and its files are present. Cheap: runs nothing. */
export async function isCached(tool: ToolName, env: NodeJS.ProcessEnv = process.env): Promise<boolean> {
  const stamp = await readIfExists(stampPath(tool, env));
  if (stamp?.trim() !== pinOf(tool)) return false;
  if (tool === "cassandra") {
    return (await exists(cassandraJvmArgsPath(env))) && (await findJammJar(cassandraLibDir(env))) !== undefined;
  }
  return exists(binPath(tool, env), fsConstants.X_OK);
}

/** The `jamm-*.jar` Cassandra needs as `-javaagent`, if the lib folder has one. */
export async function findJammJar(libDir: string): Promise<string | undefined> {
  let names: string[];
  try {
    names = await fs.readdir(libDir);
  } catch {
    return undefined;
  }
  const jamm = names.find((n) => /^jamm-.*\.jar$/.test(n));
  return jamm === undefined ? undefined : path.join(libDir, jamm);
}

interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  output: string[];
}

/** Runs a command, keeping only the last `keepLines` lines of its combined output. */
function run(
  command: string,
  args: readonly string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; keepLines?: number } = {},
): Promise<RunResult> {
  const keep = opts.keepLines ?? 40;
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: opts.cwd, env: opts.env, stdio: ["ignore", "pipe", "pipe"] });
    const lines: string[] = [];
    let partial = "";
    const onData = (chunk: Buffer): void => {
      const parts = (partial + chunk.toString("utf8")).split("\n");
      partial = parts.pop() ?? "";
      for (const line of parts) {
        lines.push(line);
        if (lines.length > keep) lines.shift();
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.once("error", reject);
    child.once("close", (code, signal) => {
      if (partial !== "") lines.push(partial);
      resolve({ code, signal, output: lines.slice(-keep) });
    });
  });
}

function failure(what: string, result: RunResult): ObtainError {
  const how = result.signal !== null ? `was killed by ${result.signal}` : `exited with code ${result.code}`;
  const tail = result.output.map((l) => `    ${l}`).join("\n");
  return new ObtainError(`${what} ${how}; its last output:\n${tail}`);
}

async function which(command: string, versionArgs: readonly string[]): Promise<RunResult | undefined> {
  try {
    return await run(command, versionArgs, { keepLines: 10 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

/** Checks `go` is on PATH and new enough; returns its version line. */
export async function checkGo(): Promise<string> {
  const result = await which("go", ["version"]);
  const line = result?.output.join(" ") ?? "";
  if (result === undefined || result.code !== 0) {
    throw new MissingPrerequisiteError(
      "go not found on PATH: natter builds nats-server, the nats CLI and MinIO with `go install`; " +
        "install Go ≥ 1.22 (apt-get install golang-go, or from the Go website) and re-run `npm run obtain`",
    );
  }
  const m = /go(\d+)\.(\d+)/.exec(line);
  if (m !== null && (Number(m[1]) < 1 || (Number(m[1]) === 1 && Number(m[2]) < 22))) {
    throw new MissingPrerequisiteError(
      `go is too old (${line.trim()}): natter needs Go ≥ 1.22 to build nats-server ${TOOLS["nats-server"].version}; ` +
        "install a newer Go from the Go website and re-run `npm run obtain`",
    );
  }
  return line.trim();
}

/** Parses the major version out of `java -version` output (`"17.0.15"` → 17, `"1.8.0_392"` → 8). */
export function javaMajorVersion(output: string): number | undefined {
  const m = /version "(\d+)(?:\.(\d+))?/.exec(output);
  if (m === null) return undefined;
  const major = Number(m[1]);
  return major === 1 && m[2] !== undefined ? Number(m[2]) : major;
}

/** Checks `java` (17 or newer) and `mvn` are on PATH. */
export async function checkJavaAndMaven(): Promise<void> {
  const java = await which("java", ["-version"]);
  if (java === undefined) {
    throw new MissingPrerequisiteError(
      "java not found on PATH: natter runs Cassandra 5.0 on Java 17; " +
        "install it (apt-get install openjdk-17-jre-headless) and re-run `npm run obtain cassandra`",
    );
  }
  const major = javaMajorVersion(java.output.join("\n"));
  if (major === undefined || major < 17) {
    throw new MissingPrerequisiteError(
      `java is ${major === undefined ? "of an unknown version" : `version ${major}`}: Cassandra 5.0 needs Java 17 or newer; ` +
        "install openjdk-17-jre-headless (or put a JDK 17 first on PATH) and re-run `npm run obtain cassandra`",
    );
  }
  const mvn = await which("mvn", ["-v"]);
  if (mvn === undefined || mvn.code !== 0) {
    throw new MissingPrerequisiteError(
      "mvn not found on PATH: natter fetches Cassandra's jars from Maven Central with Maven; " +
        "install it (apt-get install maven) and re-run `npm run obtain cassandra`",
    );
  }
}

export type Log = (line: string) => void;

function seconds(since: number): string {
  return `${Math.round((performance.now() - since) / 1000)} s`;
}

/** What to look for in a freshly built binary's `--version` output. */
const VERSION_PROBE: Record<GoTool, (out: string) => boolean> = {
  "nats-server": (out) => out.includes(`nats-server: ${TOOLS["nats-server"].version}`),
  nats: (out) => out.includes(TOOLS.nats.version.replace(/^v/, "")),
  // A `go install`ed MinIO reports a development version; that it runs at all is the check.
  minio: (out) => /minio/i.test(out),
};

async function obtainGoTool(tool: GoTool, env: NodeJS.ProcessEnv, log: Log): Promise<void> {
  await checkGo();
  const { module, version, binary } = TOOLS[tool];
  const target = binPath(tool, env);
  await fs.mkdir(path.dirname(target), { recursive: true });
  // Beside the target, so the final rename stays on one filesystem.
  const tmpBin = await fs.mkdtemp(path.join(path.dirname(target), `.${binary}-build-`));
  try {
    log(`building ${label(tool)} with go install (about ${EXPECTED_SECONDS[tool]} s)…`);
    const started = performance.now();
    const result = await run("go", ["install", `${module}@${version}`], {
      env: { ...process.env, GOBIN: tmpBin },
    });
    if (result.code !== 0) throw failure(`go install ${module}@${version}`, result);
    const built = path.join(tmpBin, binary);
    const probe = await run(built, ["--version"], { keepLines: 5 });
    const out = probe.output.join("\n");
    if (probe.code !== 0 || !VERSION_PROBE[tool](out)) {
      throw new ObtainError(`${built} --version printed ${JSON.stringify(out.trim())}, not the expected ${label(tool)}`);
    }
    await fs.rm(stampPath(tool, env), { force: true });
    await fs.rename(built, target);
    await fs.writeFile(stampPath(tool, env), `${pinOf(tool)}\n`);
    log(`done in ${seconds(started)}: ${target}`);
  } finally {
    await fs.rm(tmpBin, { recursive: true, force: true });
  }
}

function cassandraPom(): string {
  const [groupId, artifactId] = TOOLS.cassandra.artifact.split(":");
  return `<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>natter</groupId>
  <artifactId>natter-cassandra-jars</artifactId>
  <version>0</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>${groupId}</groupId>
      <artifactId>${artifactId}</artifactId>
      <version>${TOOLS.cassandra.version}</version>
    </dependency>
  </dependencies>
</project>
`;
}

async function obtainCassandra(env: NodeJS.ProcessEnv, log: Log): Promise<void> {
  await checkJavaAndMaven();
  const dir = cassandraDir(env);
  const lib = cassandraLibDir(env);
  await fs.mkdir(dir, { recursive: true });
  const pomDir = await fs.mkdtemp(path.join(os.tmpdir(), "natter-cassandra-pom-"));
  const tmpLib = await fs.mkdtemp(path.join(dir, ".lib-build-"));
  try {
    await fs.writeFile(path.join(pomDir, "pom.xml"), cassandraPom());
    log(`fetching ${label("cassandra")} jars with Maven (about ${EXPECTED_SECONDS.cassandra} s)…`);
    const started = performance.now();
    const result = await run(
      "mvn",
      ["-q", "-B", "dependency:copy-dependencies", `-DoutputDirectory=${tmpLib}`, "-DincludeScope=runtime"],
      { cwd: pomDir },
    );
    if (result.code !== 0) throw failure("mvn dependency:copy-dependencies", result);
    const jars = (await fs.readdir(tmpLib)).filter((n) => n.endsWith(".jar"));
    if (!jars.some((n) => n === `cassandra-all-${TOOLS.cassandra.version}.jar`)) {
      throw new ObtainError(`Maven copied ${jars.length} jars into ${tmpLib} but no cassandra-all-${TOOLS.cassandra.version}.jar`);
    }
    if ((await findJammJar(tmpLib)) === undefined) {
      throw new ObtainError(`Maven copied no jamm-*.jar (Cassandra's -javaagent) into ${tmpLib}`);
    }
    await fs.rm(stampPath("cassandra", env), { force: true });
    await fs.chmod(tmpLib, 0o755); // mkdtemp makes it private
    await fs.rm(lib, { recursive: true, force: true });
    await fs.rename(tmpLib, lib);
    await fs.writeFile(cassandraJvmArgsPath(env), `${CASSANDRA_JVM17_OPTIONS.join("\n")}\n`);
    await fs.writeFile(stampPath("cassandra", env), `${pinOf("cassandra")}\n`);
    log(`done in ${seconds(started)}: ${jars.length} jars in ${lib}`);
  } finally {
    await fs.rm(pomDir, { recursive: true, force: true });
    await fs.rm(tmpLib, { recursive: true, force: true });
  }
}

/** Obtains one tool unless cached. Resolves to what happened. */
export async function obtain(
  tool: ToolName,
  opts: { env?: NodeJS.ProcessEnv; log?: Log } = {},
): Promise<"cached" | "obtained"> {
  const env = opts.env ?? process.env;
  const log = opts.log ?? ((line: string) => console.log(`${label(tool)}: ${line}`));
  if (await isCached(tool, env)) {
    log(`cached (${targetPath(tool, env)})`);
    return "cached";
  }
  if (tool === "cassandra") await obtainCassandra(env, log);
  else await obtainGoTool(tool, env, log);
  return "obtained";
}

/** Turns command-line words into tools: none or `all` means every tool; duplicates are dropped. */
export function parseTools(args: readonly string[]): ToolName[] {
  if (args.length === 0) return [...ALL_TOOLS];
  const picked = new Set<ToolName>();
  for (const arg of args) {
    if (arg === "all") for (const t of ALL_TOOLS) picked.add(t);
    else if ((ALL_TOOLS as readonly string[]).includes(arg)) picked.add(arg as ToolName);
    else throw new ObtainError(`unknown tool ${JSON.stringify(arg)}: expected all, ${ALL_TOOLS.join(", ")}`);
  }
  return ALL_TOOLS.filter((t) => picked.has(t));
}

/** Command-line words → pinned tools and system packages: none or `all` means every one of both. */
export function parseTargets(args: readonly string[]): { tools: ToolName[]; system: SystemTool[] } {
  const isSystem = (a: string): boolean => (SYSTEM_TOOLS as readonly string[]).includes(a);
  const rest = args.filter((a) => !isSystem(a));
  for (const arg of rest) {
    if (arg !== "all" && !(ALL_TOOLS as readonly string[]).includes(arg)) {
      throw new ObtainError(`unknown tool ${JSON.stringify(arg)}: expected all, ${[...ALL_TOOLS, ...SYSTEM_TOOLS].join(", ")}`);
    }
  }
  const everything = args.length === 0 || args.includes("all");
  return {
    tools: rest.length === 0 && !everything ? [] : parseTools(rest),
    system: SYSTEM_TOOLS.filter((t) => everything || args.includes(t)),
  };
}

/**
 * Debian's Chromium for the browser tests: nothing to do when /usr/bin/chromium exists; otherwise
 * `apt-get update` and `apt-get install -y chromium`, which needs root (one clear error otherwise).
 */
export async function obtainChromium(opts: { log?: Log } = {}): Promise<"cached" | "obtained"> {
  const log = opts.log ?? ((line: string) => console.log(`chromium: ${line}`));
  const binary = CHROMIUM.binary;
  if (await exists(binary, fsConstants.X_OK)) {
    log(`cached (${binary})`);
    return "cached";
  }
  const how = `install it with \`apt-get update && apt-get install -y ${CHROMIUM.aptPackage}\` (as root) and re-run \`npm run obtain chromium\``;
  if (process.getuid?.() !== 0) {
    throw new MissingPrerequisiteError(`chromium not found at ${binary}: the browser tests drive Debian's Chromium; ${how}`);
  }
  if ((await which("apt-get", ["--version"])) === undefined) {
    throw new MissingPrerequisiteError(`chromium not found at ${binary} and apt-get is not on PATH: ${how}`);
  }
  log(`installing Debian's ${CHROMIUM.aptPackage} with apt-get (about 60 s)…`);
  const started = performance.now();
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const update = await run("apt-get", ["update"], { env });
  if (update.code !== 0) throw failure("apt-get update", update);
  const install = await run("apt-get", ["install", "-y", CHROMIUM.aptPackage], { env });
  if (install.code !== 0) throw failure(`apt-get install -y ${CHROMIUM.aptPackage}`, install);
  const probe = await which(binary, ["--version"]);
  if (probe === undefined || probe.code !== 0) {
    throw new ObtainError(`apt-get installed ${CHROMIUM.aptPackage} but ${binary} --version did not run; ${how}`);
  }
  // Debian's wrapper script may print shell noise before the version line.
  const version = probe.output.find((l) => /chromium \d/i.test(l)) ?? probe.output.join(" ");
  log(`done in ${seconds(started)}: ${version.trim()} (${binary})`);
  return "obtained";
}

/** The command line: obtains the named tools one after another. Returns the exit code. */
export async function main(args: readonly string[]): Promise<number> {
  try {
    const { tools, system } = parseTargets(args);
    await fs.mkdir(cacheDir(), { recursive: true });
    for (const tool of tools) await obtain(tool);
    if (system.includes("chromium")) await obtainChromium();
    return 0;
  } catch (err) {
    if (err instanceof MissingPrerequisiteError || err instanceof ObtainError) console.error(`obtain: ${err.message}`);
    else console.error("obtain: unexpected failure:", err);
    return 1;
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  process.exitCode = await main(process.argv.slice(2));
}
