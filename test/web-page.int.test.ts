// The web chat page in real headless Chromium (Debian's, driven by playwright-core): two browser
// contexts are two users. They chat both ways; one goes offline (a TCP proxy between its browser
// and the edge cuts every connection), writes while offline, comes back without reloading, and
// sees what it missed; then it reloads, opens a group and scrolls its history backwards. Unread
// counts come from the server, typing shows and expires, and read receipts reach the sender.
// Screenshots go to test-output/. The page speaks to natter only through the client SDK, which
// finds its edge with GET /discovery on the page's own origin.
import path from "node:path";
import type { BrowserContext, Page } from "playwright-core";
import { describe, expect, it, onTestFinished } from "vitest";
import { WebSocket } from "ws";
import { MemoryCursorStore, NatterClient } from "../client/src/index.js";
import { useNats } from "./harness/nats.ts";
import { TEST_OUTPUT, useChromium } from "./support/browser.ts";
import { TEST_SECRET, testConfig, useNode } from "./support/node.ts";
import { startTcpProxy } from "./support/tcp-proxy.ts";

const nats = useNats();
const node = useNode(() => testConfig(nats.url, { auth: { jwtSecret: TEST_SECRET, devTokens: true } }));

const chromium = useChromium();
const pageErrors: string[] = [];

async function context(): Promise<BrowserContext> {
  const ctx = await chromium.browser().newContext({ viewport: { width: 900, height: 560 } });
  onTestFinished(() => ctx.close());
  return ctx;
}

/**
 * Puts a browser behind a TCP proxy to the edge, as its own network: the page is loaded through
 * the proxy, and the edge's URL in discovery answers is rewritten to the proxy's (as an address
 * translation would), so that the page's socket goes through it too. Counts the answers.
 */
async function behindProxy(ctx: BrowserContext, proxyUrl: string): Promise<{ answers: number }> {
  const seen = { answers: 0 };
  await ctx.route(
    (url) => url.pathname === "/discovery",
    async (route) => {
      const res = await route.fetch().catch(() => undefined);
      if (res === undefined) return route.abort("connectionrefused"); // the proxy is cut
      const body = (await res.json()) as { edges?: { url: string }[] };
      for (const e of body.edges ?? []) if (e.url === node.url) e.url = proxyUrl;
      seen.answers++;
      await route.fulfill({ response: res, json: body });
    },
  );
  return seen;
}

async function signIn(ctx: BrowserContext, baseUrl: string, user: string): Promise<Page> {
  const page = await ctx.newPage();
  page.on("pageerror", (err) => pageErrors.push(`${user}: ${err.message}`));
  await page.goto(`${baseUrl}/`);
  await page.fill("#user", user);
  await page.click("#login button");
  await page.locator('#status[data-state="open"]').waitFor({ timeout: 15_000 });
  return page;
}

/** The texts of the open conversation's stored messages, in order. */
function texts(page: Page): Promise<string[]> {
  return page.$$eval("#log .msg[data-id] .text", (els) => els.map((e) => e.textContent ?? ""));
}

async function send(page: Page, text: string): Promise<void> {
  await page.fill("#text", text);
  await page.press("#text", "Enter");
}

describe("the web chat page in Chromium", () => {
  it("two users chat both ways; one goes offline, writes, comes back and sees what it missed", async () => {
    const bobsNetwork = await startTcpProxy(node.url);
    onTestFinished(() => bobsNetwork.close());
    const alice = await signIn(await context(), node.url, "alice");
    const bobsBrowser = await context();
    const bobsDiscovery = await behindProxy(bobsBrowser, bobsNetwork.url);
    const bob = await signIn(bobsBrowser, bobsNetwork.url, "bob");
    expect(bobsDiscovery.answers).toBe(1);
    // The page says which edge it is on (the id discovery named).
    const [edge] = ((await (await fetch(`${node.url}/discovery`)).json()) as { edges: { id: string }[] }).edges;
    expect(await alice.textContent("#status")).toBe(`online · ${edge!.id}`);

    await alice.fill("#peer", "bob");
    await alice.click("#open-dm button");
    await expect.poll(() => alice.textContent("#title")).toBe("bob");
    await send(alice, "hi bob");
    await expect.poll(() => texts(alice)).toEqual(["hi bob"]);

    // Bob learns of the conversation from natter and opens it.
    await bob.locator("#convs li", { hasText: "alice" }).click();
    await expect.poll(() => texts(bob), { timeout: 10_000 }).toEqual(["hi bob"]);
    await send(bob, "hi alice");
    await expect.poll(() => texts(alice), { timeout: 10_000 }).toEqual(["hi bob", "hi alice"]);
    // Bob's own message shows as stored once its copy comes back to his device.
    await expect.poll(() => texts(bob), { timeout: 10_000 }).toEqual(["hi bob", "hi alice"]);

    // Bob goes offline. Alice writes; so does bob, whose send waits for the network.
    bobsNetwork.cut();
    await bob.locator('#status[data-state="reconnecting"]').waitFor({ timeout: 10_000 });
    const missed = ["are you there?", "I'll wait", "still here"];
    for (const t of missed) await send(alice, t);
    await expect.poll(() => texts(alice)).toEqual(["hi bob", "hi alice", ...missed]);
    await send(bob, "written offline");
    await bob.locator("#log .msg.pending", { hasText: "written offline" }).waitFor();
    await new Promise((r) => setTimeout(r, 500));
    expect(await texts(bob)).toEqual(["hi bob", "hi alice"]);

    // Back online: no reload; bob catches up in order and his queued message goes out once.
    bobsNetwork.restore();
    // The SDK's next attempt may be one jittered backoff away (250 ms doubling up to 30 s).
    await bob.locator('#status[data-state="open"]').waitFor({ timeout: 35_000 });
    const all = ["hi bob", "hi alice", ...missed, "written offline"];
    await expect.poll(() => texts(bob), { timeout: 15_000 }).toEqual(all);
    await expect.poll(() => texts(alice), { timeout: 15_000 }).toEqual(all);
    expect(await bob.locator("#log .msg.pending").count()).toBe(0);
    await alice.screenshot({ path: path.join(TEST_OUTPUT, "web-page-alice.png") });
    await bob.screenshot({ path: path.join(TEST_OUTPUT, "web-page-bob.png") });
    expect(pageErrors).toEqual([]);
  }, 120_000);

  it("unread counts come from the server; typing shows and expires; a read receipt reaches the sender", async () => {
    const erin = await signIn(await context(), node.url, "erin");
    const frank = await signIn(await context(), node.url, "frank");
    // Frank is looking at another conversation when erin writes.
    await frank.fill("#peer", "gina");
    await frank.click("#open-dm button");
    await expect.poll(() => frank.textContent("#title")).toBe("gina");
    await erin.fill("#peer", "frank");
    await erin.click("#open-dm button");
    await expect.poll(() => erin.textContent("#title")).toBe("frank");
    await send(erin, "did you read this?");
    await expect.poll(() => texts(erin)).toEqual(["did you read this?"]);

    // Frank's list shows the server's unread count; his page marked the message delivered.
    const fromErin = frank.locator("#convs li", { hasText: "erin" });
    await expect.poll(() => fromErin.locator(".unread").textContent(), { timeout: 10_000 }).toBe("1");
    const receipt = erin.locator("#log .msg.me[data-id] .receipt");
    await expect.poll(() => receipt.textContent(), { timeout: 10_000 }).toBe("delivered");

    // Frank opens it: the read receipt reaches erin, and his unread count is gone.
    await fromErin.click();
    await expect.poll(() => texts(frank), { timeout: 10_000 }).toEqual(["did you read this?"]);
    await expect.poll(() => receipt.textContent(), { timeout: 10_000 }).toBe("seen");
    await expect.poll(() => fromErin.locator(".unread").count(), { timeout: 10_000 }).toBe(0);

    // Frank types: erin sees it, and it goes away by itself (ttlMs) when he stops.
    await frank.locator("#text").pressSequentially("typing a reply");
    await expect.poll(() => erin.textContent("#typing"), { timeout: 10_000 }).toBe("frank is typing…");
    await erin.screenshot({ path: path.join(TEST_OUTPUT, "web-page-receipts.png") });
    await expect.poll(() => erin.textContent("#typing"), { timeout: 15_000 }).toBe("");
    expect(pageErrors).toEqual([]);
  });

  it("a group opened from the page: a member reloads, finds it, and scrolls its history backwards", async () => {
    const carolCtx = await context();
    const carol = await signIn(carolCtx, node.url, "carol");
    const dave = await signIn(await context(), node.url, "dave");
    await carol.fill("#group-name", "book club");
    await carol.fill("#group-members", "dave, erin");
    await carol.click("#new-group button");
    await expect.poll(() => carol.textContent("#title")).toBe("book club");
    await dave.locator("#convs li", { hasText: "book club" }).waitFor({ timeout: 10_000 });

    // 70 messages from carol's phone (the SDK in Node): more than two pages of history.
    const phone = new NatterClient({ url: node.url, user: "carol", device: "phone", token: () => node.token("carol"), WebSocket, cursorStore: new MemoryCursorStore(), sendWindow: 8 });
    onTestFinished(() => phone.close());
    const groupId = await carol.$eval("#convs li.active", (li) => (li as HTMLElement).dataset.conv ?? "");
    const lines = Array.from({ length: 70 }, (_, i) => `line ${String(i).padStart(2, "0")}`);
    await Promise.all(lines.map((t) => phone.send(groupId, t)));
    await expect.poll(() => texts(carol), { timeout: 15_000 }).toEqual(lines);

    // Carol reloads: the page remembers her conversations; the newest page of history shows.
    await carol.reload();
    await carol.fill("#user", "carol");
    await carol.click("#login button");
    await carol.locator("#convs li", { hasText: "book club" }).click();
    await expect.poll(() => texts(carol), { timeout: 10_000 }).toEqual(lines.slice(-30));
    // Scrolling to the top loads the pages before, until the beginning.
    for (let page = 0; page < 5 && (await carol.locator("#log .note", { hasText: "beginning" }).count()) === 0; page++) {
      await carol.$eval("#log", (log) => log.scrollTo(0, 0));
      await expect.poll(() => texts(carol).then((t) => t.length)).toBeGreaterThan(Math.min(70, 30 * (page + 1)));
    }
    expect(await texts(carol)).toEqual(lines);
    await carol.$eval("#log", (log) => log.scrollTo(0, 0));
    await carol.screenshot({ path: path.join(TEST_OUTPUT, "web-page-history.png") });
    expect(pageErrors).toEqual([]);
  });
});
