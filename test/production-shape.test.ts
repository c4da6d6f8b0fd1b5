// The production shape, checked without Docker: compose.yaml, the Dockerfile, .dockerignore and
// the NATS cluster configs in deploy/. Every check collects its problems and compares the list
// with [], so a failure names each thing that is wrong at once.
// Long (≈1,100 lines) because it parses what Docker would (compose.yaml, the Dockerfile, the
// nats-server configs, the setup jobs' CQL and MinIO policy) without Docker: each part is one
// describe block over the same parsed files.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { binPath, loadConfig, REPO_ROOT, type Config } from "../config/index.ts";
import { deployAuthorization, NATS_IDENTITY_ROLES, passwordVariable } from "../nats/index.ts";
import { cqlStatements, GRANTS_CQL, NATTER_POLICY, ROLES_CQL } from "./support/deploy.ts";

const COMPOSE_FILE = "compose.yaml";
const ROOT_NATS_CONF = "nats-server.conf";

const rel = (p: string) => path.relative(REPO_ROOT, p) || ".";
const readRepo = (file: string) => readFileSync(path.join(REPO_ROOT, file), "utf8");

type Tree = { [key: string]: unknown };
const isTree = (v: unknown): v is Tree => typeof v === "object" && v !== null && !Array.isArray(v);
const asTree = (v: unknown): Tree => (isTree(v) ? v : {});
const asList = (v: unknown): unknown[] => (Array.isArray(v) ? v : v === undefined || v === null ? [] : [v]);
/** compose accepts `command`/`test` as a string or a list: one string either way. */
const asText = (v: unknown): string => asList(v).map(String).join(" ");

// ── compose interpolation ────────────────────────────────────────────────────────────────────

/** The value a required `${VAR:?…}` stands for here: as strong as any secret in the schema asks (a hash of the name). */
const dummyFor = (name: string) => createHash("sha256").update(name).digest("base64url");

/**
 * compose's substitution of one value: `$$` → `$`, `${V:-d}`/`${V-d}` → d, `${V:?m}`/`${V?m}` →
 * a dummy (compose stops when V is unset), `${V:+x}` → x. A bare `${V}`/`$V` is a problem: compose
 * would substitute an empty string when V is unset.
 */
function interpolate(value: string, where: string, problems: string[]): string {
  return value.replace(/\$\$|\$\{([^}]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (whole, braced: string | undefined, bare: string | undefined) => {
    if (whole === "$$") return "$";
    const expr = braced ?? bare ?? "";
    const m = /^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?$/s.exec(expr);
    if (!m) {
      problems.push(`${where}: cannot read the substitution ${whole}`);
      return "";
    }
    const [, name = "", op, arg = ""] = m;
    if (op === ":-" || op === "-") return arg;
    if (op === ":?" || op === "?") return dummyFor(name);
    if (op === ":+" || op === "+") return arg;
    problems.push(`${where}: ${whole} has no default: write \${${name}:?why it is needed} or \${${name}:-default}`);
    return "";
  });
}

// ── compose.yaml ─────────────────────────────────────────────────────────────────────────────

const compose = asTree(parseYaml(readRepo(COMPOSE_FILE), { merge: true }));
const services = Object.entries(asTree(compose.services)).map(([name, s]) => ({ name, s: asTree(s) }));
type Service = (typeof services)[number];

const imageOf = (svc: Service, problems: string[] = []) =>
  typeof svc.s.image === "string" ? interpolate(svc.s.image, `${svc.name}.image`, problems) : undefined;
const isNatter = (svc: Service) => svc.s.build !== undefined || (imageOf(svc) ?? "").startsWith("natter:");
const isNats = (svc: Service) => /^(docker\.io\/)?(library\/)?nats:/.test(imageOf(svc) ?? "");
const natterServices = services.filter(isNatter);
const natsServices = services.filter(isNats);

/**
 * `image` names a digest, or a tag that names one release: a full x.y.z version
 * (`nats:2.15.2-alpine`) or a dated release (`minio/minio:RELEASE.2025-04-22T22-12-26Z`).
 * `latest`, `20` or `5.0` move when upstream publishes.
 */
function pinProblem(image: string): string | undefined {
  if (/@sha256:[0-9a-f]{64}$/.test(image)) return undefined;
  const lastPart = image.slice(image.lastIndexOf("/") + 1);
  const colon = lastPart.indexOf(":");
  if (colon < 0) return `"${image}" has no tag: name an exact version (or a digest)`;
  const tag = lastPart.slice(colon + 1);
  if (/(^|[^\d.])\d+\.\d+\.\d+/.test(tag) || /\d{4}-\d{2}-\d{2}/.test(tag)) return undefined;
  return `"${image}" has the tag "${tag}", which moves: name an exact version such as x.y.z (or a digest)`;
}

/** A service's environment as compose hands it to the container (list or mapping form). */
function environmentOf(svc: Service, problems: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  const raw = svc.s.environment;
  const entries: [string, unknown][] = Array.isArray(raw)
    ? raw.map((line): [string, unknown] => {
        const s = String(line);
        const eq = s.indexOf("=");
        return eq < 0 ? [s, null] : [s.slice(0, eq), s.slice(eq + 1)];
      })
    : Object.entries(asTree(raw));
  for (const [key, value] of entries) {
    if (value === null || value === undefined) {
      problems.push(`${svc.name}.environment.${key} has no value, so it is copied from the shell that runs compose: write ${key}: \${${key}:?…}`);
      continue;
    }
    env[key] = interpolate(String(value), `${svc.name}.environment.${key}`, problems);
  }
  if (svc.s.env_file !== undefined) problems.push(`${svc.name}: env_file is not checked by this test; put natter's settings in environment`);
  return env;
}

// ── Dockerfile ───────────────────────────────────────────────────────────────────────────────

interface Instruction {
  op: string;
  args: string;
  line: number;
}

function dockerfileInstructions(text: string): Instruction[] {
  const out: Instruction[] = [];
  let pending = "";
  let start = 0;
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    if (pending === "" && (line === "" || line.startsWith("#"))) return;
    if (pending === "") start = i + 1;
    if (line.startsWith("#")) return; // comment inside a continuation
    if (line.endsWith("\\")) {
      pending += `${line.slice(0, -1)} `;
      return;
    }
    const full = pending + line;
    pending = "";
    const m = /^(\S+)\s*(.*)$/s.exec(full);
    if (m) out.push({ op: m[1]!.toUpperCase(), args: m[2]!.trim(), line: start });
  });
  return out;
}

const dockerfileText = readRepo("Dockerfile");
const instructions = dockerfileInstructions(dockerfileText);
const finalStage = instructions.slice(instructions.map((i) => i.op).lastIndexOf("FROM"));

/** `ENV A=1 B=2` or `ENV A 1` → entries. */
function envInstruction(args: string): [string, string][] {
  if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(args)) {
    const m = /^(\S+)\s+(.*)$/s.exec(args);
    return m ? [[m[1]!, m[2]!]] : [];
  }
  return [...args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S*)/g)].map((m): [string, string] => {
    const v = m[2]!;
    return [m[1]!, v.startsWith('"') ? (JSON.parse(v) as string) : v];
  });
}
/** NATTER_* settings the image itself sets; compose's environment goes on top. */
const imageNatterEnv = Object.fromEntries(
  finalStage.filter((i) => i.op === "ENV").flatMap((i) => envInstruction(i.args)).filter(([k]) => k.startsWith("NATTER_")),
);

function execForm(ins: Instruction | undefined): string[] | undefined {
  if (!ins) return undefined;
  try {
    const v: unknown = JSON.parse(ins.args);
    return Array.isArray(v) && v.every((x) => typeof x === "string") ? v : undefined;
  } catch {
    return undefined;
  }
}

/** The commands bin/natter.ts dispatches on (`case "start":` …). */
const natterCommands = new Set([...readRepo("bin/natter.ts").matchAll(/case "([a-z-]+)":/g)].map((m) => m[1]!));

// ── NATS configuration files ─────────────────────────────────────────────────────────────────

type NatsValue = string | NatsValue[] | NatsMap;
type NatsMap = { [key: string]: NatsValue };

/**
 * A small reader of nats-server's config syntax (maps `{}`, arrays `[]`, `key: v`, `key = v`,
 * `key v`, `#` and `//` comments, quoted strings). Scalars stay strings; keys are lower-cased as
 * nats-server treats them. Enough to check structure; `nats-server -t` checks the rest.
 */
function parseNatsConf(text: string, file: string): NatsMap {
  let i = 0;
  const fail = (what: string): never => {
    throw new Error(`${file}:${text.slice(0, i).split("\n").length}: ${what}`);
  };
  const skipBlank = () => {
    for (;;) {
      const c = text[i];
      if (c === undefined) return;
      if (" \t\r\n,;".includes(c)) i++;
      else if (c === "#" || (c === "/" && text[i + 1] === "/")) while (i < text.length && text[i] !== "\n") i++;
      else return;
    }
  };
  const skipSpaces = () => {
    while (text[i] === " " || text[i] === "\t") i++;
  };
  const quoted = (): string => {
    const q = text[i]!;
    const end = text.indexOf(q, i + 1);
    if (end < 0) fail("unterminated string");
    const raw = text.slice(i, end + 1);
    i = end + 1;
    return q === '"' ? (JSON.parse(raw) as string) : raw.slice(1, -1);
  };
  const bare = (stops: string): string => {
    const from = i;
    while (i < text.length && !stops.includes(text[i]!)) i++;
    return text.slice(from, i).trim();
  };
  const value = (inArray: boolean): NatsValue => {
    const c = text[i];
    if (c === "{") {
      i++;
      return map("}");
    }
    if (c === "[") {
      i++;
      const items: NatsValue[] = [];
      for (;;) {
        skipBlank();
        if (text[i] === "]") {
          i++;
          return items;
        }
        if (i >= text.length) fail("unterminated array");
        items.push(value(true));
      }
    }
    if (c === '"' || c === "'") return quoted();
    const v = bare(inArray ? " \t\r\n,]" : "\r\n,}#");
    if (v === "") fail("missing value");
    return v;
  };
  const map = (close: string): NatsMap => {
    const out: NatsMap = {};
    for (;;) {
      skipBlank();
      if (i >= text.length) {
        if (close === "") return out;
        fail("unterminated map");
      }
      if (text[i] === close) {
        i++;
        return out;
      }
      const key = text[i] === '"' || text[i] === "'" ? quoted() : bare(" \t\r\n:={[");
      if (key === "") fail(`unexpected "${text[i]}"`);
      skipSpaces();
      if (text[i] === ":" || text[i] === "=") i++;
      skipSpaces();
      out[key.toLowerCase()] = value(false);
    }
  };
  return map("");
}

const readNatsConf = (file: string) => parseNatsConf(readRepo(file), file);
const str = (v: NatsValue | undefined): string | undefined => (typeof v === "string" ? v : undefined);
const mapOf = (v: NatsValue | undefined): NatsMap => (v !== undefined && typeof v === "object" && !Array.isArray(v) ? v : {});
const portOf = (listen: string | undefined, fallback: number) => {
  const m = /:(\d+)$/.exec(listen ?? "");
  return m ? Number(m[1]) : fallback;
};

interface NatsNode {
  svc: Service;
  /** The repo file mounted as its config, when there is one. */
  file?: string;
  conf?: NatsMap;
  /** The files it includes (`include x`: relative to the config), by the path in the repository. */
  includes: { file: string; conf?: NatsMap }[];
  /** Its environment as compose hands it over (what `$NAME` values in its config resolve to). */
  env: Record<string, string>;
  problems: string[];
}

/** `-c`/`--config` target of a NATS service's command, and the repo file mounted there. */
function natsConfigFile(svc: Service, problems: string[]): string | undefined {
  const cmd = asList(svc.s.command).map(String);
  const at = cmd.findIndex((a) => a === "-c" || a === "--config" || a === "-config");
  const target = at >= 0 ? cmd[at + 1] : undefined;
  if (!target) {
    problems.push(`${svc.name}: command does not pass --config <file> (${JSON.stringify(cmd)})`);
    return undefined;
  }
  // A bind mount, or a compose config (`configs: [{ source, target }]` → top-level `file:`).
  const source =
    mountsOf(svc).find((m) => m.target === target && m.bind)?.source ??
    asList(svc.s.configs)
      .map(asTree)
      .filter((c) => c.target === target && typeof c.source === "string")
      .map((c) => asTree(asTree(compose.configs)[String(c.source)]).file)
      .find((f): f is string => typeof f === "string");
  if (!source) {
    problems.push(`${svc.name}: nothing from the repository is mounted at ${target}, the config its command names`);
    return undefined;
  }
  const file = rel(path.resolve(REPO_ROOT, source));
  if (!existsSync(path.join(REPO_ROOT, file))) {
    problems.push(`${svc.name}: mounts ${file} at ${target}, and it does not exist`);
    return undefined;
  }
  return file;
}

interface Mount {
  source: string;
  target: string;
  bind: boolean;
}

/** Short (`src:dst[:mode]`) and long (`{ type, source, target }`) volume syntax. */
function mountsOf(svc: Service): Mount[] {
  return asList(svc.s.volumes).map((v): Mount => {
    if (typeof v === "string") {
      const [source = "", target = ""] = v.split(":");
      return { source, target, bind: /^[./~]/.test(source) };
    }
    const t = asTree(v);
    return { source: String(t.source ?? ""), target: String(t.target ?? ""), bind: t.type === "bind" };
  });
}

/** `include` lines of a config (the small reader keeps one value per key: read them from the text). */
function includesOf(file: string): string[] {
  return [...readRepo(file).matchAll(/^\s*include\s+["']?([^"'\s#;]+)["']?/gm)].map((m) => rel(path.resolve(REPO_ROOT, path.dirname(file), m[1]!)));
}

const natsNodes: NatsNode[] = natsServices.map((svc) => {
  const problems: string[] = [];
  const env = environmentOf(svc, problems);
  const file = natsConfigFile(svc, problems);
  if (!file) return { svc, includes: [], env, problems };
  const includes = includesOf(file).map((inc) => {
    if (!existsSync(path.join(REPO_ROOT, inc))) {
      problems.push(`${file}: includes ${inc}, which does not exist`);
      return { file: inc };
    }
    try {
      return { file: inc, conf: readNatsConf(inc) };
    } catch (err) {
      problems.push(`${svc.name}: ${(err as Error).message}`);
      return { file: inc };
    }
  });
  try {
    return { svc, file, conf: readNatsConf(file), includes, env, problems };
  } catch (err) {
    return { svc, file, includes, env, problems: [...problems, `${svc.name}: ${(err as Error).message}`] };
  }
});

/** A config value that is a `$NAME` reference, resolved from the node's environment (nats-server does so). */
function resolved(v: string, env: Record<string, string>): string {
  const m = /^\$([A-Za-z_][A-Za-z0-9_]*)$/.exec(v);
  return m ? (env[m[1]!] ?? v) : v;
}

// ── the natter services, parsed once ─────────────────────────────────────────────────────────

interface NatterService {
  svc: Service;
  command: string[];
  config?: Config;
  problems: string[];
}

const natter: NatterService[] = natterServices.map((svc) => {
  const problems: string[] = [];
  const composeEnv = environmentOf(svc, problems);
  const env = { ...imageNatterEnv, ...composeEnv };
  const command = svc.s.command === undefined ? (execForm(finalStage.find((i) => i.op === "CMD")) ?? []) : asList(svc.s.command).map(String);
  try {
    return { svc, command, config: loadConfig({ env, overrides: {} }), problems };
  } catch (err) {
    const lines = (err as Error).message.split("\n").slice(1).map((l) => l.replace(/^\s*- /, ""));
    const fromImage = (l: string) => Object.keys(imageNatterEnv).some((k) => !(k in composeEnv) && (l.startsWith(`${k}:`) || l.startsWith(`${k} (`)));
    return { svc, command, problems: [...problems, ...lines.map((l) => `${svc.name}: ${l}${fromImage(l) ? " (set by the Dockerfile's ENV)" : ""}`)] };
  }
});
const starters = natter.filter((n) => n.command[0] === "start");

/** Services `name` waits for, directly or through the services it waits for. */
function dependenciesOf(name: string, seen = new Set<string>()): Set<string> {
  const deps = services.find((s) => s.name === name)?.s.depends_on;
  for (const dep of Array.isArray(deps) ? deps.map(String) : Object.keys(asTree(deps))) {
    if (seen.has(dep)) continue;
    seen.add(dep);
    dependenciesOf(dep, seen);
  }
  return seen;
}

// ── credentials: who holds which secret ──────────────────────────────────────────────────────

/** A name compose's variables give secrets (passwords, keys, the MinIO admin's name). */
const SECRET_VARIABLE = /PASSWORD|SECRET|PRIVATE_KEY|ROOT_USER/;

/** A service's environment as written, before substitution (list or mapping form). */
function rawEnvironmentOf(svc: Service): Record<string, string> {
  const raw = svc.s.environment;
  if (Array.isArray(raw)) {
    return Object.fromEntries(raw.map((line) => String(line)).filter((l) => l.includes("=")).map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));
  }
  return Object.fromEntries(Object.entries(asTree(raw)).map(([k, v]) => [k, String(v ?? "")]));
}

/** The compose variables a text substitutes (`${NAME…}`, `$NAME`; not `$$`). */
const variablesIn = (text: string) => [...text.replace(/\$\$/g, "").matchAll(/\$\{?([A-Za-z_][A-Za-z0-9_]*)/g)].map((m) => m[1]!);

/** The variable of a value that is exactly one required substitution, `${NAME:?why}` or `${NAME?why}`. */
const requiredVariable = (value: string | undefined) => /^\$\{([A-Za-z_][A-Za-z0-9_]*):?\?[^}]*\}$/.exec(value ?? "")?.[1];

const imageIs = (svc: Service, re: RegExp) => re.test(imageOf(svc) ?? "");
const isOneShot = (svc: Service) => svc.s.restart === "no";
const minioServers = services.filter((s) => imageIs(s, /(^|\/)minio\/minio:/));
/** MinIO setup jobs: the mc client image, run once. */
const minioJobs = services.filter((s) => imageIs(s, /(^|\/)minio\/mc:/) && isOneShot(s));
const cassandraServers = services.filter((s) => imageIs(s, /^(docker\.io\/)?(library\/)?cassandra:/) && !isOneShot(s));
/** Cassandra setup jobs (the cassandra image for its cqlsh, run once), by the phase their command names. */
const cassandraJobs = services
  .filter((s) => imageIs(s, /^(docker\.io\/)?(library\/)?cassandra:/) && isOneShot(s))
  .map((svc) => ({ svc, phase: [...asList(svc.s.entrypoint), ...asList(svc.s.command)].map(String).at(-1) ?? "" }));

/** Environment keys that may carry a secret, by kind of service; natter's come from its command. */
function secretKeysAllowed(svc: Service): Set<string> {
  const n = natter.find((x) => x.svc === svc);
  if (n) {
    const keys = ["NATTER_STORE__PASSWORD"];
    if (n.command[0] === "start") {
      keys.push("NATTER_AUTH__JWT_SECRET", "NATTER_BLOBS__SECRET_KEY", "NATTER_PUSH__VAPID__PRIVATE_KEY");
      if (n.config?.edge.enabled) keys.push("NATTER_NATS__CREDENTIALS__EDGE__PASSWORD");
      if (n.config?.workers.enabled) keys.push("NATTER_NATS__CREDENTIALS__WORKERS__PASSWORD");
    }
    return new Set(keys);
  }
  // The NATS servers read every identity's password (auth.conf) and the route's (their routes' URLs).
  if (natsServices.includes(svc)) return new Set(Object.keys(rawEnvironmentOf(svc)).filter((k) => k.startsWith("NATS_")));
  if (minioServers.includes(svc)) return new Set(["MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"]);
  if (minioJobs.includes(svc)) return new Set(["MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "MINIO_NATTER_PASSWORD"]);
  const job = cassandraJobs.find((j) => j.svc === svc);
  // Setting the roles' passwords needs them; granting permissions does not.
  if (job) return new Set(job.phase === "roles" ? ["ADMIN_PASSWORD", "MIGRATE_PASSWORD", "NATTER_PASSWORD"] : ["ADMIN_PASSWORD"]);
  return new Set();
}

/** `-Dkey=value` arguments of a command, by key. */
const systemProperties = (svc: Service) =>
  new Map(
    asList(svc.s.command)
      .map(String)
      .flatMap((a) => (/^-D([^=]+)=(.*)$/.exec(a) ? [[a.slice(2, a.indexOf("=")), a.slice(a.indexOf("=") + 1)] as const] : [])),
  );

/** The mounts of a service whose source is in the repository, resolved. */
const repoMounts = (svc: Service) => mountsOf(svc).filter((m) => m.bind).map((m) => ({ ...m, file: rel(path.resolve(REPO_ROOT, m.source)) }));

/** The repository file a container path comes from, through a file or folder mount. */
function repoFileAt(svc: Service, containerPath: string): string | undefined {
  for (const m of repoMounts(svc)) {
    if (containerPath === m.target) return m.file;
    if (containerPath.startsWith(`${m.target}/`)) return path.posix.join(m.file, containerPath.slice(m.target.length + 1));
  }
  return undefined;
}

/** The repository script a one-shot runs: its entrypoint or command names it where it is mounted. */
const scriptOf = (svc: Service) =>
  [...asList(svc.s.entrypoint), ...asList(svc.s.command)].map((a) => repoFileAt(svc, String(a))).find((f) => f?.endsWith(".sh"));

/** What S3BlobStore asks of its bucket (persistence/s3-blob-store.ts lists which call needs which). */
const NATTER_S3_ACTIONS = {
  bucket: ["s3:HeadBucket"],
  objects: ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject"],
};

// ── the checks ───────────────────────────────────────────────────────────────────────────────

describe("production shape (compose.yaml, Dockerfile, deploy/)", () => {
  it("compose.yaml has NATS, Cassandra, MinIO and natter services", () => {
    const problems: string[] = [];
    if (natsServices.length < 3) problems.push(`${natsServices.length} NATS services (${natsServices.map((s) => s.name).join(", ")}): a JetStream cluster needs 3`);
    if (!services.some((s) => (imageOf(s) ?? "").startsWith("cassandra:"))) problems.push("no cassandra service");
    if (!services.some((s) => /(^|\/)minio:/.test(imageOf(s) ?? ""))) problems.push("no minio service");
    if (!natter.some((n) => n.command[0] === "migrate")) problems.push("no natter service runs `migrate`");
    if (starters.length === 0) problems.push("no natter service runs `start`");
    expect(problems).toEqual([]);
  });

  it("every image is pinned to a version", () => {
    const problems: string[] = [];
    for (const svc of services) {
      const image = imageOf(svc, problems);
      if (image === undefined) {
        if (svc.s.build === undefined) problems.push(`${svc.name}: neither image nor build`);
        else problems.push(`${svc.name}: builds without an image name: add image: natter:<version>`);
        continue;
      }
      const p = pinProblem(image);
      if (p) problems.push(`${svc.name}: image ${p}`);
    }
    expect(problems).toEqual([]);
  });

  it("every file compose refers to exists in the repository", () => {
    const problems: string[] = [];
    const exists = (where: string, p: string) => {
      const abs = path.resolve(REPO_ROOT, p);
      if (!abs.startsWith(REPO_ROOT + path.sep) && abs !== REPO_ROOT) problems.push(`${where}: ${p} is outside the repository`);
      else if (!existsSync(abs)) problems.push(`${where}: ${p} does not exist (${rel(abs)})`);
    };
    const topConfigs = asTree(compose.configs);
    for (const [name, c] of Object.entries(topConfigs)) {
      const file = asTree(c).file;
      if (typeof file === "string") exists(`configs.${name}.file`, file);
    }
    for (const svc of services) {
      for (const m of mountsOf(svc)) if (m.bind) exists(`${svc.name}.volumes`, m.source);
      for (const c of asList(svc.s.configs)) {
        const name = typeof c === "string" ? c : String(asTree(c).source);
        if (!(name in topConfigs)) problems.push(`${svc.name}.configs: "${name}" is not defined under the top-level configs`);
      }
      const build = svc.s.build;
      if (build !== undefined) {
        const context = typeof build === "string" ? build : String(asTree(build).context ?? ".");
        exists(`${svc.name}.build.context`, context);
        const dockerfile = isTree(build) && typeof build.dockerfile === "string" ? build.dockerfile : "Dockerfile";
        exists(`${svc.name}.build.dockerfile`, path.join(context, dockerfile));
      }
      for (const f of asList(svc.s.env_file)) exists(`${svc.name}.env_file`, typeof f === "string" ? f : String(asTree(f).path));
      for (const m of mountsOf(svc)) {
        if (!m.bind && m.source !== "" && !(m.source in asTree(compose.volumes))) {
          problems.push(`${svc.name}.volumes: named volume "${m.source}" is not declared under the top-level volumes`);
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it("the NATS services form one JetStream cluster with the durability of nats-server.conf", () => {
    const problems = natsNodes.flatMap((n) => n.problems);
    const root = readNatsConf(ROOT_NATS_CONF);
    const nodes = natsNodes.flatMap(({ svc, file, conf }) => (file && conf ? [{ svc, file, conf }] : []));
    const serverNames = new Set<string>();
    const clusterNames = new Set<string>();
    for (const { svc, file, conf } of nodes) {
      const name = str(conf.server_name);
      if (!name) problems.push(`${file}: no server_name (JetStream clustering needs one per node)`);
      else if (serverNames.has(name)) problems.push(`${file}: server_name "${name}" is used by another node`);
      else serverNames.add(name);

      const cluster = mapOf(conf.cluster);
      if (!conf.cluster) problems.push(`${file}: no cluster { } block`);
      const clusterName = str(cluster.name);
      if (!clusterName) problems.push(`${file}: cluster has no name`);
      else clusterNames.add(clusterName);
      const routes = asList(cluster.routes).map((r) => resolved(String(r), natsNodes.find((n) => n.svc === svc)?.env ?? {}));
      for (const other of nodes) {
        if (other.svc === svc) continue;
        const port = portOf(str(mapOf(other.conf.cluster).listen), 6222);
        if (!routes.some((r) => new RegExp(`^nats(-route)?://([^@/]*@)?${other.svc.name}:${port}/?$`).test(r))) {
          problems.push(`${file}: cluster.routes do not name ${other.svc.name}:${port} (routes: ${JSON.stringify(routes)})`);
        }
      }

      const js = mapOf(conf.jetstream);
      if (!conf.jetstream) problems.push(`${file}: no jetstream { } block`);
      const storeDir = str(js.store_dir);
      if (!storeDir) problems.push(`${file}: jetstream has no store_dir`);
      else if (!mountsOf(svc).some((m) => !m.bind && (storeDir === m.target || storeDir.startsWith(`${m.target}/`)))) {
        problems.push(`${file}: jetstream.store_dir ${storeDir} is not on a named volume of ${svc.name}: its streams would vanish with the container`);
      }

      // Same settings as the single-node config, except what makes each node itself.
      const perNode = new Set(["server_name", "listen", "host", "port", "http", "http_port", "cluster"]);
      for (const [key, v] of Object.entries(root)) {
        if (perNode.has(key) || typeof v !== "string") continue;
        if (conf[key] !== v) problems.push(`${file}: ${key} is ${JSON.stringify(conf[key])}; ${ROOT_NATS_CONF} has ${JSON.stringify(v)}`);
      }
      for (const [key, v] of Object.entries(mapOf(root.jetstream))) {
        if (key === "store_dir") continue;
        if (js[key] !== v) problems.push(`${file}: jetstream.${key} is ${JSON.stringify(js[key])}; ${ROOT_NATS_CONF} has ${JSON.stringify(v)}`);
      }

      const monitorPort = portOf(str(conf.http), Number(str(conf.http_port) ?? NaN));
      const health = asText(asTree(svc.s.healthcheck).test);
      if (!Number.isFinite(monitorPort)) problems.push(`${file}: no monitoring port (http: or http_port:)`);
      else if (!health.includes(`:${monitorPort}/healthz`)) {
        problems.push(`${svc.name}: healthcheck does not ask /healthz on the monitoring port ${monitorPort} (${health || "no healthcheck"})`);
      }
    }
    if (clusterNames.size > 1) problems.push(`the NATS nodes name different clusters: ${[...clusterNames].join(", ")}`);
    if (root.jetstream === undefined || str(mapOf(root.jetstream).sync_interval) === undefined) {
      problems.push(`${ROOT_NATS_CONF}: jetstream.sync_interval is not written out, so the cluster's choice cannot be compared`);
    }
    expect(problems).toEqual([]);
  });

  const natsServer = binPath("nats-server");
  it.skipIf(!existsSync(natsServer))("nats-server -t accepts every NATS config (the cluster's and nats-server.conf)", () => {
    const files = [ROOT_NATS_CONF, ...natsNodes.flatMap((n) => n.file ?? [])];
    const problems: string[] = [];
    for (const file of files) {
      // With the environment compose gives the node (its $NAMES: passwords, route URLs).
      const env = { PATH: process.env.PATH ?? "", ...(natsNodes.find((n) => n.file === file)?.env ?? {}) };
      try {
        execFileSync(natsServer, ["-c", path.join(REPO_ROOT, file), "-t"], { stdio: "pipe", timeout: 10_000, env });
      } catch (err) {
        const e = err as { stderr?: Buffer; stdout?: Buffer; message: string };
        problems.push(`${file}: ${String(e.stderr ?? "").trim() || String(e.stdout ?? "").trim() || e.message}`);
      }
    }
    expect(files.length).toBeGreaterThan(1);
    expect(problems).toEqual([]);
  });

  it("NATS refuses anonymous clients, authenticates routes, keeps monitoring on loopback, and auth.conf is current", () => {
    const problems = natsNodes.flatMap((n) => n.problems);
    const loopback = (http: string | undefined) => /^(127\.0\.0\.1|localhost|\[::1\]):\d+$/.test(http ?? "");
    const root = readNatsConf(ROOT_NATS_CONF);
    if (!loopback(str(root.http))) problems.push(`${ROOT_NATS_CONF}: monitoring (http) is ${str(root.http)}, not on loopback`);
    const first = natter.find((n) => n.config)?.config;
    const expected = first ? deployAuthorization(first.streams) : undefined;
    for (const { svc, file, conf, includes, env } of natsNodes) {
      if (!file || !conf) continue;
      if (!loopback(str(conf.http))) problems.push(`${file}: monitoring (http) is ${str(conf.http)}: bind it to 127.0.0.1 (the healthcheck runs inside the container)`);
      if (conf.no_auth_user !== undefined) problems.push(`${file}: no_auth_user lets clients in without credentials`);
      const auth = includes.find((i) => i.conf?.authorization !== undefined);
      if (!auth) problems.push(`${file}: includes no authorization block: any client that reaches it is let in`);
      else {
        if (expected !== undefined && readRepo(auth.file) !== expected) problems.push(`${auth.file} is not what \`natter nats-auth\` prints for compose's configuration: regenerate it`);
        const mountedAt = path.posix.join("/etc/nats", path.basename(auth.file));
        if (!mountsOf(svc).some((m) => m.bind && rel(path.resolve(REPO_ROOT, m.source)) === auth.file && m.target === mountedAt)) {
          problems.push(`${svc.name}: does not mount ${auth.file} at ${mountedAt}, beside its config`);
        }
        for (const role of NATS_IDENTITY_ROLES) {
          if (!env[passwordVariable(role)]) problems.push(`${svc.name}: ${passwordVariable(role)} (the ${role} password auth.conf reads) is not in its environment`);
        }
      }
      const cluster = mapOf(conf.cluster);
      const routeAuth = mapOf(cluster.authorization);
      const user = str(routeAuth.user);
      const password = resolved(str(routeAuth.password) ?? "", env);
      if (!user || !password || password.startsWith("$")) problems.push(`${file}: cluster.authorization has no user and password: anyone can join as a route`);
      for (const r of asList(cluster.routes).map((x) => resolved(String(x), env))) {
        let u: URL | undefined;
        try {
          u = new URL(r);
        } catch {
          problems.push(`${file}: route ${r} is not a URL (is its variable in ${svc.name}'s environment?)`);
          continue;
        }
        if (u.username !== user || decodeURIComponent(u.password) !== password) problems.push(`${file}: route to ${u.host} does not carry the route user's credentials`);
      }
    }
    expect(problems).toEqual([]);
  });

  it("each natter service holds the NATS identity of its role, and no other", () => {
    const problems: string[] = [];
    const natsEnv = natsNodes[0]?.env ?? {};
    for (const { svc, command, config } of natter) {
      if (!config) continue;
      const creds = config.nats.credentials ?? {};
      const roles = command[0] === "start" ? [...(config.edge.enabled ? (["edge"] as const) : []), ...(config.workers.enabled ? (["workers"] as const) : [])] : [];
      for (const role of ["edge", "workers"] as const) {
        const c = creds[role];
        if (!roles.includes(role)) {
          if (c) problems.push(`${svc.name}: holds the ${role} identity (nats.credentials.${role}) but runs no ${role}`);
          continue;
        }
        if (!c) problems.push(`${svc.name}: runs the ${role} without nats.credentials.${role}: the NATS servers refuse it`);
        else if (c.user !== role || c.password !== natsEnv[passwordVariable(role)]) {
          problems.push(`${svc.name}: nats.credentials.${role} is not the ${role} user with the password the NATS servers get (${passwordVariable(role)})`);
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it("every natter service's environment passes natter's config schema", () => {
    expect(natter.map((n) => n.svc.name)).not.toEqual([]);
    expect(natter.flatMap((n) => n.problems)).toEqual([]);
  });

  it("the natter services agree with each other and point at the compose services", () => {
    const problems: string[] = [];
    const names = new Set(services.map((s) => s.name));
    const natsUrls = natsNodes.map(({ svc, conf }) => `nats://${svc.name}:${portOf(str(conf?.listen), Number(str(conf?.port) ?? 4222))}`);
    // The nodes (`start`) must agree on everything they share; `migrate` uses only the store.
    const first = starters.find((n) => n.config)?.config;
    const firstName = natter.find((n) => n.config === first)?.svc.name ?? "";
    const unloaded = natter.filter((n) => !n.config).map((n) => n.svc.name);
    if (unloaded.length > 0) problems.push(`cannot compare ${unloaded.join(", ")}: their settings do not pass the schema (see the test above)`);
    for (const { svc, command, config } of natter) {
      if (!natterCommands.has(command[0] ?? "")) {
        problems.push(`${svc.name}: command ${JSON.stringify(command)} is not a natter command (${[...natterCommands].join(", ")})`);
      }
      if (!config || !first) continue;
      const node = command[0] === "start";
      const servers = config.nats.servers ?? [];
      if (node) {
        if (servers.length === 0) problems.push(`${svc.name}: nats.servers is unset, so natter would spawn its own nats-server (there is none in the image)`);
        for (const url of natsUrls) if (!servers.includes(url)) problems.push(`${svc.name}: nats.servers lacks ${url}`);
        for (const url of servers) if (!natsUrls.includes(url)) problems.push(`${svc.name}: nats.servers names ${url}, which is no NATS service of compose.yaml`);
        const r = config.streams.replicas;
        if (r > natsServices.length || r < Math.min(3, natsServices.length)) {
          problems.push(`${svc.name}: streams.replicas is ${r} on ${natsServices.length} NATS nodes (want ${Math.min(3, natsServices.length)})`);
        }
      }
      if (config.store.kind !== "cassandra") problems.push(`${svc.name}: store.kind is ${config.store.kind}, production uses cassandra`);
      else {
        for (const cp of config.store.contactPoints) {
          if (!names.has(cp.split(":")[0]!)) problems.push(`${svc.name}: store.contactPoints names ${cp}, which is no compose service`);
        }
      }
      if (node) {
        if (config.blobs.kind !== "s3") problems.push(`${svc.name}: blobs.kind is ${config.blobs.kind}, production uses s3`);
        else if (!names.has(config.blobs.endPoint)) problems.push(`${svc.name}: blobs.endPoint ${config.blobs.endPoint} is no compose service`);
        if (!config.auth.jwtSecret) problems.push(`${svc.name}: auth.jwtSecret is unset, so each container makes its own and tokens from one edge fail on another`);
      }
      // The first node to start creates the streams and keyspace from these: they must match.
      for (const section of node ? (["nats", "streams", "auth", "store", "blobs"] as const) : (["store"] as const)) {
        const a = asTree(config[section]);
        const b = asTree(first[section]);
        for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) {
          // Each kind of process holds its own role's NATS identity (checked below).
          if (section === "nats" && key === "credentials") continue;
          // `migrate` connects to Cassandra as the schema's owner, the nodes as natter (checked below).
          if (!node && section === "store" && (key === "username" || key === "password")) continue;
          if (JSON.stringify(a[key]) === JSON.stringify(b[key])) continue;
          const shown = /secret|pass/i.test(key) ? "(values not shown)" : `${JSON.stringify(a[key])} vs ${JSON.stringify(b[key])}`;
          problems.push(`${svc.name}: ${section}.${key} differs from ${firstName}'s: ${shown}`);
        }
      }
      if (config.store.kind === "cassandra" && !config.store.migrateOnStart && command[0] === "start") {
        const migrate = natter.find((n) => n.command[0] === "migrate");
        const dep = asTree(asTree(svc.s.depends_on)[migrate?.svc.name ?? ""]);
        if (!migrate || dep.condition !== "service_completed_successfully") {
          problems.push(`${svc.name}: store.migrateOnStart is false but it does not depend on a migrate service with condition service_completed_successfully`);
        }
      }
      // It waits for every server it uses, directly or through another service (migrate);
      // `migrate` uses only the store.
      const storeHosts = config.store.kind === "cassandra" ? config.store.contactPoints.map((cp) => ["store.contactPoints", cp.split(":")[0]!] as const) : [];
      const uses =
        command[0] === "migrate"
          ? storeHosts
          : [
              ...servers.map((u) => ["nats.servers", new URL(u).hostname] as const),
              ...storeHosts,
              ...(config.blobs.kind === "s3" ? [["blobs.endPoint", config.blobs.endPoint] as const] : []),
            ];
      const waits = dependenciesOf(svc.name);
      for (const [setting, host] of uses) {
        if (names.has(host) && !waits.has(host)) problems.push(`${svc.name}: uses ${host} (${setting}) but does not depend on it`);
      }
    }

    for (const { svc, config } of starters) {
      if (!config) continue;
      const published = asList(svc.s.ports).map(String);
      if (!config.edge.enabled) {
        if (published.length > 0) problems.push(`${svc.name}: publishes ${published.join(", ")} but edge.enabled is false`);
        if (!config.workers.enabled) problems.push(`${svc.name}: runs \`start\` with both edge and workers disabled`);
        continue;
      }
      const health = asText(asTree(svc.s.healthcheck).test);
      if (!health.includes(`:${config.edge.port}/readyz`)) {
        problems.push(`${svc.name}: healthcheck does not ask /readyz on edge.port ${config.edge.port} (${health || "no healthcheck"})`);
      }
      if (published.length > 0) {
        if (["127.0.0.1", "localhost", "::1"].includes(config.edge.host)) {
          problems.push(`${svc.name}: publishes ${published.join(", ")} but edge.host is ${config.edge.host}, unreachable from outside its container`);
        }
        if (!published.some((p) => p.endsWith(`:${config.edge.port}`) || p === String(config.edge.port))) {
          problems.push(`${svc.name}: publishes ${published.join(", ")}, none of them edge.port ${config.edge.port}`);
        }
      }
    }
    if (unloaded.length === 0) {
      const servingEdges = starters.filter((n) => n.config?.edge.enabled && asList(n.svc.s.ports).length > 0);
      if (servingEdges.length < 2) problems.push(`${servingEdges.length} natter services publish an edge port: production runs at least 2 edges`);
      if (!starters.some((n) => n.config?.workers.enabled)) problems.push("no natter `start` service has workers.enabled: nothing would fan out or persist messages");
    }
    expect(problems).toEqual([]);
  });

  it("long-running services restart and have healthchecks; one-shots do not restart; dependencies exist", () => {
    const problems: string[] = [];
    const names = new Set(services.map((s) => s.name));
    const oneShots = new Set(services.filter((s) => s.s.restart === "no").map((s) => s.name));
    // A workers-only natter serves no HTTP: nothing to ask, so no healthcheck is expected.
    const noHttp = new Set(natter.filter((n) => n.config && !n.config.edge.enabled).map((n) => n.svc.name));
    for (const svc of services) {
      const oneShot = oneShots.has(svc.name);
      if (!oneShot && svc.s.restart === undefined) problems.push(`${svc.name}: no restart policy (write restart: unless-stopped, or "no" for a one-shot)`);
      const health = asTree(svc.s.healthcheck);
      const checked = svc.s.healthcheck !== undefined && health.disable !== true;
      if (!oneShot && !noHttp.has(svc.name) && !checked) problems.push(`${svc.name}: no healthcheck`);
      if (noHttp.has(svc.name) && checked) problems.push(`${svc.name}: has a healthcheck, but with edge.enabled false it serves no HTTP to check`);
      const deps = svc.s.depends_on;
      for (const [dep, spec] of Array.isArray(deps) ? deps.map((d): [string, unknown] => [String(d), {}]) : Object.entries(asTree(deps))) {
        if (!names.has(dep)) {
          problems.push(`${svc.name}: depends on "${dep}", which is not a service`);
          continue;
        }
        const condition = asTree(spec).condition;
        const want = oneShots.has(dep) ? "service_completed_successfully" : noHttp.has(dep) ? "service_started" : "service_healthy";
        if (condition !== want) problems.push(`${svc.name}: depends on ${dep} with condition ${String(condition ?? "(none)")}; want ${want}`);
      }
    }
    expect(problems).toEqual([]);
  });

  it("natter never holds MinIO's root credentials: a setup job gives it its own user, allowed its bucket's objects and nothing else", () => {
    const problems: string[] = [];
    const nodes = starters.flatMap((n) => (n.config?.blobs.kind === "s3" ? [{ ...n, blobs: n.config.blobs }] : []));
    if (minioServers.length !== 1) problems.push(`${minioServers.length} MinIO servers (image minio/minio): want one`);
    const server = minioServers[0];
    const serverEnv = server ? rawEnvironmentOf(server) : {};
    const rootVars = ["MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"].map((k) => {
      const v = requiredVariable(serverEnv[k]);
      if (server && !v) problems.push(`${server.name}: ${k} is not one required variable (\${NAME:?why})`);
      return v;
    });
    const root = server ? environmentOf(server, problems) : {};
    for (const { svc, blobs } of nodes) {
      const held = variablesIn(JSON.stringify(svc.s)).filter((v) => rootVars.includes(v));
      if (held.length > 0) problems.push(`${svc.name}: holds MinIO's root credentials (${[...new Set(held)].join(", ")})`);
      if (blobs.accessKey === root.MINIO_ROOT_USER || blobs.secretKey === root.MINIO_ROOT_PASSWORD) {
        problems.push(`${svc.name}: blobs.accessKey/secretKey are MinIO's root credentials: use natter's own user`);
      }
    }

    if (minioJobs.length !== 1) problems.push(`${minioJobs.length} MinIO setup jobs (image minio/mc, restart "no"): want one that makes natter's bucket and user`);
    const job = minioJobs[0];
    if (!job || !server) {
      expect(problems).toEqual([]);
      return;
    }
    const jobRaw = rawEnvironmentOf(job);
    const jobEnv = environmentOf(job, problems);
    for (const k of ["MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"]) {
      if (jobEnv[k] !== root[k]) problems.push(`${job.name}: ${k} is not the MinIO server's, so it cannot log in as the admin`);
    }
    if (!requiredVariable(jobRaw.MINIO_NATTER_PASSWORD)) problems.push(`${job.name}: MINIO_NATTER_PASSWORD is not one required variable`);
    if (!dependenciesOf(job.name).has(server.name)) problems.push(`${job.name}: does not wait for ${server.name}`);
    const bucket = nodes[0]?.blobs.bucket ?? "";
    for (const { svc, blobs } of nodes) {
      if (blobs.accessKey !== jobEnv.MINIO_NATTER_USER) problems.push(`${svc.name}: blobs.accessKey is not the user ${job.name} makes (MINIO_NATTER_USER)`);
      if (blobs.secretKey !== jobEnv.MINIO_NATTER_PASSWORD) problems.push(`${svc.name}: blobs.secretKey is not the password ${job.name} gives natter's user (MINIO_NATTER_PASSWORD)`);
      if (blobs.bucket !== jobEnv.MINIO_NATTER_BUCKET) problems.push(`${svc.name}: blobs.bucket is not the bucket ${job.name} makes (MINIO_NATTER_BUCKET)`);
      if (!dependenciesOf(svc.name).has(job.name)) problems.push(`${svc.name}: does not wait for ${job.name}: its user or bucket may not exist yet`);
    }

    // It runs a script from the repository, which reads the policy mounted beside it.
    const script = scriptOf(job);
    const policyMount = repoMounts(job).find((m) => m.file.endsWith(".json"));
    if (!script) problems.push(`${job.name}: does not run a script mounted from the repository`);
    if (!policyMount) problems.push(`${job.name}: mounts no policy (.json) from the repository`);
    // test/minio-policy.int.test.ts runs natter against MinIO with this file's policy.
    else if (policyMount.file !== NATTER_POLICY) problems.push(`${job.name}: mounts ${policyMount.file}, not ${NATTER_POLICY} (the policy the MinIO tests check)`);
    if (!script || !policyMount || !existsSync(path.join(REPO_ROOT, policyMount.file))) {
      expect(problems).toEqual([]);
      return;
    }
    const scriptText = readRepo(script);
    if (!scriptText.includes(policyMount.target)) problems.push(`${script}: does not read the policy where ${job.name} mounts it (${policyMount.target})`);
    for (const step of ["mc admin user add", "mc admin policy create", "mc admin policy attach", "mc mb"]) {
      if (!scriptText.includes(step)) problems.push(`${script}: never runs \`${step}\``);
    }

    // The policy: exactly the actions natter uses, on its bucket and its objects.
    const policy = asTree(JSON.parse(readRepo(policyMount.file)));
    const granted = new Set<string>();
    if (policy.Version !== "2012-10-17") problems.push(`${policyMount.file}: Version is ${JSON.stringify(policy.Version)}, not "2012-10-17"`);
    asList(policy.Statement).forEach((raw, i) => {
      const st = asTree(raw);
      const where = `${policyMount.file}: statement ${i + 1}${typeof st.Sid === "string" ? ` (${st.Sid})` : ""}`;
      const extra = Object.keys(st).filter((k) => !["Sid", "Effect", "Action", "Resource"].includes(k));
      if (extra.length > 0) problems.push(`${where}: has ${extra.join(", ")}; natter's policy needs only Effect, Action and Resource`);
      if (st.Effect !== "Allow") problems.push(`${where}: Effect is ${JSON.stringify(st.Effect)}, not "Allow"`);
      for (const action of asList(st.Action).map(String)) {
        for (const resource of asList(st.Resource).map(String)) granted.add(`${action} on ${resource}`);
      }
    });
    const wanted = new Set([
      ...NATTER_S3_ACTIONS.bucket.map((a) => `${a} on arn:aws:s3:::${bucket}`),
      ...NATTER_S3_ACTIONS.objects.map((a) => `${a} on arn:aws:s3:::${bucket}/*`),
    ]);
    for (const g of granted) if (!wanted.has(g)) problems.push(`${policyMount.file}: grants ${g}, which natter does not use`);
    for (const w of wanted) if (!granted.has(w)) problems.push(`${policyMount.file}: does not grant ${w}, which S3BlobStore uses`);
    expect(nodes.length).toBeGreaterThan(0);
    expect(problems).toEqual([]);
  });

  it("Cassandra requires logins and checks permissions; migrate and the nodes connect with their own roles, never the superuser", () => {
    const problems: string[] = [];
    if (cassandraServers.length !== 1) problems.push(`${cassandraServers.length} Cassandra servers: want one`);
    const server = cassandraServers[0];
    if (server) {
      // Settings over the image's cassandra.yaml: `cassandra -f -Dcassandra.settings.<key>=<value>`.
      const props = systemProperties(server);
      const command = asList(server.s.command).map(String);
      if (command[0] !== "cassandra" || command[1] !== "-f") problems.push(`${server.name}: command does not start with \`cassandra -f\`, the image's own`);
      if (props.get("cassandra.config.allow_system_properties") !== "true") {
        problems.push(`${server.name}: no -Dcassandra.config.allow_system_properties=true, so Cassandra ignores the -Dcassandra.settings.* below`);
      }
      const className = (key: string) => (props.get(`cassandra.settings.${key}.class_name`) ?? "").replace(/^org\.apache\.cassandra\.auth\./, "");
      if (className("authenticator") !== "PasswordAuthenticator") problems.push(`${server.name}: authenticator is not PasswordAuthenticator: anyone who reaches port 9042 is let in`);
      if (className("authorizer") !== "CassandraAuthorizer") problems.push(`${server.name}: authorizer is not CassandraAuthorizer: every role may do everything`);
      const health = asText(asTree(server.s.healthcheck).test);
      if (/\bcqlsh\b/.test(health) && !/\s(-u|--username|--credentials)\b/.test(health)) {
        problems.push(`${server.name}: the healthcheck runs cqlsh without a login, which authentication refuses: ask nodetool (JMX, inside the container)`);
      }
    }

    const roles = cassandraJobs.filter((j) => j.phase === "roles");
    const grants = cassandraJobs.filter((j) => j.phase === "grants");
    if (roles.length !== 1 || grants.length !== 1) {
      problems.push(`Cassandra setup jobs (the cassandra image, restart "no"): ${cassandraJobs.map((j) => `${j.svc.name} (${j.phase})`).join(", ") || "none"}; want one running \`setup.sh roles\` and one \`setup.sh grants\``);
      expect(problems).toEqual([]);
      return;
    }
    const rolesJob = roles[0]!.svc;
    const grantsJob = grants[0]!.svc;
    const env = environmentOf(rolesJob, problems);
    const grantsEnv = environmentOf(grantsJob, problems);
    for (const key of ["ADMIN_ROLE", "ADMIN_PASSWORD", "KEYSPACE", "MIGRATE_ROLE", "NATTER_ROLE"]) {
      if (grantsEnv[key] !== env[key]) problems.push(`${grantsJob.name}: ${key} differs from ${rolesJob.name}'s`);
    }
    for (const job of [rolesJob, grantsJob]) {
      const script = scriptOf(job);
      if (!script || !existsSync(path.join(REPO_ROOT, script))) problems.push(`${job.name}: does not run a setup script mounted from the repository`);
      for (const file of [ROLES_CQL, GRANTS_CQL]) {
        if (script && path.posix.dirname(script) !== path.posix.dirname(file)) problems.push(`${job.name}: ${file} is not mounted beside ${script}`);
      }
      if (server && !dependenciesOf(job.name).has(server.name)) problems.push(`${job.name}: does not wait for ${server.name}`);
    }
    const migrate = natter.filter((n) => n.command[0] === "migrate");
    for (const m of migrate) {
      if (!dependenciesOf(m.svc.name).has(rolesJob.name)) problems.push(`${m.svc.name}: does not wait for ${rolesJob.name}: its role may not exist yet`);
      if (!dependenciesOf(grantsJob.name).has(m.svc.name)) problems.push(`${grantsJob.name}: does not wait for ${m.svc.name}: the keyspace may not exist yet`);
    }

    // Who connects as whom.
    for (const { svc, command, config } of natter) {
      if (config?.store.kind !== "cassandra") continue;
      const { username, password, keyspace } = config.store;
      const node = command[0] === "start";
      const [role, secret, variable] = node ? [env.NATTER_ROLE, env.NATTER_PASSWORD, "NATTER"] : [env.MIGRATE_ROLE, env.MIGRATE_PASSWORD, "MIGRATE"];
      if (!username) problems.push(`${svc.name}: store.username is unset: Cassandra refuses it`);
      else if (username === env.ADMIN_ROLE || username === "cassandra") problems.push(`${svc.name}: connects to Cassandra as the superuser ${username}`);
      else if (username !== role || password !== secret) {
        problems.push(`${svc.name}: store.username/password are not the role ${rolesJob.name} makes for it (${variable}_ROLE, ${variable}_PASSWORD)`);
      }
      if (password !== undefined && password === env.ADMIN_PASSWORD) problems.push(`${svc.name}: store.password is the superuser's`);
      if (keyspace !== env.KEYSPACE) problems.push(`${svc.name}: store.keyspace ${keyspace} is not the KEYSPACE the roles are granted on (${env.KEYSPACE})`);
      if (node && config.store.migrateOnStart) problems.push(`${svc.name}: store.migrateOnStart is true, but its role may not change the schema`);
    }
    if (env.NATTER_ROLE === env.MIGRATE_ROLE) problems.push(`${rolesJob.name}: the nodes and migrate share one role`);

    // What each role may do, from the CQL the jobs run.
    const values = { KEYSPACE: env.KEYSPACE ?? "", MIGRATE_ROLE: env.MIGRATE_ROLE ?? "", MIGRATE_PASSWORD: "x", NATTER_ROLE: env.NATTER_ROLE ?? "", NATTER_PASSWORD: "x" };
    const permissions = new Map<string, Set<string>>();
    for (const file of [ROLES_CQL, GRANTS_CQL]) {
      for (const st of cqlStatements(file, values)) {
        const grant = /^GRANT (.+) ON (ALL KEYSPACES|KEYSPACE \w+|TABLE [\w.]+|ALL TABLES IN KEYSPACE \w+|.+?) TO (\w+)$/i.exec(st);
        const roleOpts = /^(?:CREATE|ALTER) ROLE (?:IF NOT EXISTS )?(\w+) WITH (.+)$/i.exec(st);
        if (grant) {
          for (const p of grant[1]!.split(",").map((x) => x.trim().toUpperCase())) {
            const set = permissions.get(grant[3]!) ?? new Set<string>();
            set.add(`${p} ON ${grant[2]!.toUpperCase()}`);
            permissions.set(grant[3]!, set);
          }
        } else if (roleOpts) {
          if (/SUPERUSER\s*=\s*true/i.test(roleOpts[2]!)) problems.push(`${file}: makes ${roleOpts[1]} a superuser`);
        } else if (/^GRANT \w+ TO \w+$/i.test(st)) problems.push(`${file}: ${st}: a role granted to another hands on all its permissions`);
        else problems.push(`${file}: cannot read "${st}" (this test knows CREATE/ALTER ROLE … WITH and GRANT … ON … TO)`);
      }
    }
    const ks = (env.KEYSPACE ?? "").toUpperCase();
    const natterPermissions = [...(permissions.get(env.NATTER_ROLE ?? "") ?? [])].sort();
    const want = [`MODIFY ON KEYSPACE ${ks}`, `SELECT ON KEYSPACE ${ks}`];
    if (JSON.stringify(natterPermissions) !== JSON.stringify(want)) {
      problems.push(`the nodes' role ${env.NATTER_ROLE} is granted ${JSON.stringify(natterPermissions)}; want exactly ${JSON.stringify(want)}`);
    }
    for (const p of permissions.get(env.MIGRATE_ROLE ?? "") ?? []) {
      if (/^ALL\b/.test(p) || (/ON ALL KEYSPACES$/.test(p) && !p.startsWith("CREATE "))) problems.push(`migrate's role ${env.MIGRATE_ROLE} is granted ${p}: more than a schema's owner needs`);
    }
    expect(migrate.length).toBeGreaterThan(0);
    expect(problems).toEqual([]);
  });

  it("every password is a required variable, and each service holds only the secrets its role uses", () => {
    const problems: string[] = [];
    // No default for a secret anywhere: compose would start with a password written in this file.
    const text = readRepo(COMPOSE_FILE);
    for (const m of text.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-+])/g)) {
      if (SECRET_VARIABLE.test(m[1]!)) problems.push(`${COMPOSE_FILE}: \${${m[1]}${m[2]}…} gives a secret a default; write \${${m[1]}:?why it is needed}`);
    }
    for (const svc of services) {
      const env = rawEnvironmentOf(svc);
      const allowed = secretKeysAllowed(svc);
      for (const [key, value] of Object.entries(env)) {
        const secrets = variablesIn(value).filter((v) => SECRET_VARIABLE.test(v));
        if (SECRET_VARIABLE.test(key) && !key.startsWith("NATS_ROUTE_") && !requiredVariable(value)) {
          problems.push(`${svc.name}: ${key} is not one required variable (\${NAME:?why}): a secret is never written in compose.yaml`);
        }
        for (const v of secrets) if (!allowed.has(key)) problems.push(`${svc.name}: holds \${${v}} (in ${key}), a secret its role does not use`);
      }
      // Anywhere else in its definition (command, entrypoint, healthcheck, labels…).
      const rest = { ...svc.s, environment: undefined };
      for (const v of new Set(variablesIn(JSON.stringify(rest)))) {
        if (SECRET_VARIABLE.test(v)) problems.push(`${svc.name}: names \${${v}} outside its environment`);
      }
    }
    expect(problems).toEqual([]);
  });

  it("the Dockerfile is pinned, runs as a non-root user and starts bin/natter.ts", () => {
    const problems: string[] = [];
    const stages = new Set<string>();
    for (const ins of instructions.filter((i) => i.op === "FROM")) {
      const words = ins.args.split(/\s+/).filter((w) => !w.startsWith("--"));
      const image = words[0] ?? "";
      if (!stages.has(image.toLowerCase())) {
        const p = pinProblem(image);
        if (p) problems.push(`Dockerfile:${ins.line}: FROM ${p}`);
      }
      if (words[1]?.toUpperCase() === "AS" && words[2]) stages.add(words[2].toLowerCase());
    }
    const user = finalStage.filter((i) => i.op === "USER").at(-1)?.args.split(":")[0];
    if (!user || user === "root" || user === "0") problems.push(`Dockerfile: the final stage runs as ${user ?? "root (no USER)"}; use USER node`);

    const entrypointIns = finalStage.filter((i) => i.op === "ENTRYPOINT").at(-1);
    const entrypoint = execForm(entrypointIns);
    if (!entrypoint) problems.push(`Dockerfile: ENTRYPOINT is ${entrypointIns ? `not in exec form (${entrypointIns.args})` : "missing"}`);
    else {
      const script = entrypoint.find((a) => a.endsWith(".ts"));
      if (script !== "bin/natter.ts") problems.push(`Dockerfile: ENTRYPOINT ${JSON.stringify(entrypoint)} does not run bin/natter.ts`);
      else if (!existsSync(path.join(REPO_ROOT, script))) problems.push(`Dockerfile: ENTRYPOINT runs ${script}, which does not exist`);
      const importAt = entrypoint.indexOf("--import");
      const loader = importAt >= 0 ? entrypoint[importAt + 1] : undefined;
      const pkg = JSON.parse(readRepo("package.json")) as { dependencies?: Record<string, string> };
      if (loader && /--omit[= ]dev/.test(dockerfileText) && !pkg.dependencies?.[loader]) {
        problems.push(`Dockerfile: ENTRYPOINT imports ${loader}, which npm ci --omit=dev leaves out (not in package.json dependencies)`);
      }
    }
    const cmd = execForm(finalStage.filter((i) => i.op === "CMD").at(-1));
    if (cmd && !natterCommands.has(cmd[0] ?? "")) problems.push(`Dockerfile: CMD ${JSON.stringify(cmd)} is not a natter command`);
    const exposed = finalStage.filter((i) => i.op === "EXPOSE").flatMap((i) => i.args.split(/\s+/).map((p) => p.split("/")[0]));
    for (const { svc, config } of starters) {
      if (config?.edge.enabled && !exposed.includes(String(config.edge.port))) problems.push(`Dockerfile: does not EXPOSE ${config.edge.port}, the edge.port of ${svc.name}`);
    }
    expect(problems).toEqual([]);
  });

  it(".dockerignore keeps out node_modules and keeps in every file bin/natter.ts loads", () => {
    const patterns = readRepo(".dockerignore")
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l !== "" && !l.startsWith("#"));
    const toRegex = (glob: string) =>
      new RegExp(
        `^${glob
          .replace(/^\/+|\/+$/g, "")
          .split(/(\*\*\/?|\*|\?)/)
          .map((part) => (part.startsWith("**") ? "(.*/)?" : part === "*" ? "[^/]*" : part === "?" ? "[^/]" : part.replace(/[.+^${}()|[\]\\]/g, "\\$&")))
          .join("")}(/.*)?$`,
      );
    const rules = patterns.map((p) => ({ keep: p.startsWith("!"), re: toRegex(p.replace(/^!/, "")) }));
    const ignored = (file: string) => rules.reduce((out, r) => (r.re.test(file) ? !r.keep : out), false);

    // Every module reachable from bin/natter.ts by relative imports, plus files read at run time.
    const needed = new Set<string>(["package.json", "package-lock.json", "tsconfig.json", "edge/public/index.html"]);
    const queue = ["bin/natter.ts"];
    for (let file = queue.pop(); file !== undefined; file = queue.pop()) {
      if (needed.has(file)) continue;
      needed.add(file);
      const src = readRepo(file);
      for (const m of src.matchAll(/(?:from|import)\s*\(?\s*"(\.{1,2}\/[^"]+\.ts)"/g)) {
        queue.push(path.posix.normalize(path.posix.join(path.posix.dirname(file), m[1]!)));
      }
    }
    const problems = [...needed].filter((f) => existsSync(path.join(REPO_ROOT, f)) && ignored(f)).map((f) => `.dockerignore leaves ${f} out of the image`);
    if (!ignored("node_modules")) problems.push(".dockerignore does not exclude node_modules (the host's would replace the image's Linux build)");
    expect(needed.size).toBeGreaterThan(10);
    expect(problems).toEqual([]);
  });
});
