// Headless Chromium for the web page tests: Debian's binary driven by playwright-core, one browser
// per test file, launched before its tests and closed after them. Screenshots go to TEST_OUTPUT.
import { existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import { chromium, type Browser } from "playwright-core";
import { afterAll, beforeAll } from "vitest";
import { CHROMIUM, REPO_ROOT } from "../../config/tools.ts";

export const TEST_OUTPUT = path.join(REPO_ROOT, "test-output");

/** Debian's Chromium as root on a machine with no outside network; playwright adds --headless and a fresh --user-data-dir itself. */
const CHROMIUM_FLAGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Registers the file's browser; `browser()` is usable inside tests. */
export function useChromium(): { browser(): Browser } {
  let browser: Browser | undefined;
  beforeAll(async () => {
    if (!existsSync(CHROMIUM.binary)) {
      throw new Error(`Chromium is not installed (${CHROMIUM.binary} is missing): run \`npx tsx scripts/obtain.ts chromium\` (apt-get install -y chromium, as root)`);
    }
    browser = await chromium.launch({ executablePath: CHROMIUM.binary, headless: true, args: CHROMIUM_FLAGS });
    mkdirSync(TEST_OUTPUT, { recursive: true });
  });
  afterAll(async () => {
    await browser?.close();
  });
  return {
    browser: () => {
      if (!browser) throw new Error("the browser is not launched yet (use it inside a test)");
      return browser;
    },
  };
}
