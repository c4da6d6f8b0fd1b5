// Image processing in child processes: real images through the real child, and children that
// misbehave (never answer, die) to show the deadline kills them and the next job gets a new one.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, describe, expect, it, onTestFinished } from "vitest";
import { silentLogger } from "../core/logger.ts";
import { makeImage, SVG } from "../test/support/images.ts";
import { ImageProcessor } from "./processor.ts";

const dir = mkdtempSync(path.join(os.tmpdir(), "natter-processor-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A child that answers every job with its pid as the width, never answers "hang", and dies on "crash". */
const FAKE_CHILD = `
process.on("message", (m) => {
  if (m.contentType === "hang") return;
  if (m.contentType === "crash") process.exit(3);
  const e = { data: new Uint8Array([1]), type: "image/png", width: process.pid, height: 1 };
  process.send({ type: "done", id: m.id, result: { full: e, thumb: e, ms: { full: 0, thumb: 0 } } });
});
process.on("disconnect", () => process.exit(0));
process.send({ type: "ready" });
`;

function processor(opts: { entry?: URL; timeoutMs?: number; size?: number } = {}): ImageProcessor {
  const p = new ImageProcessor({ size: opts.size ?? 1, timeoutMs: opts.timeoutMs ?? 30_000, limits: { maxPixels: 50_000_000, thumbSize: 64 }, log: silentLogger(), entry: opts.entry });
  onTestFinished(() => p.close());
  return p;
}

function fakeChild(): URL {
  const file = path.join(dir, "fake-child.mjs");
  writeFileSync(file, FAKE_CHILD);
  return pathToFileURL(file);
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe("ImageProcessor", () => {
  it("re-encodes an image in a child process and passes on its typed refusals", async () => {
    const p = processor();
    const r = await p.process(await makeImage("image/png", { width: 90, height: 60 }), "image/png");
    expect([r.full.type, r.full.width, r.full.height, r.thumb.type]).toEqual(["image/png", 90, 60, "image/webp"]);
    expect(Buffer.isBuffer(r.full.data) && Buffer.isBuffer(r.thumb.data)).toBe(true);
    await expect(p.process(SVG, "image/svg+xml")).rejects.toMatchObject({ code: "IMAGE_TYPE_REFUSED", temporary: false });
    // The same child goes on.
    expect((await p.process(await makeImage("image/jpeg"), undefined)).full.type).toBe("image/jpeg");
  }, 60_000);

  it("kills a child that does not answer within the deadline (IMAGE_TIMEOUT); the next job gets a new child", async () => {
    const p = processor({ entry: fakeChild(), timeoutMs: 300 });
    const first = (await p.process(Buffer.from("x"), "image/png")).full.width;
    expect(alive(first)).toBe(true);
    await expect(p.process(Buffer.from("x"), "hang")).rejects.toMatchObject({ code: "IMAGE_TIMEOUT", status: 422, temporary: false });
    await expect.poll(() => alive(first)).toBe(false);
    const second = (await p.process(Buffer.from("x"), "image/png")).full.width;
    expect(second).not.toBe(first);
  });

  it("answers INTERNAL for a child that dies on an image; the next job gets a new child", async () => {
    const p = processor({ entry: fakeChild() });
    const first = (await p.process(Buffer.from("x"), "image/png")).full.width;
    await expect(p.process(Buffer.from("x"), "crash")).rejects.toMatchObject({ code: "INTERNAL" });
    const second = (await p.process(Buffer.from("x"), "image/png")).full.width;
    expect(second).not.toBe(first);
  });

  it("runs as many children as jobs in flight, up to its size, and kills them all on close", async () => {
    const p = processor({ entry: fakeChild(), size: 2 });
    const pids = (await Promise.all([p.process(Buffer.from("x"), "image/png"), p.process(Buffer.from("x"), "image/png")])).map((r) => r.full.width);
    expect(new Set(pids).size).toBe(2);
    await p.close();
    for (const pid of pids) expect(alive(pid)).toBe(false);
    await expect(p.process(Buffer.from("x"), "image/png")).rejects.toMatchObject({ code: "UNAVAILABLE" });
  });
});
