import { Readable } from "node:stream";
import { afterEach, describe, expect, it, vi } from "vitest";
import { imageBlobKey, isImageId, newImageId, readCapped } from "./images.ts";

describe("image ids and keys", () => {
  it("are img_ and 22 base64url characters, never the same twice", () => {
    const ids = new Set(Array.from({ length: 1000 }, newImageId));
    expect(ids.size).toBe(1000);
    for (const id of ids) expect(isImageId(id)).toBe(true);
    expect(imageBlobKey("img_AAAAAAAAAAAAAAAAAAAAAA", "thumb")).toBe("images/img_AAAAAAAAAAAAAAAAAAAAAA/thumb");
  });
  it("refuse anything else with IMAGE_NOT_FOUND", () => {
    for (const id of ["", "img_", "img_short", "../img_AAAAAAAAAAAAAAAAAAAAAA", "img_AAAAAAAAAAAAAAAAAAAAA/", "IMG_AAAAAAAAAAAAAAAAAAAAAA", 42]) {
      expect(isImageId(id)).toBe(false);
      expect(() => imageBlobKey(id as string, "full")).toThrow(expect.objectContaining({ code: "IMAGE_NOT_FOUND" }));
    }
  });
});

describe("readCapped", () => {
  const chunks = (n: number, size: number) => Readable.from(Array.from({ length: n }, () => Buffer.alloc(size, 1)));
  it("returns the whole body up to the cap", async () => {
    expect((await readCapped(chunks(4, 250), 1000)).length).toBe(1000);
  });
  it("reads past the cap to the end (up to 4×) and then refuses with IMAGE_TOO_LARGE", async () => {
    const body = chunks(30, 100);
    await expect(readCapped(body, 1000)).rejects.toMatchObject({ code: "IMAGE_TOO_LARGE" });
    expect(body.readableEnded).toBe(true);
  });
  it("gives up on a body far over the cap without reading it all", async () => {
    let produced = 0;
    const endless = Readable.from(
      (function* () {
        for (let i = 0; i < 1_000_000; i++) {
          produced++;
          yield Buffer.alloc(1000);
        }
      })(),
    );
    await expect(readCapped(endless, 10_000)).rejects.toMatchObject({ code: "IMAGE_TOO_LARGE" });
    expect(produced).toBeLessThan(100);
  });
});

describe("readCapped with a pace", () => {
  afterEach(() => vi.useRealTimers());
  const pace = { minBytesPerSec: 1000, timeoutMs: 60_000 };
  /** A body that sends `size` bytes every `everyMs` (fake time), `times` times, then ends, or stalls when `stall`. */
  function trickle(size: number, everyMs: number, times: number, stall = false): AsyncIterable<Buffer> {
    return (async function* () {
      for (let i = 0; i < times; i++) {
        await new Promise((r) => setTimeout(r, everyMs));
        yield Buffer.alloc(size, 1);
      }
      if (stall) await new Promise(() => undefined);
    })();
  }
  const fake = () => vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });

  it("takes a body that keeps the rate, however long it is within the deadline", async () => {
    fake();
    const read = readCapped(trickle(1500, 1000, 30), 100_000, { pace });
    await vi.advanceTimersByTimeAsync(31_000);
    expect((await read).length).toBe(45_000);
  });

  it("cuts a trickle below the rate once the first 5 s are over, with UPLOAD_TIMEOUT", async () => {
    fake();
    const read = readCapped(trickle(16, 1000, 1000), 100_000, { pace });
    const outcome = read.then(
      () => "read",
      (e: { code: string; message: string }) => `${e.code}: ${e.message}`,
    );
    await vi.advanceTimersByTimeAsync(4_900);
    expect(await Promise.race([outcome, "pending"])).toBe("pending");
    await vi.advanceTimersByTimeAsync(200);
    expect(await outcome).toBe("UPLOAD_TIMEOUT: the upload arrived slower than 1000 bytes/s");
  });

  it("cuts a body that stalls after a fast start once its bytes no longer cover the rate", async () => {
    fake();
    const read = readCapped(trickle(10_000, 100, 1, true), 100_000, { pace });
    const outcome = read.catch((e: { code: string }) => e.code);
    await vi.advanceTimersByTimeAsync(9_000);
    expect(await Promise.race([outcome, "pending"])).toBe("pending");
    await vi.advanceTimersByTimeAsync(2_000);
    expect(await outcome).toBe("UPLOAD_TIMEOUT");
  });

  it("cuts a body still arriving at the deadline, whatever its rate", async () => {
    fake();
    const read = readCapped(trickle(50_000, 1000, 100), 10_000_000, { pace: { minBytesPerSec: 1000, timeoutMs: 20_000 } });
    const outcome = read.catch((e: { code: string; message: string }) => e.message);
    await vi.advanceTimersByTimeAsync(21_000);
    expect(await outcome).toBe("the upload did not arrive within 20 s");
  });
});
