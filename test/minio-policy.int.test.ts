// natter's own MinIO user, as compose's minio-setup makes it: a user with the policy of
// deploy/minio/natter-policy.json (its bucket ARNs pointed at this file's bucket). The blob store
// conformance suite passes with it, so the policy allows all natter does; what natter does not
// do is refused; and with any one of its actions taken out, natter's own calls fail at the step
// that needs it, so the policy grants nothing natter could do without. The users and policies are
// made through MinIO's admin API as root, the way `mc admin` does (test/harness/minio-admin.ts).
import { Readable } from "node:stream";
import { Client, S3Error } from "minio";
import { afterAll, beforeAll, describe, expect, onTestFinished, test } from "vitest";
import { NatterError } from "../core/errors.ts";
import { S3BlobStore, type S3BlobsConfig } from "../persistence/s3-blob-store.ts";
import { blobStoreConformance } from "./conformance/blob-store.ts";
import { minioAdmin } from "./harness/minio-admin.ts";
import { removeBucket, useBucket } from "./harness/minio.ts";
import { randomId } from "./harness/processes.ts";
import { natterPolicyFor } from "./support/deploy.ts";

const MiB = 1024 * 1024;
const REGION = "us-east-1";

/** The policy's JSON with `action` taken out of every statement (a statement left with none is dropped). */
function without(policyJson: string, action: string): string {
  const policy = JSON.parse(policyJson) as { Statement: { Action: string[] }[] };
  const statements = policy.Statement.map((st) => ({ ...st, Action: st.Action.filter((a) => a !== action) })).filter((st) => st.Action.length > 0);
  return JSON.stringify({ ...policy, Statement: statements });
}

/** The actions a policy's statements grant. */
const actionsOf = (policyJson: string) => (JSON.parse(policyJson) as { Statement: { Action: string[] }[] }).Statement.flatMap((st) => st.Action);

/** The S3 error code a promise rejects with (undefined if it resolves). */
const s3Error = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (err: unknown) => (err instanceof S3Error ? err.code : String(err)),
  );

describe("natter's MinIO user with deploy/minio/natter-policy.json", () => {
  const s3 = useBucket();
  const user = `natter-${randomId(8)}`;
  const password = randomId(32);
  /** A bucket that exists and the policy does not name. */
  const other = `t-${randomId(16)}`;
  /** A bucket the policy of a second user names, never created. */
  const missing = `t-${randomId(16)}`;
  const missingUser = `natter-${randomId(8)}`;
  let root: Client;

  const config = (over: Partial<S3BlobsConfig> = {}): S3BlobsConfig => ({
    kind: "s3",
    endPoint: s3.endpoint.endPoint,
    port: s3.endpoint.port,
    useSSL: s3.endpoint.useSSL,
    accessKey: user,
    secretKey: password,
    bucket: s3.bucket,
    region: REGION,
    ...over,
  });
  const asUser = () => new Client({ endPoint: s3.endpoint.endPoint, port: s3.endpoint.port, useSSL: false, accessKey: user, secretKey: password, region: REGION });

  beforeAll(async () => {
    const { endPoint, port, useSSL, accessKey, secretKey } = s3.endpoint;
    root = new Client({ endPoint, port, useSSL, accessKey, secretKey, region: REGION });
    const admin = minioAdmin(root, s3.endpoint.secretKey);
    await root.makeBucket(other, REGION);
    for (const [name, bucket] of [[user, s3.bucket], [missingUser, missing]] as const) {
      await admin.addPolicy(name, natterPolicyFor(bucket));
      await admin.addUser(name, password);
      await admin.attachPolicy(name, name);
    }
  });
  afterAll(async () => {
    const admin = minioAdmin(root, s3.endpoint.secretKey);
    for (const name of [user, missingUser]) {
      await admin.removeUser(name);
      await admin.removePolicy(name);
    }
    await removeBucket(root, other);
  });

  // Everything natter does, as this user: parts of 5 MiB, so buffers and streams over one part
  // take the multipart path (and a failed one is aborted).
  blobStoreConformance("S3BlobStore as natter's MinIO user", () => S3BlobStore.open(config(), { partSize: 5 * MiB }));

  test("a buffer larger than a part goes up in parts, with these actions alone", async () => {
    const store = await S3BlobStore.open(config(), { partSize: 5 * MiB });
    const data = Buffer.alloc(11 * MiB, 7);
    await store.put("big/buffer", data, { contentType: "application/octet-stream", size: data.length });
    expect(await store.stat("big/buffer")).toEqual({ size: data.length, contentType: "application/octet-stream" });
    await store.delete("big/buffer");
  });

  test("a failed multipart put is aborted: no part is left behind", async () => {
    const store = await S3BlobStore.open(config(), { partSize: 5 * MiB });
    const failing = Readable.from(
      (async function* () {
        yield Buffer.alloc(11 * MiB);
        throw new Error("gone");
      })(),
    );
    await expect(store.put("aborted", failing, { contentType: "text/plain" })).rejects.toThrow("gone");
    const uploads: unknown[] = [];
    for await (const u of root.listIncompleteUploads(s3.bucket, "aborted", true)) uploads.push(u);
    expect(uploads).toEqual([]);
  });

  test("it may not list its bucket, make or remove buckets, list them, or touch another bucket", async () => {
    const client = asUser();
    const listing = async () => {
      for await (const _ of client.listObjectsV2(s3.bucket, "", true)) return "listed";
      return "listed";
    };
    expect(await s3Error(listing())).toBe("AccessDenied");
    expect(await s3Error(client.listBuckets())).toBe("AccessDenied");
    expect(await s3Error(client.makeBucket(`t-${randomId(16)}`, REGION))).toBe("AccessDenied");
    expect(await s3Error(client.removeBucket(s3.bucket))).toBe("AccessDenied");
    expect(await s3Error(client.putObject(other, "x", Buffer.from("x")))).toBe("AccessDenied");
    expect(await s3Error(client.getObject(other, "x"))).toBe("AccessDenied");
    expect(await s3Error(client.bucketExists(other))).toBe("AccessDenied");
    expect(await root.bucketExists(s3.bucket)).toBe(true);
  });

  test("it may not use MinIO's admin API", async () => {
    const err = await minioAdmin(asUser(), password)
      .addUser(`x-${randomId(8)}`, randomId(32))
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(err).toBeInstanceOf(Error);
  });

  // natter's calls in order, as one user: the first step that fails (undefined if all pass).
  // A multipart put whose source fails must leave no upload behind (the abort was allowed).
  const natterSteps = async (accessKey: string): Promise<string | undefined> => {
    const key = `probe/${randomId(8)}`;
    const step = async (name: string, run: () => Promise<unknown>) => {
      try {
        await run();
        return undefined;
      } catch {
        return name;
      }
    };
    let store: S3BlobStore | undefined;
    const steps: [string, () => Promise<unknown>][] = [
      ["open", async () => (store = await S3BlobStore.open(config({ accessKey }), { partSize: 5 * MiB }))],
      ["put", () => store!.put(key, Buffer.from("hello"), { contentType: "text/plain" })],
      ["stat", async () => expect(await store!.stat(key)).toEqual({ size: 5, contentType: "text/plain" })],
      ["get", async () => expect((await (await store!.get(key)).toArray()).join("")).toBe("hello")],
      [
        "abort",
        async () => {
          const failing = Readable.from(
            (async function* () {
              yield Buffer.alloc(6 * MiB);
              throw new Error("gone");
            })(),
          );
          await expect(store!.put(`${key}/aborted`, failing, { contentType: "text/plain" })).rejects.toThrow("gone");
          const left: { uploadId: string }[] = [];
          for await (const u of root.listIncompleteUploads(s3.bucket, `${key}/aborted`, true)) left.push(u);
          for (const u of left) await root.abortMultipartUpload(s3.bucket, `${key}/aborted`, u.uploadId);
          expect(left).toEqual([]);
        },
      ],
      [
        "delete",
        async () => {
          await store!.delete(key);
          expect(await s3Error(root.statObject(s3.bucket, key))).toBe("NotFound");
        },
      ],
    ];
    onTestFinished(() => root.removeObject(s3.bucket, key));
    for (const [name, run] of steps) {
      const failed = await step(name, run);
      if (failed) return failed;
    }
    return undefined;
  };

  // The step of natterSteps that each action of the policy is needed for.
  const neededBy: Record<string, string> = {
    "s3:HeadBucket": "open",
    "s3:PutObject": "put",
    "s3:GetObject": "stat",
    "s3:AbortMultipartUpload": "abort",
    "s3:DeleteObject": "delete",
  };

  test("the policy grants exactly the actions these checks cover", () => {
    expect(actionsOf(natterPolicyFor(s3.bucket)).sort()).toEqual(Object.keys(neededBy).sort());
  });

  test("with the whole policy every step passes", async () => {
    expect(await natterSteps(user)).toBeUndefined();
  });

  test.each(Object.entries(neededBy))("without %s natter fails at %s", async (action, failsAt) => {
    const admin = minioAdmin(root, s3.endpoint.secretKey);
    const name = `mut-${randomId(8)}`;
    const policy = without(natterPolicyFor(s3.bucket), action);
    expect(actionsOf(policy)).not.toContain(action);
    await admin.addPolicy(name, policy);
    onTestFinished(() => admin.removePolicy(name));
    await admin.addUser(name, password);
    onTestFinished(() => admin.removeUser(name));
    await admin.attachPolicy(name, name);
    expect(await natterSteps(name)).toBe(failsAt);
  });

  test("opening a bucket that is missing says natter may not create it", async () => {
    const err = await S3BlobStore.open(config({ accessKey: missingUser, bucket: missing })).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(NatterError);
    expect(err).toMatchObject({ code: "UNAVAILABLE" });
    expect((err as Error).message).toMatch(`bucket ${missing} does not exist, and blobs.accessKey may not create it`);
    expect(await root.bucketExists(missing)).toBe(false);
  });
});
