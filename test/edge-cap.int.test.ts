// An edge at its connection cap, as a process with a small open-file limit: natter reads the
// limit and logs the cap at start, refuses the next socket with a retry hint and 4503, and stays
// healthy (/readyz and /metrics answer).
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { WebSocket } from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnNatter, type NatterProcess } from "./support/natter-process.ts";

const OPEN_FILES = 700;
const CAP = OPEN_FILES - 512; // the descriptors natter keeps for everything else

let natter: NatterProcess;
const sockets: WebSocket[] = [];

beforeAll(async () => {
  // Sockets that never say hello: no per-address cap, no hello deadline within the test.
  natter = await spawnNatter({ NATTER_EDGE__MAX_PENDING_PER_ADDRESS: "0", NATTER_EDGE__HELLO_TIMEOUT_MS: "60000" }, { openFiles: OPEN_FILES });
});
afterAll(async () => {
  for (const s of sockets) s.terminate();
  await natter?.stop();
});

/** Opens a socket; resolves with it once open, and with what the edge said if it closed it. */
function open(): Promise<{ ws: WebSocket; frames: Record<string, unknown>[]; closed: Promise<number> }> {
  const ws = new WebSocket(`${natter.url.replace(/^http/, "ws")}/ws`);
  sockets.push(ws);
  const frames: Record<string, unknown>[] = [];
  ws.on("message", (d) => frames.push(JSON.parse(String(d)) as Record<string, unknown>));
  const closed = new Promise<number>((resolve) => ws.on("close", (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    ws.once("open", () => resolve({ ws, frames, closed }));
    ws.once("error", reject);
  });
}

/** The listen backlog of the socket listening on `port`, as the kernel reports it (`ss`: Send-Q of a listener). */
function listenBacklog(port: number): number | undefined {
  try {
    const line = execFileSync("ss", ["-ltnH", `sport = :${port}`], { encoding: "utf8" }).trim().split("\n")[0];
    return line ? Number(line.split(/\s+/)[2]) : undefined;
  } catch {
    return undefined; // no `ss` here
  }
}

describe("an edge at its connection cap", () => {
  it("listens with edge.listenBacklog (4096), as far as net.core.somaxconn allows", () => {
    const somaxconn = Number(readFileSync("/proc/sys/net/core/somaxconn", "utf8"));
    const backlog = listenBacklog(Number(new URL(natter.url).port));
    if (backlog === undefined) return; // the kernel's view needs `ss`
    expect(backlog).toBe(Math.min(4096, somaxconn));
  });

  it("logs the open-file limit and the cap it leaves at start", () => {
    expect(natter.logLines().find((l) => l.msg === "edge connection cap")).toMatchObject({ openFileLimit: OPEN_FILES, maxSockets: CAP });
  });

  it("refuses the next socket with UNAVAILABLE, a retry hint and 4503, and answers /readyz and /metrics", async () => {
    for (let i = 0; i < CAP; i += 50) await Promise.all(Array.from({ length: Math.min(50, CAP - i) }, () => open()));
    const extra = await open();
    expect(await extra.closed).toBe(4503);
    expect(extra.frames).toEqual([expect.objectContaining({ type: "error", code: "UNAVAILABLE", temporary: true, retryAfterMs: expect.any(Number) })]);
    expect(extra.frames[0]!.message).toMatch(/full/);
    expect((await fetch(`${natter.url}/readyz`)).status).toBe(200);
    const metrics = await fetch(`${natter.workersUrl}/metrics`);
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toContain("natter_");
    // The sockets below the cap are all still open.
    expect(sockets.slice(0, CAP).every((s) => s.readyState === WebSocket.OPEN)).toBe(true);
  });
});
