import { Readable } from "node:stream";
import { describe, expect, onTestFinished, test } from "vitest";
import { NatterError } from "../core/errors.ts";
import { blobStoreConformance } from "../test/conformance/blob-store.ts";
import { removeBucket, useBucket } from "../test/harness/minio.ts";
import { freePorts, randomId } from "../test/harness/processes.ts";
import { S3BlobStore, type S3BlobsConfig } from "./s3-blob-store.ts";

const MiB = 1024 * 1024;

describe("S3BlobStore on MinIO", () => {
  const s3 = useBucket();
  const config = (bucket = s3.bucket): S3BlobsConfig => ({
    kind: "s3",
    endPoint: s3.endpoint.endPoint,
    port: s3.endpoint.port,
    useSSL: s3.endpoint.useSSL,
    accessKey: s3.endpoint.accessKey,
    secretKey: s3.endpoint.secretKey,
    bucket,
    region: "us-east-1",
  });

  // The smallest part size S3 allows, so the suite's 6 and 12 MiB streams take the multipart path.
  blobStoreConformance("S3BlobStore", () => S3BlobStore.open(config(), { partSize: 5 * MiB }));

  test("open creates a missing bucket", async () => {
    const bucket = `t-${randomId(16)}`;
    const store = await S3BlobStore.open(config(bucket));
    onTestFinished(async () => {
      await store.close();
      await removeBucket(s3.client, bucket);
    });
    expect(await s3.client.bucketExists(bucket)).toBe(true);
    await store.ping();
    // Opening again (the bucket exists now) is fine.
    await (await S3BlobStore.open(config(bucket))).close();
  });

  test("a failed multipart put aborts its upload: no part is left behind", async () => {
    const store = await S3BlobStore.open(config(), { partSize: 5 * MiB });
    onTestFinished(() => store.close());
    const failing = Readable.from(
      (async function* () {
        yield Buffer.alloc(11 * MiB);
        throw new Error("gone");
      })(),
    );
    await expect(store.put("aborted", failing, { contentType: "text/plain" })).rejects.toThrow("gone");
    const uploads: unknown[] = [];
    for await (const u of s3.client.listIncompleteUploads(s3.bucket, "aborted", true)) uploads.push(u);
    expect(uploads).toEqual([]);
    expect(await store.stat("aborted")).toBeNull();
  });

  test("ping fails with UNAVAILABLE once the bucket is gone", async () => {
    const bucket = `t-${randomId(16)}`;
    const store = await S3BlobStore.open(config(bucket));
    onTestFinished(() => store.close());
    await s3.client.removeBucket(bucket);
    const err = await store.ping().then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(NatterError);
    expect(err).toMatchObject({ code: "UNAVAILABLE", temporary: true });
  });

  test("an unreachable server is UNAVAILABLE, with the client's error as cause", async () => {
    const [port] = (await freePorts(1)) as [number];
    const err = await S3BlobStore.open({ ...config(), port }).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(NatterError);
    expect(err).toMatchObject({ code: "UNAVAILABLE", temporary: true });
    expect((err as NatterError).cause).toBeInstanceOf(Error);
  });
});
