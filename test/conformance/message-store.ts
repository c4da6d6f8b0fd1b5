// One suite every MessageStore implementation must pass (embedded SQLite and Cassandra).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BUCKET_MS, type MessageStore, type StoredMessage } from "../../persistence/index.ts";

let counter = 0;
const uniqueConv = (tag: string) => `c_${tag}_${process.pid}_${Date.now().toString(36)}_${counter++}`;

function msg(conv: string, id: number, over: Partial<StoredMessage> = {}): StoredMessage {
  return { conv, id, kind: "msg", from: "alice", device: "phone", cid: `cid-${id}`, text: `text ${id}`, ts: 1_700_000_000_000 + id * 1000, ...over };
}

export function messageStoreConformance(name: string, make: () => Promise<MessageStore>): void {
  describe(`MessageStore conformance: ${name}`, () => {
    let store: MessageStore;
    beforeAll(async () => {
      store = await make();
    });
    afterAll(async () => {
      await store?.close();
    });

    it("returns history newest first and pages backwards with `before`", async () => {
      const conv = uniqueConv("page");
      await store.putMessages(Array.from({ length: 25 }, (_, i) => msg(conv, (i + 1) * 3)));
      const first = await store.history(conv, { limit: 10 });
      expect(first.map((m) => m.id)).toEqual([75, 72, 69, 66, 63, 60, 57, 54, 51, 48]);
      const second = await store.history(conv, { before: 48, limit: 10 });
      expect(second.map((m) => m.id)).toEqual([45, 42, 39, 36, 33, 30, 27, 24, 21, 18]);
      const last = await store.history(conv, { before: 18, limit: 10 });
      expect(last.map((m) => m.id)).toEqual([15, 12, 9, 6, 3]);
      expect(await store.history(conv, { before: 3, limit: 10 })).toEqual([]);
    });

    it("keeps every field, including unicode text", async () => {
      const conv = uniqueConv("fields");
      const m = msg(conv, 7, { from: "bob", device: "tablet-2", cid: "x_Y-9", text: "héllo 👋 مرحبا 你好 \u0000 \n tab\t", ts: 1_712_345_678_901 });
      await store.putMessages([m]);
      expect(await store.history(conv, { limit: 5 })).toEqual([m]);
    });

    it("keeps the images a message carries, in order", async () => {
      const conv = uniqueConv("images");
      const images = [
        { id: "img_aaaaaaaaaaaaaaaaaaaaaa", type: "image/jpeg", width: 4000, height: 3000, bytes: 2_500_000, thumb: { type: "image/webp", width: 320, height: 240, bytes: 9_000 } },
        { id: "img_bbbbbbbbbbbbbbbbbbbbbb", type: "image/gif", width: 16, height: 9, bytes: 400, thumb: { type: "image/webp", width: 16, height: 9, bytes: 100 } },
      ];
      const withImages = msg(conv, 2, { text: "", images });
      await store.putMessages([msg(conv, 1), withImages]);
      const got = await store.history(conv, { limit: 5 });
      expect(got[0]).toEqual(withImages);
      expect(got[1]?.images).toBeUndefined();
    });

    it("keeps membership changes in the same sequence as messages", async () => {
      const conv = uniqueConv("members");
      const change = msg(conv, 4, { kind: "members", from: "owner", device: "", cid: "", text: JSON.stringify({ action: "add", user: "dave" }) });
      await store.putMessages([msg(conv, 3), change, msg(conv, 5)]);
      const got = await store.history(conv, { limit: 10 });
      expect(got.map((m) => m.kind)).toEqual(["msg", "members", "msg"]);
      expect(got[1]).toEqual(change);
    });

    it("writing the same (conv, id) again stores one message", async () => {
      const conv = uniqueConv("idem");
      const batch = [msg(conv, 1), msg(conv, 2), msg(conv, 3)];
      await store.putMessages(batch);
      await store.putMessages(batch);
      await store.putMessages([msg(conv, 2)]);
      expect((await store.history(conv, { limit: 100 })).map((m) => m.id)).toEqual([3, 2, 1]);
    });

    it("keeps conversations apart", async () => {
      const a = uniqueConv("a");
      const b = uniqueConv("b");
      await store.putMessages([msg(a, 1), msg(b, 2), msg(a, 3), msg(b, 4)]);
      expect((await store.history(a, { limit: 10 })).map((m) => m.id)).toEqual([3, 1]);
      expect((await store.history(b, { limit: 10 })).map((m) => m.id)).toEqual([4, 2]);
      expect(await store.history(uniqueConv("none"), { limit: 10 })).toEqual([]);
    });

    it("pages in id order across partitions spanning months, even when accept times straddle a bucket edge", async () => {
      const conv = uniqueConv("buckets");
      const base = 1_700_000_000_000;
      const rows: StoredMessage[] = [];
      // 60 messages, one every 2 days: several 10-day buckets.
      for (let i = 1; i <= 60; i++) rows.push(msg(conv, i, { ts: base + i * 2 * 24 * 3600 * 1000 }));
      // Clock skew: id 61 accepted slightly *before* id 60's bucket edge by another edge's clock.
      const edge = Math.floor((base + 60 * 2 * 24 * 3600 * 1000) / BUCKET_MS) * BUCKET_MS;
      rows.push(msg(conv, 61, { ts: edge - 1 }));
      rows.push(msg(conv, 62, { ts: edge + BUCKET_MS + 5 }));
      await store.putMessages(rows);
      const seen: number[] = [];
      let before: number | undefined;
      for (let page = 0; page < 20; page++) {
        const got = await store.history(conv, { before, limit: 7 });
        if (got.length === 0) break;
        seen.push(...got.map((m) => m.id));
        before = got[got.length - 1]!.id;
      }
      expect(seen).toEqual(Array.from({ length: 62 }, (_, i) => 62 - i));
    });

    it("caps a page at 100 messages", async () => {
      const conv = uniqueConv("cap");
      await store.putMessages(Array.from({ length: 130 }, (_, i) => msg(conv, i + 1)));
      const got = await store.history(conv, { limit: 1000 });
      expect(got).toHaveLength(100);
      expect(got[0]!.id).toBe(130);
    });

    it("takes concurrent writers without losing a message", async () => {
      const conv = uniqueConv("conc");
      await Promise.all(
        Array.from({ length: 8 }, (_, w) => store.putMessages(Array.from({ length: 25 }, (_, i) => msg(conv, w * 25 + i + 1)))),
      );
      const ids: number[] = [];
      let before: number | undefined;
      for (;;) {
        const page = await store.history(conv, { before, limit: 100 });
        if (page.length === 0) break;
        ids.push(...page.map((m) => m.id));
        before = page[page.length - 1]!.id;
      }
      expect(ids).toEqual(Array.from({ length: 200 }, (_, i) => 200 - i));
    });

    it("answers ping", async () => {
      await expect(store.ping()).resolves.toBeUndefined();
    });
  });
}
