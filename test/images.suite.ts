// Images end to end, through a real edge, real NATS and a real blob store: run against the
// filesystem store (test/images-fs.int.test.ts) and S3 on MinIO (test/images-s3.int.test.ts).
// Uploads over HTTP, sends over the WebSocket, fetches as each member, refusals with typed
// errors, member-only access, orphan removal. Test images are made with sharp (support/images.ts).
import { randomBytes } from "node:crypto";
import http from "node:http";
import { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import sharp from "sharp";
import { describe, expect, it, onTestFinished } from "vitest";
import { WebSocket } from "ws";
import { NatterClient } from "../client/src/index.js";
import { kvKeySubject, names } from "../nats/index.ts";
import type { ImageRef } from "../streams/index.ts";
import { hasGps, makeImage, pngBomb, SVG, truncated, type TestImageType } from "./support/images.ts";
import type { NodeHandle } from "./support/node.ts";
import { TestClient, type Frame } from "./support/ws-client.ts";

export interface ImageSuiteOptions {
  name: "fs" | "s3";
  node: NodeHandle;
  /** Blobs in the store under images/ (every upload writes two). */
  countBlobs(): Promise<number>;
  /** images.maxBytes and images.orphanAfterSec of the node. */
  maxBytes: number;
  orphanAfterSec: number;
  maxPerMessage: number;
}

interface HttpAnswer {
  status: number;
  body: { image?: ImageRef; error?: { code: string; message: string; temporary: boolean } };
}

export function imageSuite(o: ImageSuiteOptions): void {
  const base = () => o.node.url;

  async function upload(token: string | undefined, data: Buffer | Readable, contentType?: string): Promise<HttpAnswer> {
    const headers: Record<string, string> = {};
    if (token !== undefined) headers.authorization = `Bearer ${token}`;
    if (contentType !== undefined) headers["content-type"] = contentType;
    const body = Buffer.isBuffer(data) ? data : (Readable.toWeb(data) as ReadableStream);
    const res = await fetch(`${base()}/images`, { method: "POST", headers, body, ...(Buffer.isBuffer(data) ? {} : { duplex: "half" }) } as RequestInit);
    return { status: res.status, body: (await res.json()) as HttpAnswer["body"] };
  }

  async function uploadOk(user: string, data: Buffer, contentType: string): Promise<ImageRef> {
    const r = await upload(await o.node.token(user), data, contentType);
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    return r.body.image!;
  }

  async function fetchAs(token: string | undefined, id: string, variant: "full" | "thumb"): Promise<Response> {
    return fetch(`${base()}/images/${id}/${variant}`, { headers: token === undefined ? {} : { authorization: `Bearer ${token}` } });
  }

  async function client(user: string, device: string): Promise<TestClient> {
    const c = await TestClient.connect(base(), { token: await o.node.token(user), device });
    onTestFinished(() => c.close());
    return c;
  }

  const convOf = (f: Frame) => f.conv as { id: string; members: string[] };

  describe(`images (${o.name} blobs)`, () => {
    it("PNG, JPEG, WebP and GIF round-trip to every member's devices with dimensions and thumbnails; EXIF GPS is gone", async () => {
      const alicePhone = await client("alice", "phone");
      const aliceLaptop = await client("alice", "laptop");
      const bobPhone = await client("bob", "phone");
      const bobTablet = await client("bob", "tablet");
      const carol = await client("carol", "web");
      const group = convOf(await alicePhone.request({ type: "group.create", name: "pictures", members: ["bob", "carol"] }));

      const originals: Record<TestImageType, Buffer> = {
        "image/png": await makeImage("image/png", { width: 300, height: 200 }),
        "image/jpeg": await makeImage("image/jpeg", { width: 640, height: 480, gps: true }),
        "image/webp": await makeImage("image/webp", { width: 200, height: 300 }),
        "image/gif": await makeImage("image/gif", { width: 160, height: 120 }),
      };
      expect(await hasGps(originals["image/jpeg"])).toBe(true);
      const refs: ImageRef[] = [];
      for (const [type, data] of Object.entries(originals) as [TestImageType, Buffer][]) refs.push(await uploadOk("alice", data, type));
      expect(refs.map((r) => [r.type, r.width, r.height])).toEqual([
        ["image/png", 300, 200],
        ["image/jpeg", 640, 480],
        ["image/webp", 200, 300],
        ["image/gif", 160, 120],
      ]);
      for (const r of refs) {
        expect(r.id).toMatch(/^img_[A-Za-z0-9_-]{22}$/);
        expect(r.thumb.type).toBe("image/webp");
        expect(Math.max(r.thumb.width, r.thumb.height)).toBeLessThanOrEqual(320);
      }

      const ack = await alicePhone.request({ type: "send", conv: group.id, cid: "pics-1", text: "four pictures", images: refs.map((r) => r.id) });
      expect(ack).toMatchObject({ type: "ack", dup: false });
      // Every device of every member, the sender's own included.
      for (const device of [alicePhone, aliceLaptop, bobPhone, bobTablet, carol]) {
        const msg = await device.waitFor((f) => f.type === "msg" && f.cid === "pics-1");
        expect(msg).toMatchObject({ id: ack.id, from: "alice", text: "four pictures" });
        expect(msg.images).toEqual(refs);
      }
      // A retry of the same send attaches again without harm and stores nothing new.
      expect(await alicePhone.request({ type: "send", conv: group.id, cid: "pics-1", text: "four pictures", images: refs.map((r) => r.id) })).toMatchObject({ id: ack.id, dup: true });

      // Each member fetches each image and its thumbnail; they open and match their references.
      for (const user of ["bob", "carol", "alice"]) {
        const token = await o.node.token(user);
        for (const r of refs) {
          const thumb = await fetchAs(token, r.id, "thumb");
          expect(thumb.status, `${user} ${r.type} thumb`).toBe(200);
          expect(thumb.redirected).toBe(o.name === "s3");
          const t = await sharp(Buffer.from(await thumb.arrayBuffer())).metadata();
          expect([t.format, t.width, t.height]).toEqual(["webp", r.thumb.width, r.thumb.height]);
          const full = await fetchAs(token, r.id, "full");
          expect(full.status).toBe(200);
          expect(full.headers.get("content-type")).toBe(r.type);
          const bytes = Buffer.from(await full.arrayBuffer());
          expect(bytes.length).toBe(r.bytes);
          const m = await sharp(bytes).metadata();
          expect([`image/${m.format}`, m.width, m.height]).toEqual([r.type, r.width, r.height]);
          expect(m.exif).toBeUndefined();
          expect(await hasGps(bytes)).toBe(false);
        }
      }

      // History carries the images too, once the persister wrote the message to the store.
      await expect
        .poll(async () => (await o.node.node.store.history(group.id, { limit: 5 })).find((m) => m.id === ack.id)?.images, { timeout: 15_000, interval: 200 })
        .toEqual(refs);
      const history = await bobPhone.request({ type: "history", conv: group.id, limit: 5 });
      expect((history.messages as { id: number; images?: ImageRef[] }[]).find((m) => m.id === ack.id)?.images).toEqual(refs);
    });

    it("the SDK uploads, sends with images and fetches what it received", async () => {
      const sdk = async (user: string) => {
        const c = new NatterClient({ url: base(), user, device: "sdk", token: () => o.node.token(user), WebSocket });
        onTestFinished(() => c.close());
        await c.connect();
        return c;
      };
      const alice = await sdk("alice");
      const bob = await sdk("bob");
      const conv = await alice.openDm("bob");
      const ref = await alice.uploadImage(await makeImage("image/png", { width: 90, height: 60 }), "image/png");
      const got = new Promise<{ images?: ImageRef[] | undefined; text: string }>((resolve) => bob.on("message", (m) => m.conv === conv.id && resolve(m)));
      await alice.send(conv.id, "", { images: [ref] });
      const m = await got;
      expect(m.text).toBe("");
      expect(m.images).toEqual([ref]);
      const thumb = await bob.fetchImage(ref.id, "thumb");
      expect(thumb.size).toBe(ref.thumb.bytes);
      const full = await sharp(Buffer.from(await (await bob.fetchImage(ref.id)).arrayBuffer())).metadata();
      expect([full.width, full.height]).toEqual([90, 60]);
      // A refusal is a typed error.
      await expect(alice.uploadImage(SVG, "image/svg+xml")).rejects.toMatchObject({ code: "IMAGE_TYPE_REFUSED", temporary: false });
    });

    it("refuses SVG, contradicting bytes, truncated files, over-size files and decompression bombs with typed errors; nothing is stored and the process stays healthy", async () => {
      const token = await o.node.token("mallory");
      const before = await o.countBlobs();
      const png = await makeImage("image/png", { width: 200, height: 150 });
      const jpeg = await makeImage("image/jpeg", { width: 400, height: 300 });
      const oversize = Buffer.concat([jpeg, randomBytes(o.maxBytes + 1 - jpeg.length)]);
      const cases: [string, () => Promise<HttpAnswer>, number, string][] = [
        ["svg", () => upload(token, SVG, "image/svg+xml"), 415, "IMAGE_TYPE_REFUSED"],
        ["svg claimed as png", () => upload(token, SVG, "image/png"), 415, "IMAGE_TYPE_REFUSED"],
        ["html, no type", () => upload(token, Buffer.from("<html><script>alert(1)</script></html>")), 415, "IMAGE_TYPE_REFUSED"],
        ["png claimed as jpeg", () => upload(token, png, "image/jpeg"), 415, "IMAGE_TYPE_MISMATCH"],
        ["truncated jpeg", () => upload(token, truncated(jpeg, 0.5), "image/jpeg"), 422, "IMAGE_CORRUPT"],
        ["truncated png", () => upload(token, truncated(png, 0.7), "image/png"), 422, "IMAGE_CORRUPT"],
        ["over-size, declared length", () => upload(token, oversize, "image/jpeg"), 413, "IMAGE_TOO_LARGE"],
        ["over-size, streamed", () => upload(token, Readable.from([oversize.subarray(0, 100_000), oversize.subarray(100_000)]), "image/jpeg"), 413, "IMAGE_TOO_LARGE"],
        ["30000×30000 bomb", () => upload(token, pngBomb(30_000, 30_000), "image/png"), 413, "IMAGE_DIMENSIONS"],
        ["no token", () => upload(undefined, png, "image/png"), 401, "UNAUTHENTICATED"],
        ["bad token", () => upload("not-a-token", png, "image/png"), 401, "UNAUTHENTICATED"],
      ];
      for (const [what, run, status, code] of cases) {
        const r = await run();
        expect([r.status, r.body.error?.code], what).toEqual([status, code]);
        expect(r.body.error?.temporary, what).toBe(false);
      }
      // An upload cut off half-way (the client goes away) leaves nothing either.
      await new Promise<void>((resolve) => {
        const req = http.request(`${base()}/images`, {
          method: "POST",
          headers: { authorization: `Bearer ${token}`, "content-type": "image/jpeg", "content-length": String(jpeg.length) },
        });
        req.on("error", () => resolve());
        req.on("close", () => resolve());
        req.write(jpeg.subarray(0, Math.floor(jpeg.length / 2)), () => setTimeout(() => req.destroy(), 100));
      });
      await sleep(300);
      expect(await o.countBlobs()).toBe(before);
      // Still healthy: it answers, and a good upload works.
      expect((await fetch(`${base()}/healthz`)).status).toBe(200);
      await uploadOk("mallory", png, "image/png");
      expect(await o.countBlobs()).toBe(before + 2);
    });

    it("only the uploader and members of a conversation it was sent to can fetch an image, even with its id", async () => {
      const alice = await client("alice", "acl");
      const dm = convOf(await alice.request({ type: "dm.open", peer: "bob" }));
      const sent = await uploadOk("alice", await makeImage("image/jpeg", { width: 50, height: 50 }), "image/jpeg");
      const unsent = await uploadOk("alice", await makeImage("image/png", { width: 50, height: 50 }), "image/png");
      await alice.request({ type: "send", conv: dm.id, cid: "acl-1", text: "for bob", images: [sent.id] });
      const [bob, dave, alicet] = await Promise.all(["bob", "dave", "alice"].map((u) => o.node.token(u)));
      const status = async (token: string | undefined, id: string, variant: "full" | "thumb") => {
        const res = await fetchAs(token, id, variant);
        const json = res.headers.get("content-type")?.startsWith("application/json") ?? false;
        const body = json ? ((await res.json()) as HttpAnswer["body"]) : {};
        if (!json) await res.arrayBuffer();
        return [res.status, body.error?.code ?? "ok"];
      };
      for (const variant of ["full", "thumb"] as const) {
        expect(await status(bob, sent.id, variant)).toEqual([200, "ok"]);
        expect(await status(alicet, sent.id, variant)).toEqual([200, "ok"]);
        // Not a member: the same answer as for an id that does not exist.
        expect(await status(dave, sent.id, variant)).toEqual([404, "IMAGE_NOT_FOUND"]);
        expect(await status(dave, `img_${randomBytes(16).toString("base64url")}`, variant)).toEqual([404, "IMAGE_NOT_FOUND"]);
        expect(await status(undefined, sent.id, variant)).toEqual([401, "UNAUTHENTICATED"]);
        expect(await status("forged", sent.id, variant)).toEqual([401, "UNAUTHENTICATED"]);
        // Not sent anywhere yet: the uploader only.
        expect(await status(alicet, unsent.id, variant)).toEqual([200, "ok"]);
        expect(await status(bob, unsent.id, variant)).toEqual([404, "IMAGE_NOT_FOUND"]);
      }
      expect(await status(bob, encodeURIComponent("../../etc/passwd"), "full")).toEqual([404, "IMAGE_NOT_FOUND"]);
      expect(await status(bob, encodeURIComponent(`${sent.id}/../${sent.id}`), "full")).toEqual([404, "IMAGE_NOT_FOUND"]);
      expect(await status(bob, sent.id, "original" as "full")).toEqual([404, "IMAGE_NOT_FOUND"]);
      // Nobody but the uploader can attach an upload, not even a member who saw it.
      const daveWs = await client("dave", "acl");
      const daveDm = convOf(await daveWs.request({ type: "dm.open", peer: "alice" }));
      for (const id of [sent.id, unsent.id]) {
        expect(await daveWs.request({ type: "send", conv: daveDm.id, cid: `steal-${id}`, text: "", images: [id] })).toMatchObject({ type: "error", code: "IMAGE_NOT_FOUND" });
      }
      const bobWs = await client("bob", "acl");
      expect(await bobWs.request({ type: "send", conv: dm.id, cid: "bob-forward", text: "", images: [sent.id] })).toMatchObject({ type: "error", code: "IMAGE_NOT_FOUND" });
      // At most maxPerMessage images, each once.
      const many = Array.from({ length: o.maxPerMessage + 1 }, () => `img_${randomBytes(16).toString("base64url")}`);
      expect(await alice.request({ type: "send", conv: dm.id, cid: "many", text: "", images: many })).toMatchObject({ type: "error", code: "TOO_MANY_IMAGES" });
      expect(await alice.request({ type: "send", conv: dm.id, cid: "twice", text: "", images: [sent.id, sent.id] })).toMatchObject({ type: "error", code: "BAD_FRAME" });
    });

    it("removes an upload never attached after images.orphanAfterSec, and keeps attached ones", async () => {
      const alice = await client("alice", "orphans");
      const dm = convOf(await alice.request({ type: "dm.open", peer: "erin" }));
      const orphan = await uploadOk("alice", await makeImage("image/webp", { width: 64, height: 64 }), "image/webp");
      // Its record's TTL started before the upload returned: measuring from here never counts too much.
      const t0 = Date.now();
      const kept = await uploadOk("alice", await makeImage("image/png", { width: 64, height: 64 }), "image/png");
      expect(await alice.request({ type: "send", conv: dm.id, cid: "kept-1", text: "", images: [kept.id] })).toMatchObject({ type: "ack" });
      const blobs = o.node.node.blobs;
      expect(await blobs.stat(`images/${orphan.id}/full`)).not.toBeNull();
      await expect
        .poll(async () => [await blobs.stat(`images/${orphan.id}/full`), await blobs.stat(`images/${orphan.id}/thumb`)], {
          timeout: (o.orphanAfterSec + 15) * 1000,
          interval: 250,
        })
        .toEqual([null, null]);
      expect(Date.now() - t0).toBeGreaterThanOrEqual((o.orphanAfterSec - 1) * 1000);
      // Its record is gone: it cannot be attached any more.
      expect(await alice.request({ type: "send", conv: dm.id, cid: "late", text: "", images: [orphan.id] })).toMatchObject({ type: "error", code: "IMAGE_NOT_FOUND" });
      // The attached one outlives its own record's expiry (orphanAfterSec after the attach renewed it)
      // and still opens: wait until that expiry's marker is written and the sweeper has acknowledged it.
      const jsm = await o.node.ops();
      const uploads = names.kvStream(names.uploadsBucket);
      const keptMarker = async () => {
        const last = await jsm.direct.getMessage(uploads, { last_by_subj: kvKeySubject(names.uploadsBucket, kept.id) }).catch(() => null);
        return last?.header?.get("Nats-Marker-Reason") === "MaxAge" ? last.seq : 0;
      };
      await expect.poll(keptMarker, { timeout: (o.orphanAfterSec + 15) * 1000, interval: 250 }).toBeGreaterThan(0);
      const markerSeq = await keptMarker();
      await expect
        .poll(async () => (await jsm.consumers.info(uploads, names.uploadsSweeperConsumer)).ack_floor.stream_seq)
        .toBeGreaterThanOrEqual(markerSeq);
      expect(await blobs.stat(`images/${kept.id}/full`)).not.toBeNull();
      expect((await fetchAs(await o.node.token("erin"), kept.id, "thumb")).status).toBe(200);
    });
  });
}
