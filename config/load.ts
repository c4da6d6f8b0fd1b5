// Loads the configuration once: optional file (JSON or YAML), then NATTER_* environment
// variables on top, then the schema, then the rules across settings (development tokens on a
// public address). Every problem is reported at once. A secret setting (marked in the schema)
// may instead come from a file: NATTER_AUTH__JWT_SECRET_FILE=/run/secrets/jwt.
import { readFileSync } from "node:fs";
import path from "node:path";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { NatterError } from "../core/index.ts";
import { ConfigSchema, type Config } from "./schema.ts";
import { isLoopbackHost } from "./secrets.ts";

/** NATTER_* variables that are not settings. */
const NOT_SETTINGS = new Set(["NATTER_CONFIG", "NATTER_CACHE_DIR"]);
const NOT_SETTINGS_PREFIXES = ["NATTER_TEST_"];

type Tree = { [key: string]: unknown };

/** Every key that appears in the schema, by its normalized spelling (no '_', lower case). */
function schemaKeys(): Map<string, string> {
  const keys = new Map<string, string>();
  const seen = new Set<unknown>();
  const visit = (schema: unknown): void => {
    if (schema === null || typeof schema !== "object" || seen.has(schema)) return;
    seen.add(schema);
    const s = schema as { shape?: Record<string, unknown>; options?: unknown[]; _zod?: { def?: Record<string, unknown> } };
    if (s.shape) {
      for (const [k, v] of Object.entries(s.shape)) {
        keys.set(k.toLowerCase(), k);
        visit(v);
      }
    }
    for (const o of s.options ?? []) visit(o);
    const def = s._zod?.def ?? {};
    for (const field of ["innerType", "in", "out", "schema", "valueType"]) visit(def[field]);
  };
  visit(ConfigSchema);
  return keys;
}

const KEYS = schemaKeys();

/** Dotted paths of the settings the schema marks secret (in every backend's alternative). */
function secretPaths(): Set<string> {
  type Node = { secret?: boolean; properties?: Record<string, Node>; anyOf?: Node[]; oneOf?: Node[] };
  const out = new Set<string>();
  const walk = (n: Node, at: string[]): void => {
    if (n.secret === true) out.add(at.join("."));
    for (const alt of [...(n.anyOf ?? []), ...(n.oneOf ?? [])]) walk(alt, at);
    for (const [k, v] of Object.entries(n.properties ?? {})) walk(v, [...at, k]);
  };
  walk(z.toJSONSchema(ConfigSchema, { io: "input", unrepresentable: "any" }) as Node, []);
  return out;
}

/** The secret settings, e.g. `auth.jwtSecret`: each may be given as `<its variable>_FILE`. */
const SECRET_SETTINGS = secretPaths();

function keyFromEnv(part: string): string {
  const normalized = part.replaceAll("_", "").toLowerCase();
  return KEYS.get(normalized) ?? part.toLowerCase().replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

interface EnvSettings {
  tree: Tree;
  /** Dotted setting path → the variable it came from. */
  sources: Map<string, string>;
  /** Problems found while reading them (secret files that cannot be read). */
  problems: string[];
}

function settingPath(name: string): string[] {
  return name.slice("NATTER_".length).split("__").filter((p) => p !== "").map(keyFromEnv);
}

/** A secret file's content without the line ending editors and `echo` add. */
function readSecretFile(variable: string, file: string, problems: string[]): string | undefined {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    problems.push(`${variable}: cannot read the secret file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    return undefined;
  }
  const value = text.replace(/\r?\n$/, "");
  if (value === "") {
    problems.push(`${variable}: the secret file ${file} is empty`);
    return undefined;
  }
  return value;
}

/**
 * NATTER_EDGE__PORT=8080 → { edge: { port: "8080" } }. Sections are separated by "__". A secret
 * setting's variable with `_FILE` appended names a file holding the value.
 */
function envSettings(env: NodeJS.ProcessEnv): EnvSettings {
  const tree: Tree = {};
  const sources = new Map<string, string>();
  const problems: string[] = [];
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith("NATTER_") || raw === undefined) continue;
    if (NOT_SETTINGS.has(name) || NOT_SETTINGS_PREFIXES.some((p) => name.startsWith(p))) continue;
    let parts = settingPath(name);
    let value: string | undefined = raw;
    let source = name;
    if (name.endsWith("_FILE") && SECRET_SETTINGS.has(settingPath(name.slice(0, -"_FILE".length)).join("."))) {
      const direct = name.slice(0, -"_FILE".length);
      if (env[direct] !== undefined) {
        problems.push(`${name}: ${direct} is set too; give the secret one way`);
        continue;
      }
      parts = settingPath(direct);
      value = readSecretFile(name, raw, problems);
      source = `${name} (file ${raw})`;
      if (value === undefined) continue;
    }
    if (parts.length === 0) continue;
    let node = tree;
    for (const part of parts.slice(0, -1)) {
      const next = node[part];
      if (next === undefined || typeof next !== "object" || next === null) node[part] = {};
      node = node[part] as Tree;
    }
    node[parts[parts.length - 1]!] = value;
    sources.set(parts.join("."), source);
  }
  return { tree, sources, problems };
}

function isTree(v: unknown): v is Tree {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function merge(base: Tree, over: Tree): Tree {
  const out: Tree = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = isTree(b) && isTree(v) ? merge(b, v) : v;
  }
  return out;
}

function readConfigFile(file: string): Tree {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new NatterError("CONFIG_INVALID", `cannot read config file ${file}: ${(err as Error).message}`, { cause: err });
  }
  let parsed: unknown;
  try {
    parsed = file.endsWith(".json") ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new NatterError("CONFIG_INVALID", `config file ${file} is not valid ${file.endsWith(".json") ? "JSON" : "YAML"}: ${(err as Error).message}`, { cause: err });
  }
  if (parsed === null || parsed === undefined) return {};
  if (!isTree(parsed)) throw new NatterError("CONFIG_INVALID", `config file ${file} must hold an object at its top`);
  return parsed;
}

function describeIssue(issue: z.core.$ZodIssue, env: EnvSettings): string[] {
  const at = issue.path.map(String).join(".");
  if (issue.code === "unrecognized_keys") {
    return issue.keys.map((k) => {
      const p = at === "" ? k : `${at}.${k}`;
      const fromEnv = [...env.sources.entries()].find(([sp]) => sp === p || sp.startsWith(`${p}.`));
      return fromEnv ? `${fromEnv[1]}: unknown setting (no "${p}" in natter's config)` : `${p}: unknown setting`;
    });
  }
  const varName = env.sources.get(at);
  return [`${varName ? `${varName} (${at})` : at || "(root)"}: ${issue.message}`];
}

export interface LoadOptions {
  /** Config file (JSON or YAML); defaults to $NATTER_CONFIG when set. */
  file?: string | undefined;
  env?: NodeJS.ProcessEnv;
  /** Settings applied over file and environment (used by tests and subcommands). */
  overrides?: Tree;
}

/**
 * Rules across settings that keep a node safe to expose and able to start, checked once the
 * schema passed: development tokens only on a loopback address; an edge without workers on a
 * NATS that workers elsewhere share.
 */
function deploymentProblems(cfg: Config, env: EnvSettings): string[] {
  const problems: string[] = [];
  if (cfg.auth.devTokens && cfg.edge.enabled && !isLoopbackHost(cfg.edge.host)) {
    const from = env.sources.get("auth.devTokens");
    problems.push(
      `auth.devTokens${from ? ` (${from})` : " (--dev)"} is on while edge.host is ${JSON.stringify(cfg.edge.host)}: POST /dev/token gives a token for any user ` +
        "to whoever reaches the edge, so natter serves it on a loopback address only (127.0.0.1, ::1, localhost). Turn devTokens off, or listen on loopback.",
    );
  }
  if (cfg.edge.enabled && !cfg.workers.enabled && cfg.nats.servers === undefined) {
    problems.push(
      "an edge without workers (workers.enabled false, or --role edge) needs nats.servers: the workers that create the streams and copy messages run in other processes on the same NATS",
    );
  }
  return problems;
}

function invalid(lines: string[]): NatterError {
  return new NatterError("CONFIG_INVALID", `invalid configuration (${lines.length} problem${lines.length === 1 ? "" : "s"}):\n  - ${lines.join("\n  - ")}`);
}

/** Parses the configuration or throws CONFIG_INVALID listing every problem, one per line. */
export function loadConfig(opts: LoadOptions = {}): Config {
  const env = opts.env ?? process.env;
  const file = opts.file ?? env.NATTER_CONFIG;
  const fromFile = file ? readConfigFile(path.resolve(file)) : {};
  const fromEnv = envSettings(env);
  const input = merge(merge(fromFile, fromEnv.tree), opts.overrides ?? {});
  const result = ConfigSchema.safeParse(input);
  if (!result.success) throw invalid([...fromEnv.problems, ...result.error.issues.flatMap((i) => describeIssue(i, fromEnv))]);
  const lines = [...fromEnv.problems, ...deploymentProblems(result.data, fromEnv)];
  if (lines.length > 0) throw invalid(lines);
  return result.data;
}
