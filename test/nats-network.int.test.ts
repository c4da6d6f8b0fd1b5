// Someone on the network (docs/security.md, "NATS identities"): TLS between natter and NATS with a
// CA made here (openssl), with client certificates (verify: true): natter's edge and workers
// connect with nats.tls and chat; a client that does not trust the CA, or shows no certificate,
// is refused. Between NATS nodes: routes authenticate (a server without the route user's password
// cannot join) and can use TLS with verify.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { connect } from "@nats-io/transport-node";
import { afterAll, describe, expect, it, onTestFinished, vi } from "vitest";
import { loadConfig } from "../config/index.ts";
import { silentLogger } from "../core/logger.ts";
import { connectRole } from "../nats/index.ts";
import { startNats, startNatsCluster, testNatsCredentials, TEST_NATS_USERS, useNats } from "./harness/nats.ts";
import { testConfig, useNode } from "./support/node.ts";
import { TestClient } from "./support/ws-client.ts";

/** openssl, or a clear error: the certificates are made with it. */
function openssl(args: string[], cwd: string): void {
  try {
    execFileSync("openssl", args, { cwd, stdio: "pipe" });
  } catch (err) {
    const e = err as { code?: string; stderr?: Buffer };
    if (e.code === "ENOENT") throw new Error("openssl is not installed: the TLS tests make their CA with it (apt-get install openssl)");
    throw new Error(`openssl ${args.join(" ")}: ${String(e.stderr ?? err)}`);
  }
}

/** A CA, and a certificate it signed for 127.0.0.1/localhost that serves as server and as client certificate. */
function makePki(): { dir: string; ca: string; cert: string; key: string } {
  const dir = mkdtempSync(path.join(os.tmpdir(), "natter-pki-"));
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  openssl(["req", "-x509", ...ec, "-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "1", "-subj", "/CN=natter test CA",
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"], dir);
  openssl(["req", ...ec, "-keyout", "node-key.pem", "-out", "node.csr", "-subj", "/CN=localhost"], dir);
  writeFileSync(
    path.join(dir, "node.ext"),
    "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n",
  );
  openssl(["x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial", "-out", "node.pem", "-days", "1", "-extfile", "node.ext"], dir);
  return { dir, ca: path.join(dir, "ca.pem"), cert: path.join(dir, "node.pem"), key: path.join(dir, "node-key.pem") };
}

const pki = makePki();
afterAll(() => rmSync(pki.dir, { recursive: true, force: true }));
const tlsBlock = `tls {\n  cert_file: ${JSON.stringify(pki.cert)}\n  key_file: ${JSON.stringify(pki.key)}\n  ca_file: ${JSON.stringify(pki.ca)}\n  verify: true\n}`;

const serverLog: string[] = [];
const nats = useNats({ extraConfig: tlsBlock, log: (line) => serverLog.push(line) });
const tls = { caFile: pki.ca, certFile: pki.cert, keyFile: pki.key };
const node = useNode(() => testConfig(nats.url, { nats: { servers: [nats.url], credentials: testNatsCredentials(), tls } }));

const natsConfig = (t: Record<string, unknown> | undefined) =>
  loadConfig({ env: {}, overrides: { nats: { servers: [nats.url], credentials: testNatsCredentials(), ...(t ? { tls: t } : {}) } } }).nats;
/** natter's own connect (as the edge) with these TLS settings: its error, or "connected". */
async function edgeConnect(t: Record<string, unknown> | undefined): Promise<string> {
  try {
    const nc = await connectRole({ nats: natsConfig(t), servers: [nats.url], role: "edge", name: "probe", log: silentLogger() });
    await nc.close();
    return "connected";
  } catch (err) {
    const cause = (err as { cause?: { cause?: { code?: string }; code?: string } }).cause;
    return `${(err as Error).message} [${cause?.cause?.code ?? cause?.code ?? ""}]`;
  }
}

describe("TLS between natter and NATS", () => {
  it("natter's edge and workers connect over TLS with their certificate, and chat", async () => {
    const alice = await TestClient.connect(node.url, { token: await node.token("alice"), device: "d" });
    onTestFinished(() => alice.close());
    const bob = await TestClient.connect(node.url, { token: await node.token("bob"), device: "d" });
    onTestFinished(() => bob.close());
    const dm = (await alice.request({ type: "dm.open", peer: "bob" })).conv as { id: string };
    const ack = await alice.request({ type: "send", conv: dm.id, cid: "t1", text: "over TLS" });
    await bob.waitFor((f) => f.type === "msg" && f.id === ack.id);
    const connz = (await (await fetch(`${nats.monitorUrl}/connz?auth=true`)).json()) as { connections: { name?: string; tls_version?: string; authorized_user?: string }[] };
    const natter = connz.connections.filter((c) => c.name === "natter-edge" || c.name === "natter-workers");
    expect(natter.map((c) => [c.name, c.authorized_user]).sort()).toEqual([
      ["natter-edge", TEST_NATS_USERS.edge.user],
      ["natter-workers", TEST_NATS_USERS.workers.user],
    ]);
    for (const c of natter) expect(c.tls_version, c.name).toMatch(/^1\.[23]$/);
  });

  it("refuses a client that does not trust the CA, or shows no certificate; natter names nats.tls", async () => {
    expect(await edgeConnect(tls)).toBe("connected");
    // TLS with the system's CAs only: the server's certificate is not trusted.
    expect(await edgeConnect({ enabled: true })).toMatch(/^TLS to NATS at .* failed .*check nats\.tls .*\[(SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)\]$/);
    // No TLS settings at all: nats.js follows the server to TLS and fails the same check.
    expect(await edgeConnect(undefined)).toMatch(/^TLS to NATS at .* failed/);
    // The CA but no client certificate: the server (verify: true) refuses the handshake and says
    // why in its log (nats.js sees only a closed socket, and gives up at its connect timeout).
    await expect(connect({ servers: nats.url, user: TEST_NATS_USERS.ops.user, pass: TEST_NATS_USERS.ops.password, tls: { caFile: pki.ca }, timeout: 2000 })).rejects.toThrow(/timeout/);
    await vi.waitFor(() => expect(serverLog.join("\n")).toContain("TLS handshake error: tls: client didn't provide a certificate"), { timeout: 10_000, interval: 100 });
    expect(nats.violations()).toEqual([]);
  });
});

describe("routes between NATS nodes", () => {
  it("a server without the route user's password cannot join the cluster", async () => {
    await using cluster = await startNatsCluster(3);
    await cluster.waitForMeta();
    const lines: string[] = [];
    await using intruder = await startNats({
      auth: "none",
      jetstream: false,
      extraConfig: `cluster {\n  name: natter-test\n  listen: "127.0.0.1:-1"\n  routes: [${JSON.stringify(cluster.nodes[0]!.clusterUrl)}]\n}`,
      log: (line) => lines.push(line),
    });
    // The cause, from the intruder's side: its route was refused for its (missing) credentials.
    await vi.waitFor(() => expect(lines.join("\n")).toMatch(/Authorization Violation/), { timeout: 20_000, interval: 100 });
    const routez = (await (await fetch(`${intruder.monitorUrl}/routez`)).json()) as { num_routes: number };
    expect(routez.num_routes).toBe(0);
    const members = (await (await fetch(`${cluster.nodes[0]!.monitorUrl}/routez`)).json()) as { routes: { remote_name?: string }[] };
    expect(new Set(members.routes.map((r) => r.remote_name))).toEqual(new Set(["n2", "n3"]));
  });

  it("routes can use TLS with verify: the cluster forms on certificates from the CA", async () => {
    await using cluster = await startNatsCluster(3, { clusterConfig: tlsBlock.replace(/^/gm, "  ") });
    await cluster.waitForMeta();
    for (const n of cluster.nodes) {
      const varz = (await (await fetch(`${n.monitorUrl}/varz`)).json()) as { cluster?: { tls_required?: boolean; tls_verify?: boolean } };
      expect(varz.cluster, n.name).toMatchObject({ tls_required: true, tls_verify: true });
    }
  });
});
