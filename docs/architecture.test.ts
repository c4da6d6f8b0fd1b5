// The import rule of docs/architecture.md, checked on every source file: layers import only
// downwards, other folders only through their index.ts, the client SDK nothing of the server.
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "../config/index.ts";

const doc = readFileSync(path.join(REPO_ROOT, "docs", "architecture.md"), "utf8");
const block = /```layers\n([\s\S]*?)```/.exec(doc)?.[1];
if (!block) throw new Error("docs/architecture.md has no ```layers block");
/** Layer of each folder: 0 is the top. */
const LAYER = new Map<string, number>();
block
  .trim()
  .split("\n")
  .forEach((line, i) => {
    for (const folder of line.trim().split(/\s+/)) LAYER.set(folder, i);
  });

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    if (name === "node_modules" || name === "dist" || name.startsWith(".")) continue;
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (name.endsWith(".ts") && !name.endsWith(".d.ts")) out.push(p);
  }
  return out;
}

const IMPORT = /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+"([^"]+)"|import\("([^"]+)"\)/g;

function importsOf(file: string): string[] {
  const text = readFileSync(file, "utf8");
  return [...text.matchAll(IMPORT)].map((m) => m[1] ?? m[2]!).filter((s) => s.startsWith("."));
}

/** The top folder of a repository path ("edge/routes/x.ts" → "edge"). */
const topOf = (p: string) => path.relative(REPO_ROOT, p).split(path.sep)[0]!;

describe("the import rule (docs/architecture.md)", () => {
  it("names every top folder with source code", () => {
    const folders = readdirSync(REPO_ROOT).filter((d) => statSync(path.join(REPO_ROOT, d)).isDirectory() && !d.startsWith(".") && d !== "node_modules");
    const tooling = new Set(["client", "test", "bench", "scripts", "docs", "deploy", "test-output"]);
    const product = folders.filter((d) => !tooling.has(d) && sources(path.join(REPO_ROOT, d)).length > 0);
    expect(product.filter((d) => !LAYER.has(d))).toEqual([]);
  });

  const product = [...LAYER.keys()].flatMap((folder) => sources(path.join(REPO_ROOT, folder)).filter((f) => !f.endsWith(".test.ts")));

  it("layers import only the layers below them, other folders only through their index.ts", () => {
    const problems: string[] = [];
    for (const file of product) {
      const from = topOf(file);
      for (const spec of importsOf(file)) {
        const target = path.resolve(path.dirname(file), spec);
        const to = topOf(target);
        if (to === from) continue;
        const where = `${path.relative(REPO_ROOT, file)} imports ${spec}`;
        if (!LAYER.has(to)) {
          problems.push(`${where}: ${to}/ is not a layer`);
          continue;
        }
        if (LAYER.get(to)! <= LAYER.get(from)!) problems.push(`${where}: ${to}/ is not below ${from}/`);
        if (path.relative(path.join(REPO_ROOT, to), target) !== "index.ts") problems.push(`${where}: only ${to}/index.ts may be imported from another folder`);
      }
    }
    expect(problems).toEqual([]);
  });

  it("keeps the client SDK free of server code", () => {
    const problems = sources(path.join(REPO_ROOT, "client", "src")).flatMap((file) =>
      importsOf(file)
        .filter((spec) => topOf(path.resolve(path.dirname(file), spec)) !== "client")
        .map((spec) => `${path.relative(REPO_ROOT, file)} imports ${spec}`),
    );
    expect(problems).toEqual([]);
  });
});
