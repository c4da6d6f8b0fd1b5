import sharp from "sharp";
import { describe, expect, it } from "vitest";
import { NatterError, type ErrorCode } from "../core/errors.ts";
import { exifHasGps, hasGps, makeImage, pngBomb, SVG, truncated, type TestImageType } from "../test/support/images.ts";
import { claimedImageType, detectImageType, processImage } from "./process.ts";

const LIMITS = { maxPixels: 50_000_000, thumbSize: 64 };

async function refusal(p: Promise<unknown>): Promise<ErrorCode> {
  const err = await p.then(
    () => expect.fail("expected a refusal"),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(NatterError);
  return (err as NatterError).code;
}

describe("detectImageType", () => {
  it.each(["image/jpeg", "image/png", "image/webp", "image/gif"] as const)("knows %s by its bytes", async (type) => {
    expect(detectImageType(await makeImage(type))).toBe(type);
  });
  it("knows nothing else", () => {
    for (const b of [SVG, Buffer.from("hello"), Buffer.alloc(0), Buffer.from("RIFF\0\0\0\0WAVEfmt "), Buffer.from([0xff, 0xd8])]) {
      expect(detectImageType(b)).toBeUndefined();
    }
  });
});

describe("claimedImageType", () => {
  it("accepts the four types and common spellings, absent or octet-stream means unknown", () => {
    expect(claimedImageType("image/PNG; charset=binary")).toBe("image/png");
    expect(claimedImageType("image/jpg")).toBe("image/jpeg");
    expect(claimedImageType(undefined)).toBeUndefined();
    expect(claimedImageType("application/octet-stream")).toBeUndefined();
  });
  it("refuses SVG and everything else", () => {
    for (const t of ["image/svg+xml", "text/html", "image/tiff", "application/pdf"]) {
      expect(() => claimedImageType(t)).toThrow(expect.objectContaining({ code: "IMAGE_TYPE_REFUSED" }));
    }
  });
});

describe("processImage", () => {
  it.each(["image/jpeg", "image/png", "image/webp", "image/gif"] as const)("re-encodes %s, records dimensions and makes a thumbnail", async (type: TestImageType) => {
    const input = await makeImage(type, { width: 300, height: 200 });
    const out = await processImage(input, type, LIMITS);
    expect(out.full).toMatchObject({ type, width: 300, height: 200 });
    expect(detectImageType(out.full.data)).toBe(type);
    expect(out.thumb).toMatchObject({ type: "image/webp", width: 64, height: 43 });
    const t = await sharp(out.thumb.data).metadata();
    expect([t.format, t.width, t.height]).toEqual(["webp", 64, 43]);
  });

  it("strips EXIF (the GPS position) and keeps a small image's size in the thumbnail", async () => {
    const input = await makeImage("image/jpeg", { width: 40, height: 30, gps: true });
    expect(await hasGps(input)).toBe(true);
    const out = await processImage(input, "image/jpeg", LIMITS);
    expect((await sharp(out.full.data).metadata()).exif).toBeUndefined();
    expect(exifHasGps((await sharp(out.thumb.data).metadata()).exif)).toBe(false);
    expect(out.thumb).toMatchObject({ width: 40, height: 30 });
  });

  it("turns an image upright by its EXIF orientation before dropping it", async () => {
    const input = await sharp(await makeImage("image/jpeg", { width: 60, height: 20 })).withMetadata({ orientation: 6 }).jpeg().toBuffer();
    expect((await sharp(input).metadata()).orientation).toBe(6);
    const out = await processImage(input, undefined, LIMITS);
    expect(out.full).toMatchObject({ width: 20, height: 60 });
    expect((await sharp(out.full.data).metadata()).orientation).toBeUndefined();
  });

  it("keeps an animated GIF's frames and reports one frame's height", async () => {
    const frames = await Promise.all([0, 1, 2].map(() => makeImage("image/png", { width: 50, height: 40 })));
    const gif = await sharp(frames, { join: { animated: true } }).gif().toBuffer();
    expect((await sharp(gif, { animated: true }).metadata()).pages).toBe(3);
    const out = await processImage(gif, "image/gif", LIMITS);
    expect(out.full).toMatchObject({ width: 50, height: 40 });
    expect((await sharp(out.full.data, { animated: true }).metadata()).pages).toBe(3);
    expect(out.thumb).toMatchObject({ width: 50, height: 40 });
  });

  it("refuses SVG, other files, and bytes that contradict the claimed type", async () => {
    expect(await refusal(processImage(SVG, "image/svg+xml", LIMITS))).toBe("IMAGE_TYPE_REFUSED");
    expect(await refusal(processImage(SVG, "image/png", LIMITS))).toBe("IMAGE_TYPE_REFUSED");
    expect(await refusal(processImage(SVG, undefined, LIMITS))).toBe("IMAGE_TYPE_REFUSED");
    expect(await refusal(processImage(Buffer.from("%PDF-1.7"), undefined, LIMITS))).toBe("IMAGE_TYPE_REFUSED");
    expect(await refusal(processImage(await makeImage("image/png"), "image/jpeg", LIMITS))).toBe("IMAGE_TYPE_MISMATCH");
  });

  it.each(["image/jpeg", "image/png", "image/webp", "image/gif"] as const)("refuses a truncated %s with IMAGE_CORRUPT", async (type) => {
    const whole = await makeImage(type, { width: 200, height: 150 });
    expect(await refusal(processImage(truncated(whole, 0.6), type, LIMITS))).toBe("IMAGE_CORRUPT");
  });

  it("refuses a tiny file declaring a huge bitmap with IMAGE_DIMENSIONS, before decoding it", async () => {
    const bomb = pngBomb(30_000, 30_000);
    expect(bomb.length).toBeLessThan(100_000);
    const before = process.memoryUsage().rss;
    const t0 = performance.now();
    expect(await refusal(processImage(bomb, "image/png", LIMITS))).toBe("IMAGE_DIMENSIONS");
    expect(performance.now() - t0).toBeLessThan(2_000);
    expect(process.memoryUsage().rss - before).toBeLessThan(200 * 1024 * 1024);
    // Under libvips' own limit too: the header alone decides.
    expect(await refusal(processImage(pngBomb(8_000, 8_000), "image/png", { maxPixels: 1_000_000, thumbSize: 64 }))).toBe("IMAGE_DIMENSIONS");
  });
});
