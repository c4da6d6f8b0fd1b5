// npm run bench:images [-- --count 20 --concurrency 2 --blobs s3|fs --timeout-s 600]
// Uploads `count` images of about 10 MB (16 of 20 are 12-megapixel JPEGs, the rest PNG
// screenshots-sized) through the real path: POST /images on an edge (checked, decoded, stripped,
// re-encoded, thumbnail made, stored in MinIO), then a `send` carrying the image over the
// WebSocket, until the recipient's device receives the message. natter runs in this process
// (started on a fresh nats-server, SQLite, and the test MinIO: `npx tsx scripts/test-servers.ts up`,
// or one started here); the images are made beforehand in a child process so that their
// generation does not count in this process's peak RSS. The edge decodes in child processes
// (media/processor.ts): their peak RSS, summed, is counted apart. Last line:
//   images: count=… upload_to_delivered_ms_p50=… thumb_ms_p50=… peak_rss_mb=… image_procs_peak_rss_mb=…
import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { loadConfig, REPO_ROOT } from "../config/index.ts";
import { silentLogger } from "../core/logger.ts";
import { mintToken } from "../edge/index.ts";
import { startNatter, type NatterNode } from "../runtime/index.ts";
import { findReusableMinio, launchMinio, minioClient, removeBucket, type MinioEndpoint } from "../test/harness/minio.ts";
import { startNats } from "../test/harness/nats.ts";
import { randomId } from "../test/harness/processes.ts";
import { makeImage } from "../test/support/images.ts";
import { TestClient } from "../test/support/ws-client.ts";

const { values } = parseArgs({
  options: {
    count: { type: "string", default: "20" },
    concurrency: { type: "string", default: "2" },
    blobs: { type: "string", default: "s3" },
    "timeout-s": { type: "string", default: "600" },
    /** Internal: make the images into this folder and exit (run as a child process). */
    generate: { type: "string" },
  },
});
const COUNT = Math.max(1, Math.min(Number(values.count), 200));
const CONCURRENCY = Math.max(1, Math.min(Number(values.concurrency), 16));
const DEADLINE = Date.now() + Number(values["timeout-s"]) * 1000;
const say = (line: string) => process.stderr.write(`${line}\n`);

/** Image i: a 4032×3024 JPEG (≈ 10 MB of noisy gradient at quality 97), every fifth a 2200×1600 PNG. */
async function generate(dir: string): Promise<void> {
  for (let i = 0; i < COUNT; i++) {
    const png = i % 5 === 4;
    const data = png
      ? await makeImage("image/png", { width: 2200, height: 1600, noise: 60 })
      : await makeImage("image/jpeg", { width: 4032, height: 3024, noise: 110, quality: 97, gps: i % 2 === 0 });
    writeFileSync(path.join(dir, `${String(i).padStart(3, "0")}.${png ? "png" : "jpg"}`), data);
  }
}

function p50(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.floor((s.length - 1) / 2)]!;
}

async function generateInChild(dir: string): Promise<void> {
  const child = spawn(process.execPath, ["--import", "tsx", "bench/images.ts", "--generate", dir, "--count", String(COUNT)], { cwd: REPO_ROOT, stdio: ["ignore", "inherit", "inherit"] });
  const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  if (code !== 0) throw new Error(`image generation exited with ${code}`);
}

async function main(): Promise<void> {
  const cleanups: (() => Promise<unknown>)[] = [];
  try {
    const imagesDir = mkdtempSync(path.join(os.tmpdir(), "natter-bench-images-"));
    cleanups.push(async () => rmSync(imagesDir, { recursive: true, force: true }));
    const g0 = performance.now();
    await generateInChild(imagesDir);
    const files = readdirSync(imagesDir).sort();
    const sizes = files.map((f) => readFileSync(path.join(imagesDir, f)).length);
    say(`bench:images: made ${files.length} images (${(sizes.reduce((a, b) => a + b, 0) / files.length / 1e6).toFixed(1)} MB on average) in ${Math.round(performance.now() - g0)} ms`);

    const nats = await startNats();
    cleanups.push(() => nats.stop());
    let blobs: Record<string, unknown> = { kind: "fs" };
    if (values.blobs === "s3") {
      let endpoint: MinioEndpoint;
      const reuse = await findReusableMinio();
      if (reuse) {
        endpoint = reuse.endpoint;
        say(`bench:images: MinIO ${endpoint.url} (${reuse.source})`);
      } else {
        const server = await launchMinio({ dir: mkdtempSync(path.join(os.tmpdir(), "natter-bench-minio-")) });
        cleanups.push(() => server.stop());
        endpoint = server.endpoint;
        say(`bench:images: started MinIO ${endpoint.url}`);
      }
      const bucket = `bench-${randomId(12)}`;
      cleanups.push(() => removeBucket(minioClient(endpoint), bucket));
      blobs = { kind: "s3", endPoint: endpoint.endPoint, port: endpoint.port, useSSL: endpoint.useSSL, accessKey: endpoint.accessKey, secretKey: endpoint.secretKey, bucket };
    }
    const dataDir = mkdtempSync(path.join(os.tmpdir(), "natter-bench-node-"));
    cleanups.push(async () => rmSync(dataDir, { recursive: true, force: true }));
    const cfg = loadConfig({
      env: {},
      overrides: {
        dataDir,
        log: { level: "warn" },
        nats: { servers: [nats.url] },
        auth: { jwtSecret: randomBytes(32).toString("base64url") },
        edge: { port: 0 },
        workers: { httpPort: 0 },
        blobs,
        images: { maxConcurrent: CONCURRENCY },
      },
    });
    const node: NatterNode = await startNatter(cfg, silentLogger());
    cleanups.push(() => node.close());
    const token = (user: string) => mintToken(node.tokens, user);
    const alice = await TestClient.connect(node.url, { token: await token("alice"), device: "bench" });
    const bob = await TestClient.connect(node.url, { token: await token("bob"), device: "bench" });
    cleanups.push(() => alice.close(), () => bob.close());
    const conv = (await alice.request({ type: "dm.open", peer: "bob" })).conv as { id: string };
    const aliceToken = await token("alice");

    const rssBeforeMb = Math.round(process.resourceUsage().maxRSS / 1024);
    const latencies: number[] = [];
    let next = 0;
    const worker = async () => {
      while (next < files.length) {
        if (Date.now() > DEADLINE) throw new Error("bench:images: over --timeout-s");
        const i = next++;
        const file = files[i]!;
        const data = readFileSync(path.join(imagesDir, file));
        const t0 = performance.now();
        const res = await fetch(`${node.url}/images`, {
          method: "POST",
          headers: { authorization: `Bearer ${aliceToken}`, "content-type": file.endsWith(".png") ? "image/png" : "image/jpeg" },
          body: data,
          signal: AbortSignal.timeout(Math.max(1, DEADLINE - Date.now())),
        });
        const body = (await res.json()) as { image?: { id: string }; error?: { code: string } };
        if (res.status !== 201 || !body.image) throw new Error(`upload of ${file} failed: ${res.status} ${JSON.stringify(body)}`);
        const cid = `img-${i}`;
        const delivered = bob.waitFor((f) => f.type === "msg" && f.cid === cid, Math.max(1, DEADLINE - Date.now()));
        const ack = await alice.request({ type: "send", conv: conv.id, cid, text: file, images: [body.image.id] });
        if (ack.type !== "ack") throw new Error(`send of ${file} failed: ${JSON.stringify(ack)}`);
        await delivered;
        latencies.push(performance.now() - t0);
      }
    };
    const r0 = performance.now();
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    const wall = performance.now() - r0;
    const timings = node.images!.timings;
    const peakRssMb = Math.round(process.resourceUsage().maxRSS / 1024);
    const procsPeakMb = imageProcessesPeakRssMb();
    say(
      `bench:images: ${files.length} images through ${values.blobs} blobs, ${CONCURRENCY} at a time, in ${Math.round(wall)} ms; ` +
        `upload→delivered p50 ${Math.round(p50(latencies))} ms (max ${Math.round(Math.max(...latencies))}); re-encode p50 ${Math.round(p50(timings.map((t) => t.fullMs)))} ms; peak RSS before the first upload ${rssBeforeMb} MB`,
    );
    console.log(
      `images: count=${latencies.length} upload_to_delivered_ms_p50=${Math.round(p50(latencies))} thumb_ms_p50=${Math.round(p50(timings.map((t) => t.thumbMs)))} peak_rss_mb=${peakRssMb} image_procs_peak_rss_mb=${procsPeakMb}`,
    );
  } finally {
    for (const c of cleanups.reverse()) await c().catch((err: unknown) => say(`cleanup failed: ${(err as Error).message}`));
  }
}

/** The peak RSS (VmHWM) of this process's image-processing children, summed, in MB. */
function imageProcessesPeakRssMb(): number {
  let pids: number[];
  try {
    pids = execFileSync("pgrep", ["-P", String(process.pid), "-f", "process-child-entry"]).toString().trim().split("\n").map(Number);
  } catch {
    return 0; // none running
  }
  let kb = 0;
  for (const pid of pids) kb += Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0);
  return Math.round(kb / 1024);
}

if (values.generate !== undefined) {
  await generate(values.generate);
} else {
  await main();
}
