// Images on S3 (MinIO) with Cassandra, the production shape: fetches answer a redirect to a
// short-lived presigned GET after the membership check. The suite is test/images.suite.ts.
import type { BucketItem } from "minio";
import { describe, expect, it } from "vitest";
import { imageSuite } from "./images.suite.ts";
import { useKeyspace } from "./harness/cassandra.ts";
import { useBucket } from "./harness/minio.ts";
import { useNats } from "./harness/nats.ts";
import { testConfig, useNode } from "./support/node.ts";
import { makeImage } from "./support/images.ts";

const MAX_BYTES = 2 * 1024 * 1024;
const ORPHAN_AFTER_SEC = 4;

const nats = useNats();
const ks = useKeyspace();
const s3 = useBucket();
const node = useNode(() =>
  testConfig(nats.url, {
    store: { kind: "cassandra", contactPoints: [ks.contactPoint], localDataCenter: ks.localDataCenter, keyspace: ks.keyspace, consistency: "ONE" },
    blobs: {
      kind: "s3",
      endPoint: s3.endpoint.endPoint,
      port: s3.endpoint.port,
      useSSL: false,
      accessKey: s3.endpoint.accessKey,
      secretKey: s3.endpoint.secretKey,
      bucket: s3.bucket,
    },
    images: { maxBytes: MAX_BYTES, orphanAfterSec: ORPHAN_AFTER_SEC, urlTtlSec: 60 },
  }),
);

async function countObjects(): Promise<number> {
  let n = 0;
  for await (const item of s3.client.listObjectsV2(s3.bucket, "images/", true) as AsyncIterable<BucketItem>) if (item.name !== undefined) n++;
  return n;
}

imageSuite({ name: "s3", node, countBlobs: countObjects, maxBytes: MAX_BYTES, orphanAfterSec: ORPHAN_AFTER_SEC, maxPerMessage: 10 });

describe("images on S3", () => {
  it("the bucket is private: an object's plain URL is refused, the presigned one expires", async () => {
    const token = await node.token("alice");
    const res = await fetch(`${node.url}/images`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "image/png" },
      body: new Uint8Array(await makeImage("image/png", { width: 32, height: 32 })),
    });
    const { image } = (await res.json()) as { image: { id: string } };
    expect((await fetch(`${s3.endpoint.url}/${s3.bucket}/images/${image.id}/full`)).status).toBe(403);
    const redirect = await fetch(`${node.url}/images/${image.id}/full`, { headers: { authorization: `Bearer ${token}` }, redirect: "manual" });
    expect(redirect.status).toBe(302);
    expect(redirect.headers.get("cache-control")).toBe("no-store");
    const location = new URL(redirect.headers.get("location")!);
    expect(location.searchParams.get("X-Amz-Expires")).toBe("60");
    expect((await fetch(location)).status).toBe(200);
  });
});
