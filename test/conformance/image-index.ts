// One suite every ImageIndex must pass (embedded SQLite and Cassandra), so they cannot drift.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAX_IMAGE_SHARES, type ImageIndex } from "../../persistence/index.ts";
import type { ImageRef } from "../../streams/index.ts";

let counter = 0;
const uniqueId = () => `img_t${process.pid.toString(36)}${Date.now().toString(36)}${(counter++).toString(36)}`.padEnd(26, "x").slice(0, 26);

function ref(id: string, over: Partial<ImageRef> = {}): ImageRef {
  return { id, type: "image/png", width: 640, height: 480, bytes: 12_345, thumb: { type: "image/webp", width: 320, height: 240, bytes: 2_345 }, ...over };
}

export function imageIndexConformance(name: string, make: () => Promise<ImageIndex & { close(): Promise<void> }>): void {
  describe(`ImageIndex conformance: ${name}`, () => {
    let index: ImageIndex & { close(): Promise<void> };
    beforeAll(async () => {
      index = await make();
    });
    afterAll(async () => {
      await index?.close();
    });

    it("an image never shared is null", async () => {
      expect(await index.sharedImage(uniqueId())).toBeNull();
    });

    it("keeps the owner, the reference and every conversation, and sharing again changes nothing", async () => {
      const id = uniqueId();
      const image = ref(id, { type: "image/gif", width: 1, height: 2 });
      await index.shareImage("alice", image, "g_one");
      expect(await index.sharedImage(id)).toEqual({ owner: "alice", image, convs: ["g_one"] });
      await index.shareImage("alice", image, "dm_two");
      await index.shareImage("alice", image, "g_one");
      const got = await index.sharedImage(id);
      expect(got?.owner).toBe("alice");
      expect(got?.image).toEqual(image);
      expect(got?.convs.sort()).toEqual(["dm_two", "g_one"]);
    });

    it("keeps images apart", async () => {
      const a = uniqueId();
      const b = uniqueId();
      await index.shareImage("alice", ref(a), "c1");
      await index.shareImage("bob", ref(b, { width: 7 }), "c2");
      expect(await index.sharedImage(a)).toEqual({ owner: "alice", image: ref(a), convs: ["c1"] });
      expect(await index.sharedImage(b)).toEqual({ owner: "bob", image: ref(b, { width: 7 }), convs: ["c2"] });
    });

    it(`lists at most ${MAX_IMAGE_SHARES} conversations`, async () => {
      const id = uniqueId();
      const image = ref(id);
      for (let i = 0; i < MAX_IMAGE_SHARES + 5; i += 15) {
        await Promise.all(Array.from({ length: Math.min(15, MAX_IMAGE_SHARES + 5 - i) }, (_, k) => index.shareImage("carol", image, `c_${i + k}`)));
      }
      const got = await index.sharedImage(id);
      expect(got?.convs).toHaveLength(MAX_IMAGE_SHARES);
      expect(new Set(got?.convs).size).toBe(MAX_IMAGE_SHARES);
    });
  });
}
