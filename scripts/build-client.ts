// Builds the client SDK (client/) two ways:
// - the package, client/dist (ESM + .d.ts, emitted by tsc from client/tsconfig.json; ignored by
//   git): what `import … from "@natter/client"` loads in Node;
// - the web page's bundle, edge/public/natter-client.js (one minified ESM file, by esbuild). It
//   is committed, so every natter serves the page without a build step (`natter start`, the
//   Docker image); `--check` fails when it is not what the sources give.
//
//   tsx scripts/build-client.ts            build both (npm start, npm run build:client)
//   tsx scripts/build-client.ts --check    build the package; check the committed bundle (npm test)
import { spawn } from "node:child_process";
import fs from "node:fs/promises";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { gzipSync } from "node:zlib";
import { build } from "esbuild";
import { REPO_ROOT } from "../config/tools.ts";

/** A build step failed; the message says which and why. */
export class BuildClientError extends Error {
  override name = "BuildClientError";
}

export const CLIENT_DIR = path.join(REPO_ROOT, "client");
export const PAGE_BUNDLE = path.join(REPO_ROOT, "edge", "public", "natter-client.js");
const ENTRY = path.join(CLIENT_DIR, "src", "index.ts");

/** The web page's bundle as the sources give it (not written). */
export async function buildPageBundle(): Promise<string> {
  const { version } = JSON.parse(await fs.readFile(path.join(CLIENT_DIR, "package.json"), "utf8")) as { version: string };
  const result = await build({
    entryPoints: [ENTRY],
    absWorkingDir: REPO_ROOT,
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    minify: true,
    legalComments: "none",
    write: false,
    logLevel: "silent",
    banner: { js: `// @natter/client ${version}: generated from client/src by scripts/build-client.ts; do not edit.` },
  });
  const out = result.outputFiles[0];
  if (out === undefined) throw new BuildClientError("esbuild produced no output");
  return out.text;
}

/** Minified and gzipped sizes of the SDK, in bytes. */
export async function sdkSize(): Promise<{ minified: number; gzipped: number }> {
  const text = await buildPageBundle();
  const bytes = Buffer.from(text, "utf8");
  return { minified: bytes.length, gzipped: gzipSync(bytes, { level: 9 }).length };
}

/** Emits client/dist with tsc (from scratch, so no stale file survives). */
export async function buildPackage(): Promise<void> {
  const dist = path.join(CLIENT_DIR, "dist");
  await fs.rm(dist, { recursive: true, force: true });
  const tsc = path.join(REPO_ROOT, "node_modules", "typescript", "bin", "tsc");
  const output = await new Promise<{ code: number | null; text: string }>((resolve, reject) => {
    const child = spawn(process.execPath, [tsc, "-p", path.join(CLIENT_DIR, "tsconfig.json")], { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let text = "";
    child.stdout.on("data", (d: Buffer) => (text += d.toString()));
    child.stderr.on("data", (d: Buffer) => (text += d.toString()));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, text }));
  });
  if (output.code !== 0) throw new BuildClientError(`tsc -p client/tsconfig.json failed:\n${output.text}`);
}

/** True when the committed page bundle is what the sources give. */
export async function pageBundleIsCurrent(): Promise<boolean> {
  const committed = await fs.readFile(PAGE_BUNDLE, "utf8").catch(() => undefined);
  return committed === (await buildPageBundle());
}

export async function main(args: readonly string[]): Promise<number> {
  const check = args.includes("--check");
  try {
    const started = performance.now();
    await buildPackage();
    const rel = path.relative(REPO_ROOT, PAGE_BUNDLE);
    if (check) {
      if (!(await pageBundleIsCurrent())) {
        console.error(`build-client: ${rel} is not what client/src gives: run \`npm run build:client\` and commit it`);
        return 1;
      }
    } else {
      await fs.writeFile(PAGE_BUNDLE, await buildPageBundle());
    }
    const size = await sdkSize();
    console.log(
      `build-client: client/dist and ${rel} (${check ? "checked" : "written"}; ${size.minified} bytes minified, ${size.gzipped} gzipped) in ${Math.round(performance.now() - started)} ms`,
    );
    return 0;
  } catch (err) {
    console.error(`build-client: ${(err as Error).message}`);
    return 1;
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  process.exitCode = await main(process.argv.slice(2));
}
