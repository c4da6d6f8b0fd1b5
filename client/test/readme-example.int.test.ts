// The README's Node example, exactly as written there, run with plain `node` against a real
// natter (dev tokens on), importing `@natter/client` the way a user does (client/dist, which
// `npm run build:client` builds; npm start and npm test build it first). It cannot rot.
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "../../config/tools.ts";
import { useNats } from "../../test/harness/nats.ts";
import { TEST_SECRET, testConfig, useNode } from "../../test/support/node.ts";

const MARKER = "<!-- readme-example:";

/** The first ```js block after the marker comment in README.md. */
function readmeExample(readme: string): string {
  const at = readme.indexOf(MARKER);
  if (at < 0) throw new Error(`README.md has no ${MARKER} … --> block`);
  const m = /```js\n([\s\S]*?)```/.exec(readme.slice(at));
  if (m?.[1] === undefined) throw new Error("README.md: no ```js block after the readme-example marker");
  return m[1];
}

const nats = useNats();
const node = useNode(() => testConfig(nats.url, { auth: { jwtSecret: TEST_SECRET, devTokens: true } }));

beforeAll(() => {
  const entry = path.join(REPO_ROOT, "client", "dist", "index.js");
  if (!existsSync(entry)) throw new Error(`${path.relative(REPO_ROOT, entry)} is missing: run \`npm run build:client\``);
});

describe("the README's Node example", () => {
  it("connects, joins, sends and receives against a real natter in at most 20 lines", async () => {
    const code = readmeExample(readFileSync(path.join(REPO_ROOT, "README.md"), "utf8"));
    expect(code.trimEnd().split("\n").length).toBeLessThanOrEqual(20);
    // Inside the repository, so `@natter/client` and `ws` resolve from its node_modules.
    const dir = path.join(REPO_ROOT, "test-output");
    mkdirSync(dir, { recursive: true });
    const file = path.join(dir, "readme-example.mjs");
    writeFileSync(file, code);
    const { stdout } = await promisify(execFile)(process.execPath, [file], {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH, NATTER_URL: node.url },
      timeout: 30_000,
    });
    expect(stdout).toMatch(/^bob got message \d+ from alice: hello from Node \(acked as \d+\)\n$/);
  });
});
