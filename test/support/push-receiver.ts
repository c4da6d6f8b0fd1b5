// Stand-ins for the outside world of push notifications: one local HTTP server plays a Web Push
// service and webhook receivers (it records every request and answers with scripted statuses),
// and a browser's side of Web Push (a P-256 key pair and auth secret, and RFC 8291 decryption).
import { createDecipheriv, createECDH, hkdfSync, randomBytes, type ECDH } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";

interface ReceivedPush {
  path: string;
  at: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export interface PushReceiver {
  /** http://127.0.0.1:<port> */
  readonly url: string;
  /** Requests to `path`, in arrival order. */
  requests(path: string): ReceivedPush[];
  /** Answer the next requests to `path` with these statuses, in order (then 201). */
  script(path: string, statuses: number[]): void;
  /** Answer every request to `path` with `status`. */
  always(path: string, status: number): void;
  close(): Promise<void>;
}

export async function startPushReceiver(): Promise<PushReceiver> {
  const received: ReceivedPush[] = [];
  const scripts = new Map<string, number[]>();
  const fixed = new Map<string, number>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const path = req.url ?? "/";
      received.push({ path, at: Date.now(), headers: req.headers, body: Buffer.concat(chunks) });
      const status = scripts.get(path)?.shift() ?? fixed.get(path) ?? 201;
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests: (path) => received.filter((r) => r.path === path),
    script: (path, statuses) => scripts.set(path, [...statuses]),
    always: (path, status) => fixed.set(path, status),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A browser's Web Push subscription keys. */
export interface BrowserKeys {
  ecdh: ECDH;
  auth: Buffer;
  /** As PushSubscription.toJSON() gives them. */
  json: { p256dh: string; auth: string };
}

export function browserKeys(): BrowserKeys {
  const ecdh = createECDH("prime256v1");
  ecdh.generateKeys();
  const auth = randomBytes(16);
  return { ecdh, auth, json: { p256dh: ecdh.getPublicKey().toString("base64url"), auth: auth.toString("base64url") } };
}

const hkdf = (ikm: Buffer, salt: Buffer, info: Buffer, length: number): Buffer => Buffer.from(hkdfSync("sha256", ikm, salt, info, length));

/** Decrypts an aes128gcm Web Push body (RFC 8291 over RFC 8188) as the browser would. */
export function decryptWebPush(body: Buffer, keys: BrowserKeys): string {
  const salt = body.subarray(0, 16);
  const idlen = body[20]!;
  const serverPublic = body.subarray(21, 21 + idlen);
  const record = body.subarray(21 + idlen);
  const shared = keys.ecdh.computeSecret(serverPublic);
  const keyInfo = Buffer.concat([Buffer.from("WebPush: info\0"), keys.ecdh.getPublicKey(), serverPublic]);
  const ikm = hkdf(shared, keys.auth, keyInfo, 32);
  const cek = hkdf(ikm, salt, Buffer.from("Content-Encoding: aes128gcm\0"), 16);
  const nonce = hkdf(ikm, salt, Buffer.from("Content-Encoding: nonce\0"), 12);
  const decipher = createDecipheriv("aes-128-gcm", cek, nonce);
  decipher.setAuthTag(record.subarray(record.length - 16));
  const plain = Buffer.concat([decipher.update(record.subarray(0, record.length - 16)), decipher.final()]);
  // The last record ends with the delimiter 0x02 followed by zero padding.
  let end = plain.length - 1;
  while (end > 0 && plain[end] === 0) end--;
  if (plain[end] !== 2) throw new Error("not a final aes128gcm record");
  return plain.subarray(0, end).toString("utf8");
}
