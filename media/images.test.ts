import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
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
