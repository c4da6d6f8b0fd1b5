// Tokens on a real node: `exp`, `sub` and `iat` required and a maximum age (4401 on the socket,
// 401 over HTTP); at expiry a socket is told `token.expired` and closed 4401 unless it sends a
// fresh token of its user within the grace; `natter revoke` (the command itself) refuses the
// user's older tokens at hello and over HTTP and closes the user's open sockets 4401 (also on an
// edge that was cut off from NATS when it was written, once it is back); an empty
// edge.allowedOrigins lets in the edge's own host only; `natter start --dev` refuses to serve
// development tokens on a public address.
import { execFile, spawn } from "node:child_process";
import { promisify } from "node:util";
import { SignJWT } from "jose";
import { beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { WebSocket } from "ws";
import { REPO_ROOT } from "../config/index.ts";
import { silentLogger } from "../core/logger.ts";
import { Revocations } from "../edge/index.ts";
import { useNats } from "./harness/nats.ts";
import { TEST_SECRET, testConfig, useNode } from "./support/node.ts";
import { startTcpProxy, type TcpProxy } from "./support/tcp-proxy.ts";
import { TestClient } from "./support/ws-client.ts";

const GRACE_SEC = 2;
const MAX_AGE_SEC = 3600;
const nats = useNats();
const auth = { jwtSecret: TEST_SECRET, tokenTtlSec: 600, maxTokenAgeSec: MAX_AGE_SEC, expiryGraceSec: GRACE_SEC };
const node = useNode(() => testConfig(nats.url, { auth }));
// A second node whose NATS connection goes through a proxy the test can cut.
let natsProxy: TcpProxy;
beforeAll(async () => {
  natsProxy = await startTcpProxy(nats.url);
  return () => natsProxy.close();
});
const cutOff = useNode(() => testConfig(`nats://127.0.0.1:${new URL(natsProxy.url).port}`, { auth, workers: { enabled: false } }));

const now = () => Math.floor(Date.now() / 1000);

/** A token with exactly these claims (any may be left out), signed with the node's secret. */
function signed(claims: { sub?: string; iat?: number; exp?: number }): Promise<string> {
  const jwt = new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setIssuer("natter").setAudience("natter");
  if (claims.sub !== undefined) jwt.setSubject(claims.sub);
  if (claims.iat !== undefined) jwt.setIssuedAt(claims.iat);
  if (claims.exp !== undefined) jwt.setExpirationTime(claims.exp);
  return jwt.sign(new TextEncoder().encode(TEST_SECRET));
}

async function connect(token: string, device = "d"): Promise<TestClient> {
  const c = await TestClient.connect(node.url, { token, device });
  onTestFinished(() => c.close());
  return c;
}

/** The close code a hello with `token` gets (the socket is closed without a welcome). */
async function helloClose(token: string): Promise<number> {
  const c = await TestClient.connect(node.url, { token, device: "d", expectClose: true });
  const { code } = await c.closed;
  expect(c.frames.filter((f) => f.type === "welcome")).toEqual([]);
  return code;
}

/** Status and error code of an authenticated HTTP request (an image fetch: it needs only the token). */
async function httpAs(token: string): Promise<[number, string | undefined]> {
  const res = await fetch(`${node.url}/images/img_AAAAAAAAAAAAAAAAAAAAAA/thumb`, { headers: { authorization: `Bearer ${token}` } });
  const body = (await res.json()) as { error?: { code: string } };
  return [res.status, body.error?.code];
}

describe("token claims", () => {
  it.each([
    ["without exp", { sub: "claims_a", iat: now() }],
    ["without sub", { iat: now(), exp: now() + 600 }],
    ["without iat", { sub: "claims_a", exp: now() + 600 }],
    ["older than auth.maxTokenAgeSec, whatever its exp", { sub: "claims_a", iat: now() - MAX_AGE_SEC - 5, exp: now() + 600 }],
    ["expired", { sub: "claims_a", iat: now() - 60, exp: now() - 1 }],
  ])("refuses a token %s: 4401 on the socket, 401 UNAUTHENTICATED over HTTP", async (_what, claims) => {
    const token = await signed(claims);
    expect(await helloClose(token)).toBe(4401);
    expect(await httpAs(token)).toEqual([401, "UNAUTHENTICATED"]);
  });

  it("takes one with sub, iat and exp", async () => {
    const token = await signed({ sub: "claims_ok", iat: now(), exp: now() + 600 });
    expect((await connect(token)).frames[0]).toMatchObject({ type: "welcome", user: "claims_ok" });
    expect(await httpAs(token)).toEqual([404, "IMAGE_NOT_FOUND"]);
  });
});

describe("token expiry on a live socket", () => {
  it("tells the socket, closes it 4401 when no fresh token comes within the grace, and keeps one that sent a fresh token", async () => {
    // Two sockets of one user on tokens that expire at the same second: one refreshes, one does not.
    const exp = now() + 2;
    const stale = await connect(await signed({ sub: "exp_a", iat: now(), exp }), "stale");
    const fresh = await connect(await signed({ sub: "exp_a", iat: now(), exp }), "fresh");
    const peer = await connect(await signed({ sub: "exp_b", iat: now(), exp: now() + 600 }));
    const dm = (await peer.request({ type: "dm.open", peer: "exp_a" })).conv as { id: string };

    for (const c of [stale, fresh]) {
      expect(await c.waitFor((f) => f.type === "token.expired", 10_000)).toEqual({ type: "token.expired", graceMs: GRACE_SEC * 1000 });
    }
    const renewed = await fresh.request({ type: "token", token: await signed({ sub: "exp_a", iat: now(), exp: now() + 600 }) });
    expect(renewed).toMatchObject({ type: "token", user: "exp_a", exp: expect.any(Number) });

    // The grace ran out for both: the stale socket is told why and closed 4401.
    expect((await stale.closed).code).toBe(4401);
    expect(stale.frames.at(-1)).toMatchObject({ type: "error", code: "UNAUTHENTICATED" });
    // The refreshed one is still open and delivers.
    expect(fresh.ws.readyState).toBe(WebSocket.OPEN);
    const ack = await peer.request({ type: "send", conv: dm.id, cid: "after-grace", text: "still here?" });
    expect(await fresh.waitFor((f) => f.type === "msg" && f.id === ack.id)).toMatchObject({ text: "still here?" });
  });

  it("refuses a fresh token of another user: the socket keeps its own token (and its expiry)", async () => {
    const c = await connect(await signed({ sub: "swap_a", iat: now(), exp: now() + 600 }));
    const other = await c.request({ type: "token", token: await signed({ sub: "swap_b", iat: now(), exp: now() + 600 }) });
    expect(other).toMatchObject({ type: "error", code: "UNAUTHENTICATED", temporary: false, message: expect.stringContaining("another user") });
    expect(await c.request({ type: "ping" })).toMatchObject({ type: "pong" });
    // Still alice's socket: its welcome said so, and a conversation opened now is swap_a's.
    expect(((await c.request({ type: "dm.open", peer: "swap_c" })).conv as { members: string[] }).members).toEqual(["swap_a", "swap_c"]);
  });
});

describe("natter revoke", () => {
  it("closes the user's open sockets 4401, refuses its older tokens at hello and over HTTP, and takes a token issued after", async () => {
    const old = await signed({ sub: "rev_a", iat: now(), exp: now() + 600 });
    const phone = await connect(old, "phone");
    const laptop = await connect(old, "laptop");
    const bystander = await connect(await signed({ sub: "rev_b", iat: now(), exp: now() + 600 }));

    const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", "bin/natter.ts", "revoke", "rev_a"], {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, NATTER_NATS__SERVERS: nats.url, NATTER_LOG__LEVEL: "warn", NATTER_LOG__PRETTY: "false" },
    });
    const before = /issued before (\S+)/.exec(stdout)?.[1];
    expect(before, stdout).toBeDefined();
    const notBefore = Date.parse(before!) / 1000;

    for (const c of [phone, laptop]) {
      expect((await c.closed).code).toBe(4401);
      expect(c.frames.at(-1)).toMatchObject({ type: "error", code: "UNAUTHENTICATED", message: expect.stringContaining("revoked") });
    }
    expect(await bystander.request({ type: "ping" })).toMatchObject({ type: "pong" });
    expect(await helloClose(old)).toBe(4401);
    expect(await httpAs(old)).toEqual([401, "UNAUTHENTICATED"]);

    const renewed = await signed({ sub: "rev_a", iat: notBefore, exp: notBefore + 600 });
    expect((await connect(renewed)).frames[0]).toMatchObject({ type: "welcome", user: "rev_a" });
    expect(await httpAs(renewed)).toEqual([404, "IMAGE_NOT_FOUND"]);
  });

  it("closes a socket on an edge that was cut off from NATS when the revocation was written, once it is back", async () => {
    const token = await signed({ sub: "rev_lost", iat: now(), exp: now() + 600 });
    const c = await TestClient.connect(cutOff.url, { token, device: "d" });
    onTestFinished(() => c.close());
    natsProxy.cut();
    // Written while that edge cannot hear it.
    const ops = await node.opsConnection();
    await new Revocations({ nc: ops.nc, js: ops.jsm.jetstream(), jsm: ops.jsm, log: silentLogger(), maxTokenAgeSec: MAX_AGE_SEC }).revoke("rev_lost", now() + 1);
    expect(c.ws.readyState).toBe(WebSocket.OPEN);
    natsProxy.restore();
    expect((await c.closed).code).toBe(4401);
    expect(c.frames.at(-1)).toMatchObject({ type: "error", code: "UNAUTHENTICATED", message: expect.stringContaining("revoked") });
  });
});

describe("origins", () => {
  /** The close code of a socket opened with this Origin header (or none), or "welcome" once welcomed. */
  async function withOrigin(origin: string | undefined): Promise<number | "welcome"> {
    const token = await signed({ sub: "origin_a", iat: now(), exp: now() + 600 });
    const ws = new WebSocket(`${node.url.replace(/^http/, "ws")}/ws`, origin === undefined ? {} : { origin });
    onTestFinished(() => ws.terminate());
    return new Promise((resolve, reject) => {
      ws.on("open", () => ws.send(JSON.stringify({ type: "hello", v: 1, token, device: "d" })));
      ws.on("message", (d) => JSON.parse(String(d)).type === "welcome" && resolve("welcome"));
      ws.on("close", (code) => resolve(code));
      ws.on("error", reject);
    });
  }

  it("with an empty edge.allowedOrigins, lets in the edge's own host and requests without an Origin, and closes others 4403", async () => {
    const own = new URL(node.url);
    expect(await withOrigin(own.origin)).toBe("welcome");
    expect(await withOrigin(undefined)).toBe("welcome");
    expect(await withOrigin(`http://127.0.0.1:${Number(own.port) + 1}`)).toBe(4403);
    expect(await withOrigin(`https://127.0.0.1:${own.port}`)).toBe("welcome");
    expect(await withOrigin(`http://localhost:${own.port}`)).toBe(4403);
    expect(await withOrigin("https://evil.example")).toBe(4403);
    expect(await withOrigin("null")).toBe(4403);
  });
});

describe("development tokens", () => {
  it("`natter start --dev` on a public address stops at once with CONFIG_INVALID saying why", async () => {
    const proc = spawn(process.execPath, ["--import", "tsx", "bin/natter.ts", "start", "--dev"], {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, NATTER_EDGE__HOST: "0.0.0.0" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    onTestFinished(() => {
      if (proc.exitCode === null) proc.kill("SIGKILL");
    });
    let err = "";
    proc.stderr.on("data", (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((resolve) => proc.on("exit", (c) => resolve(c)));
    expect(code, err).toBe(2);
    expect(err).toContain('auth.devTokens (--dev) is on while edge.host is "0.0.0.0"');
    expect(err).toContain("loopback address only");
  });
});
