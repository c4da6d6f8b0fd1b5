// Images on the web chat page in headless Chromium: alice picks two images with the page's file
// input and sends them with a line of text; bob's page lays out both thumbnails at their
// dimensions, loads them through the SDK with his token, and a click opens the full image.
import path from "node:path";
import type { BrowserContext, Page } from "playwright-core";
import { describe, expect, it, onTestFinished } from "vitest";
import { useNats } from "./harness/nats.ts";
import { TEST_OUTPUT, useChromium } from "./support/browser.ts";
import { makeImage } from "./support/images.ts";
import { TEST_SECRET, testConfig, useNode } from "./support/node.ts";

const nats = useNats();
const node = useNode(() => testConfig(nats.url, { auth: { jwtSecret: TEST_SECRET, devTokens: true } }));

const chromium = useChromium();
const pageErrors: string[] = [];

async function signIn(user: string): Promise<{ ctx: BrowserContext; page: Page }> {
  const ctx = await chromium.browser().newContext({ viewport: { width: 900, height: 600 } });
  onTestFinished(() => ctx.close());
  const page = await ctx.newPage();
  page.on("pageerror", (err) => pageErrors.push(`${user}: ${err.message}`));
  await page.goto(`${node.url}/`);
  await page.fill("#user", user);
  await page.click("#login button");
  await page.locator('#status[data-state="open"]').waitFor({ timeout: 15_000 });
  return { ctx, page };
}

describe("images on the web chat page", () => {
  it("sends two images picked with the file input; the other side shows the thumbnails and opens the full image", async () => {
    const { page: alice } = await signIn("alice");
    const { ctx: bobCtx, page: bob } = await signIn("bob");
    await alice.fill("#peer", "bob");
    await alice.click("#open-dm button");
    await expect.poll(() => alice.textContent("#title")).toBe("bob");

    await alice.setInputFiles("#files", [
      { name: "wide.png", mimeType: "image/png", buffer: await makeImage("image/png", { width: 800, height: 400 }) },
      { name: "tall.jpg", mimeType: "image/jpeg", buffer: await makeImage("image/jpeg", { width: 300, height: 600, gps: true }) },
    ]);
    await alice.fill("#text", "two pictures");
    await alice.press("#text", "Enter");
    await alice.locator("#log .msg[data-id]", { hasText: "two pictures" }).waitFor({ timeout: 15_000 });

    await bob.locator("#convs li", { hasText: "alice" }).click();
    const thumbs = bob.locator("#log .msg[data-id] .imgs img");
    await expect.poll(() => thumbs.count(), { timeout: 15_000 }).toBe(2);
    // Laid out from the message's dimensions, then loaded (decoded) from the edge.
    expect(await thumbs.evaluateAll((imgs) => imgs.map((i) => [i.getAttribute("width"), i.getAttribute("height")]))).toEqual([
      ["320", "160"],
      ["160", "320"],
    ]);
    await expect
      .poll(() => thumbs.evaluateAll((imgs) => imgs.map((i) => (i as HTMLImageElement).complete && (i as HTMLImageElement).naturalWidth)), { timeout: 15_000 })
      .toEqual([320, 160]);
    const opened = bobCtx.waitForEvent("page");
    await thumbs.first().click();
    const full = await opened;
    await full.waitForLoadState();
    expect(full.url()).toMatch(/^blob:/);
    expect(await full.evaluate(() => [document.images[0]?.naturalWidth, document.images[0]?.naturalHeight])).toEqual([800, 400]);
    await bob.screenshot({ path: path.join(TEST_OUTPUT, "web-page-images-bob.png") });
    expect(pageErrors).toEqual([]);
  });
});
