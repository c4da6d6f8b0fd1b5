// Upload limits on a real edge: a trickling upload (a few bytes every second) is cut at the
// deadline with 408 UPLOAD_TIMEOUT and frees its place — with every place held by tricklers a
// new upload is refused, after their cut one succeeds — and a user's uploads in progress are
// capped (RATE_LIMITED) while other users upload.
import http from "node:http";
import { describe, expect, it, onTestFinished } from "vitest";
import { useNats } from "./harness/nats.ts";
import { makeImage } from "./support/images.ts";
import { testConfig, useNode } from "./support/node.ts";

const MAX_CONCURRENT = 1;
/** Uploads admitted at once per edge: maxConcurrent processing, 8× that many reading or waiting. */
const PLACES = 9 * MAX_CONCURRENT;
const PER_USER = 2;
const DEADLINE_SEC = 3;

const nats = useNats();
const node = useNode(() => testConfig(nats.url, { images: { maxConcurrent: MAX_CONCURRENT, maxUploadsPerUser: PER_USER, uploadTimeoutSec: DEADLINE_SEC } }));

interface Answer {
  status: number;
  code: string | undefined;
  message: string | undefined;
}

/** An upload that announces 100 KB and sends 16 bytes a second; `answer` is the server's. */
async function trickle(user: string): Promise<{ answer: Promise<Answer> }> {
  const token = await node.token(user);
  return new Promise((resolve) => {
    let body = "";
    const req = http.request(`${node.url}/images`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "image/png", "content-length": "100000" },
    });
    const drip = setInterval(() => req.write(Buffer.alloc(16, 7)), 1000);
    const answer = new Promise<Answer>((done) => {
      req.on("response", (res) => {
        res.on("data", (d: Buffer) => (body += d.toString()));
        res.on("end", () => {
          clearInterval(drip);
          const error = (JSON.parse(body) as { error?: { code: string; message: string } }).error;
          done({ status: res.statusCode ?? 0, code: error?.code, message: error?.message });
        });
      });
    });
    req.on("error", () => clearInterval(drip)); // writes after the server closed
    onTestFinished(() => {
      clearInterval(drip);
      req.destroy();
    });
    // The headers and first bytes are on their way: the edge admits the upload when they arrive.
    req.write(Buffer.alloc(16, 7), () => resolve({ answer }));
  });
}

async function upload(user: string): Promise<Answer> {
  const res = await fetch(`${node.url}/images`, {
    method: "POST",
    headers: { authorization: `Bearer ${await node.token(user)}`, "content-type": "image/png" },
    body: new Uint8Array(await makeImage("image/png", { width: 40, height: 30 })),
  });
  const body = (await res.json()) as { error?: { code: string; message: string } };
  return { status: res.status, code: body.error?.code, message: body.error?.message };
}

describe("uploads", () => {
  it("cuts trickling uploads at the deadline with 408 UPLOAD_TIMEOUT, and the places they held take new uploads again", async () => {
    const tricklers = await Promise.all(Array.from({ length: PLACES }, (_, i) => trickle(`trickler_${i}`)));
    // Every place is held by a trickler: a new upload is refused (the edge has admitted them all).
    await expect
      .poll(async () => {
        const a = await upload("latecomer");
        return a.status === 429 ? a.message : `answered ${a.status}`;
      })
      .toBe("too many images are being uploaded; retry later");
    // Each trickler is told it was too slow, at the deadline (its body was never complete).
    for (const a of await Promise.all(tricklers.map((t) => t.answer))) {
      expect(a).toEqual({ status: 408, code: "UPLOAD_TIMEOUT", message: `the upload did not arrive within ${DEADLINE_SEC} s` });
    }
    // Their places are free again.
    expect(await upload("latecomer")).toMatchObject({ status: 201 });
  });

  it("refuses a user's upload past images.maxUploadsPerUser with RATE_LIMITED while other users upload", async () => {
    const tricklers = await Promise.all(Array.from({ length: PER_USER }, () => trickle("busy_user")));
    await expect.poll(async () => (await upload("busy_user")).message).toBe(`at most ${PER_USER} uploads of one user at once; retry when one is done`);
    expect(await upload("other_user")).toMatchObject({ status: 201 });
    for (const a of await Promise.all(tricklers.map((t) => t.answer))) expect(a).toMatchObject({ status: 408, code: "UPLOAD_TIMEOUT" });
    expect(await upload("busy_user")).toMatchObject({ status: 201 });
  });
});
