import { mkdtempSync } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { afterAll, describe, expect, onTestFinished, test } from "vitest";
import { ConfigSchema } from "../config/index.ts";
import { NatterError } from "../core/errors.ts";
import { silentLogger } from "../core/logger.ts";
import { blobStoreConformance } from "../test/conformance/blob-store.ts";
import { FsBlobStore } from "./fs-blob-store.ts";
import { openBlobStore } from "./index.ts";

const root = mkdtempSync(path.join(os.tmpdir(), "natter-fs-blobs-"));
afterAll(() => fs.rm(root, { recursive: true, force: true }));

let n = 0;
const freshDir = (): string => path.join(root, `store-${++n}`);

blobStoreConformance("FsBlobStore", () => FsBlobStore.open(freshDir()));

/** Every regular file under `dir`, relative to it. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await fs.readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => path.relative(dir, path.join(e.parentPath, e.name)));
}

async function readAll(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString();
}

async function withStore(dir = freshDir()): Promise<{ store: FsBlobStore; dir: string }> {
  const store = await FsBlobStore.open(dir);
  onTestFinished(() => store.close());
  return { store, dir };
}

describe("FsBlobStore on disk", () => {
  test("invalid keys write no file anywhere, not even beside or above the store folder", async () => {
    const outer = path.join(root, "outer");
    const { store } = await withStore(path.join(outer, "inner", "store"));
    for (const key of ["../x", "../../x", "/abs", "a//b", "a b", "", "..", "x".repeat(300)]) {
      await expect(store.put(key, Buffer.from("evil"), { contentType: "text/plain" })).rejects.toMatchObject({ code: "INVALID_ID" });
    }
    expect(await filesUnder(outer)).toEqual([]);
  });

  test("failed puts leave no temp file and no blob", async () => {
    const { store, dir } = await withStore();
    const failing = Readable.from(
      (async function* () {
        yield Buffer.alloc(100_000);
        throw new Error("gone");
      })(),
    );
    await expect(store.put("a", failing, { contentType: "text/plain" })).rejects.toThrow("gone");
    await expect(store.put("b", Readable.from([Buffer.from("abc")]), { contentType: "text/plain", size: 2 })).rejects.toBeInstanceOf(NatterError);
    expect(await filesUnder(dir)).toEqual([]);
  });

  test("a reader that started before an overwrite or delete reads the old blob whole", async () => {
    const { store } = await withStore();
    await store.put("k", Buffer.from("old".repeat(100_000)), { contentType: "text/plain" });
    const reading = await store.get("k");
    await store.put("k", Buffer.from("new"), { contentType: "text/plain" });
    const reading2 = await store.get("k");
    await store.delete("k");
    expect(await readAll(reading)).toBe("old".repeat(100_000));
    expect(await readAll(reading2)).toBe("new");
  });

  test("open removes temp files left by a crash an hour ago and keeps recent ones", async () => {
    const dir = freshDir();
    await fs.mkdir(path.join(dir, "tmp"), { recursive: true });
    const stale = path.join(dir, "tmp", "stale");
    const recent = path.join(dir, "tmp", "recent");
    await fs.writeFile(stale, "half a blob");
    await fs.writeFile(recent, "a put in progress");
    const old = new Date(Date.now() - 2 * 3600_000);
    await fs.utimes(stale, old, old);
    await withStore(dir);
    expect((await filesUnder(dir)).sort()).toEqual([path.join("tmp", "recent")]);
  });

  test("openBlobStore picks the folder store, by default in <dataDir>/blobs", async () => {
    const dataDir = freshDir();
    const store = await openBlobStore(ConfigSchema.parse({ dataDir }), silentLogger());
    onTestFinished(() => store.close());
    expect(store).toBeInstanceOf(FsBlobStore);
    await store.put("hello", Buffer.from("hi"), { contentType: "text/plain" });
    const files = await filesUnder(path.join(dataDir, "blobs"));
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/^objects\/[0-9a-f]{2}\/[0-9a-f]{64}$/);
  });
});
