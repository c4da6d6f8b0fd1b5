// The one suite every BlobStore must pass (the folder one and S3), so they cannot drift.
// `make` is called once per test; the store it returns is closed when the test finishes. Tests
// write under a fresh key prefix each, so several may share one folder or bucket.
import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, onTestFinished, test } from "vitest";
import { NatterError, type ErrorCode } from "../../core/errors.ts";
import { BLOB_KEY_MAX_LENGTH, BLOB_KEY_MAX_SEGMENT, type BlobStore } from "../../persistence/blob-store.ts";

const MiB = 1024 * 1024;

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** The error a promise rejects with (fails the test when it resolves). */
async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => expect.fail("expected a rejection"),
    (err: unknown) => err,
  );
}

async function expectNatterError(p: Promise<unknown>, code: ErrorCode): Promise<void> {
  const err = await rejection(p);
  expect(err).toBeInstanceOf(NatterError);
  expect((err as NatterError).code).toBe(code);
}

/** `data` in chunks of uneven sizes, as a stream of unknown length. */
function chunked(data: Buffer): Readable {
  return Readable.from(
    (function* () {
      let at = 0;
      let i = 0;
      while (at < data.length) {
        const n = [1, 7_000, 65_536, 300_001][i++ % 4]!;
        yield data.subarray(at, at + n);
        at += n;
      }
    })(),
  );
}

export function blobStoreConformance(name: string, make: () => Promise<BlobStore> | BlobStore): void {
  describe(`BlobStore conformance: ${name}`, () => {
    async function open(): Promise<{ store: BlobStore; ns: string }> {
      const store = await make();
      onTestFinished(() => store.close());
      return { store, ns: `t-${randomBytes(6).toString("hex")}` };
    }

    test("ping succeeds", async () => {
      const { store } = await open();
      await expect(store.ping()).resolves.toBeUndefined();
    });

    test("round-trips every byte value and reports size and content type", async () => {
      const { store, ns } = await open();
      const data = Buffer.concat([Buffer.from(Array.from({ length: 256 }, (_, i) => i)), randomBytes(1000)]);
      await store.put(`${ns}/bin`, data, { contentType: "application/octet-stream" });
      expect((await readAll(await store.get(`${ns}/bin`))).equals(data)).toBe(true);
      expect(await store.stat(`${ns}/bin`)).toEqual({ size: data.length, contentType: "application/octet-stream" });
    });

    test("keeps a content type with parameters as given", async () => {
      const { store, ns } = await open();
      await store.put(`${ns}/t`, Buffer.from("héllo"), { contentType: "text/plain; charset=utf-8", size: 6 });
      expect(await store.stat(`${ns}/t`)).toEqual({ size: 6, contentType: "text/plain; charset=utf-8" });
      expect((await readAll(await store.get(`${ns}/t`))).toString("utf8")).toBe("héllo");
    });

    test("round-trips a ~5 MB buffer", async () => {
      const { store, ns } = await open();
      const data = randomBytes(5 * MiB + 123);
      await store.put(`${ns}/big`, data, { contentType: "image/jpeg", size: data.length });
      expect((await readAll(await store.get(`${ns}/big`))).equals(data)).toBe(true);
      expect(await store.stat(`${ns}/big`)).toEqual({ size: data.length, contentType: "image/jpeg" });
    });

    test("round-trips streams of unknown and of declared length, small and larger than one S3 part", async () => {
      const { store, ns } = await open();
      for (const [i, size] of [100_000, 12 * MiB + 17].entries()) {
        const data = randomBytes(size);
        await store.put(`${ns}/unknown-${i}`, chunked(data), { contentType: "video/mp4" });
        await store.put(`${ns}/declared-${i}`, chunked(data), { contentType: "video/mp4", size });
        for (const key of [`${ns}/unknown-${i}`, `${ns}/declared-${i}`]) {
          expect((await readAll(await store.get(key))).equals(data), key).toBe(true);
          expect(await store.stat(key)).toEqual({ size, contentType: "video/mp4" });
        }
      }
    });

    test("round-trips empty blobs, from a buffer and from a stream", async () => {
      const { store, ns } = await open();
      await store.put(`${ns}/empty-buf`, Buffer.alloc(0), { contentType: "text/plain" });
      await store.put(`${ns}/empty-stream`, Readable.from([]), { contentType: "text/plain" });
      for (const key of [`${ns}/empty-buf`, `${ns}/empty-stream`]) {
        expect((await readAll(await store.get(key))).length, key).toBe(0);
        expect(await store.stat(key)).toEqual({ size: 0, contentType: "text/plain" });
      }
    });

    test("a missing key: get is BLOB_NOT_FOUND, stat is null, delete succeeds", async () => {
      const { store, ns } = await open();
      await expectNatterError(store.get(`${ns}/nope`), "BLOB_NOT_FOUND");
      expect(await store.stat(`${ns}/nope`)).toBeNull();
      await expect(store.delete(`${ns}/nope`)).resolves.toBeUndefined();
    });

    test("put overwrites bytes and content type, also with a shorter blob", async () => {
      const { store, ns } = await open();
      const first = randomBytes(200_000);
      const second = Buffer.from("short");
      await store.put(`${ns}/k`, first, { contentType: "image/png" });
      await store.put(`${ns}/k`, second, { contentType: "text/plain" });
      expect((await readAll(await store.get(`${ns}/k`))).equals(second)).toBe(true);
      expect(await store.stat(`${ns}/k`)).toEqual({ size: second.length, contentType: "text/plain" });
      await store.put(`${ns}/k`, chunked(first), { contentType: "image/png" });
      expect((await readAll(await store.get(`${ns}/k`))).equals(first)).toBe(true);
      expect(await store.stat(`${ns}/k`)).toEqual({ size: first.length, contentType: "image/png" });
    });

    test("delete removes the blob and is idempotent", async () => {
      const { store, ns } = await open();
      await store.put(`${ns}/d`, Buffer.from("x"), { contentType: "text/plain" });
      await store.delete(`${ns}/d`);
      await store.delete(`${ns}/d`);
      expect(await store.stat(`${ns}/d`)).toBeNull();
      await expectNatterError(store.get(`${ns}/d`), "BLOB_NOT_FOUND");
    });

    test("a key and keys below or beside it are independent blobs", async () => {
      const { store, ns } = await open();
      const keys = [`${ns}/a`, `${ns}/a/b`, `${ns}/a/b/c`, `${ns}/A`, `${ns}/a-b`, `${ns}/a_b`];
      // Deleted one by one, deepest first: MinIO's bulk delete (used by the test harness) has been
      // seen to leave `a/b/c` behind when it deletes `a/b` and `a/b/c` together.
      onTestFinished(async () => {
        for (const key of [...keys].reverse()) await store.delete(key);
      });
      for (const key of keys) await store.put(key, Buffer.from(key), { contentType: "text/plain" });
      await store.delete(`${ns}/a`);
      expect(await store.stat(`${ns}/a`)).toBeNull();
      for (const key of keys.slice(1)) expect((await readAll(await store.get(key))).toString(), key).toBe(key);
    });

    test("invalid keys are refused with INVALID_ID by every method, and nothing is written", async () => {
      const { store, ns } = await open();
      const invalid = [
        "../x",
        "a/../b",
        "..",
        ".",
        "a/./b",
        "/abs",
        "a/",
        "a//b",
        "a b",
        "a\\b",
        "a\nb",
        "a\0b",
        "é",
        "a.txt",
        "",
        "k".repeat(BLOB_KEY_MAX_LENGTH + 1),
        // One segment longer than 255 characters, though the key is not too long.
        "k".repeat(BLOB_KEY_MAX_SEGMENT + 1),
      ];
      for (const key of invalid) {
        await expectNatterError(store.put(key, Buffer.from("evil"), { contentType: "text/plain" }), "INVALID_ID");
        await expectNatterError(store.put(key, Readable.from([Buffer.from("evil")]), { contentType: "text/plain" }), "INVALID_ID");
        await expectNatterError(store.get(key), "INVALID_ID");
        await expectNatterError(store.stat(key), "INVALID_ID");
        await expectNatterError(store.delete(key), "INVALID_ID");
        await expectNatterError(store.signedUrl(key, 60), "INVALID_ID");
      }
      // Nothing landed under a "cleaned up" spelling of those keys either.
      for (const key of ["x", "b", "abs", "a", "a/b", "ab", "a_b", "a-b", "k".repeat(BLOB_KEY_MAX_SEGMENT)]) {
        expect(await store.stat(key), key).toBeNull();
      }
      // The longest valid key works.
      const longest = `${ns}/${"k".repeat(BLOB_KEY_MAX_LENGTH - ns.length - 1)}`;
      expect(longest).toHaveLength(BLOB_KEY_MAX_LENGTH);
      await store.put(longest, Buffer.from("ok"), { contentType: "text/plain" });
      expect(await store.stat(longest)).toEqual({ size: 2, contentType: "text/plain" });
    });

    test("bad content types and sizes are refused with BAD_BLOB, and nothing is written", async () => {
      const { store, ns } = await open();
      for (const contentType of ["", "text", "text/", "/plain", "text/plain\r\nX-Evil: 1", "têxt/plain", "a/".padEnd(300, "b")]) {
        await expectNatterError(store.put(`${ns}/ct`, Buffer.from("x"), { contentType }), "BAD_BLOB");
      }
      for (const size of [-1, 1.5, Number.NaN]) {
        await expectNatterError(store.put(`${ns}/ct`, Buffer.from("x"), { contentType: "text/plain", size }), "BAD_BLOB");
      }
      await expectNatterError(store.put(`${ns}/ct`, Buffer.from("abc"), { contentType: "text/plain", size: 4 }), "BAD_BLOB");
      expect(await store.stat(`${ns}/ct`)).toBeNull();
    });

    test("a stream longer or shorter than its declared size is refused and the previous blob kept", async () => {
      const { store, ns } = await open();
      await store.put(`${ns}/s`, Buffer.from("previous"), { contentType: "text/plain" });
      for (const [size, declared] of [
        [1000, 999],
        [1000, 1001],
        [6 * MiB, 6 * MiB - 1],
        [6 * MiB, 6 * MiB + 1],
      ] as const) {
        await expectNatterError(store.put(`${ns}/s`, chunked(randomBytes(size)), { contentType: "image/png", size: declared }), "BAD_BLOB");
        await expectNatterError(store.put(`${ns}/fresh`, chunked(randomBytes(size)), { contentType: "image/png", size: declared }), "BAD_BLOB");
      }
      expect((await readAll(await store.get(`${ns}/s`))).toString()).toBe("previous");
      expect(await store.stat(`${ns}/s`)).toEqual({ size: 8, contentType: "text/plain" });
      expect(await store.stat(`${ns}/fresh`)).toBeNull();
    });

    test("a source stream that fails part-way rejects with its error and leaves the previous blob", async () => {
      const { store, ns } = await open();
      await store.put(`${ns}/f`, Buffer.from("previous"), { contentType: "text/plain" });
      for (const before of [10_000, 6 * MiB]) {
        const boom = new Error("the uploader went away");
        const failing = Readable.from(
          (async function* () {
            yield randomBytes(before);
            throw boom;
          })(),
        );
        expect(await rejection(store.put(`${ns}/f`, failing, { contentType: "image/png" }))).toBe(boom);
      }
      expect((await readAll(await store.get(`${ns}/f`))).toString()).toBe("previous");
      expect(await store.stat(`${ns}/f`)).toEqual({ size: 8, contentType: "text/plain" });
    });

    test("signedUrl is null, or a URL that GETs the bytes without credentials until it expires", async () => {
      const { store, ns } = await open();
      const data = randomBytes(70_000);
      await store.put(`${ns}/u`, data, { contentType: "image/webp" });
      const url = await store.signedUrl(`${ns}/u`, 60);
      // Null: this store cannot make one, and its callers stream the blob after their own checks.
      if (url === null) return;
      const res = await fetch(url);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toBe("image/webp");
      expect(Buffer.from(await res.arrayBuffer()).equals(data)).toBe(true);
      const missing = await store.signedUrl(`${ns}/missing`, 60);
      expect((await fetch(missing!)).status).toBe(404);
      const short = await store.signedUrl(`${ns}/u`, 1);
      await sleep(2_100);
      const expired = await fetch(short!);
      await expired.arrayBuffer();
      expect(expired.status).toBe(403);
    });

    test("concurrent puts of different keys all land intact", async () => {
      const { store, ns } = await open();
      const blobs = Array.from({ length: 24 }, (_, i) => ({ key: `${ns}/c/${i}`, data: randomBytes(1 + i * 20_011) }));
      await Promise.all(
        blobs.map(({ key, data }, i) =>
          store.put(key, i % 2 === 0 ? data : chunked(data), { contentType: `application/x-n${i}` }),
        ),
      );
      const back = await Promise.all(blobs.map(async ({ key }) => ({ bytes: await readAll(await store.get(key)), info: await store.stat(key) })));
      for (const [i, { data }] of blobs.entries()) {
        expect(back[i]!.bytes.equals(data), blobs[i]!.key).toBe(true);
        expect(back[i]!.info).toEqual({ size: data.length, contentType: `application/x-n${i}` });
      }
    });

    test("concurrent puts of one key leave one of them whole", async () => {
      const { store, ns } = await open();
      const versions = Array.from({ length: 6 }, (_, i) => randomBytes(50_000 + i * 1000));
      await Promise.all(versions.map((v, i) => store.put(`${ns}/same`, i % 2 === 0 ? v : chunked(v), { contentType: `image/x-v${i}` })));
      const bytes = await readAll(await store.get(`${ns}/same`));
      const winner = versions.findIndex((v) => v.equals(bytes));
      expect(winner).toBeGreaterThanOrEqual(0);
      expect(await store.stat(`${ns}/same`)).toEqual({ size: versions[winner]!.length, contentType: `image/x-v${winner}` });
    });
  });
}
