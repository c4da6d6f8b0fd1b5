// Target rules for client-supplied push URLs (SSRF), and the guarded HTTP client that applies
// them again when a host name resolves.
import http from "node:http";
import type { AddressInfo } from "node:net";
import { describe, expect, it, onTestFinished } from "vitest";
import { NatterError } from "../core/errors.ts";
import { GuardedHttp, retryAfterMs } from "./http.ts";
import { checkAddresses, checkTargetUrl, isPublicAddress, MAX_TARGET_URL_LENGTH } from "./targets.ts";

const strict = { allowHosts: [] };
const dev = { allowHosts: ["127.0.0.1"] };

function refused(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(NatterError);
    expect((err as NatterError).code).toBe("PUSH_TARGET_REFUSED");
    return (err as NatterError).message;
  }
  throw new Error("expected PUSH_TARGET_REFUSED");
}

describe("checkTargetUrl", () => {
  it("accepts https URLs of public hosts", () => {
    expect(checkTargetUrl("https://fcm.googleapis.com/fcm/send/abc:def", strict).hostname).toBe("fcm.googleapis.com");
    expect(checkTargetUrl("https://updates.push.services.mozilla.com/wpush/v2/gAAAA", strict).protocol).toBe("https:");
    expect(checkTargetUrl("https://hooks.example.com:8443/natter?x=1", strict).port).toBe("8443");
    expect(checkTargetUrl("https://8.8.8.8/hook", strict).hostname).toBe("8.8.8.8");
    expect(checkTargetUrl("https://[2606:4700:4700::1111]/hook", strict).hostname).toBe("[2606:4700:4700::1111]");
  });

  it("refuses anything but https, unless the host is allowed", () => {
    expect(refused(() => checkTargetUrl("http://hooks.example.com/x", strict))).toMatch(/https/);
    refused(() => checkTargetUrl("ftp://hooks.example.com/x", strict));
    refused(() => checkTargetUrl("file:///etc/passwd", strict));
    refused(() => checkTargetUrl("javascript:alert(1)", strict));
    refused(() => checkTargetUrl("http://127.0.0.1:9/x", strict));
    expect(checkTargetUrl("http://127.0.0.1:9/x", dev).port).toBe("9");
    // The allowance is per host: another loopback spelling is still refused.
    refused(() => checkTargetUrl("http://127.0.0.2:9/x", dev));
    refused(() => checkTargetUrl("http://localhost:9/x", dev));
  });

  it("refuses private, loopback, link-local and reserved addresses, however they are spelled", () => {
    for (const url of [
      "https://127.0.0.1/",
      "https://10.1.2.3/",
      "https://172.16.0.1/",
      "https://192.168.1.1/",
      "https://169.254.169.254/latest/meta-data/", // cloud metadata
      "https://100.64.0.1/",
      "https://0.0.0.0/",
      "https://224.0.0.1/",
      "https://255.255.255.255/",
      "https://2130706433/", // 127.0.0.1 as one number
      "https://0x7f.0.0.1/",
      "https://017700000001/",
      "https://[::1]/",
      "https://[::]/",
      "https://[fe80::1]/",
      "https://[fd00::1]/",
      "https://[::ffff:127.0.0.1]/",
      "https://[::ffff:a9fe:a9fe]/", // 169.254.169.254, IPv4-mapped
      "https://[64:ff9b::a00:1]/", // 10.0.0.1 through NAT64
    ]) {
      expect(refused(() => checkTargetUrl(url, strict)), url).toMatch(/public address/);
    }
  });

  it("refuses local-only names, credentials, non-URLs and overlong URLs", () => {
    for (const url of ["https://localhost/", "https://foo.localhost/", "https://printer.local/", "https://metadata.google.internal/", "https://intranet/", "https://router.home.arpa/"]) {
      expect(refused(() => checkTargetUrl(url, strict)), url).toMatch(/public host name/);
    }
    expect(refused(() => checkTargetUrl("https://user:pass@hooks.example.com/", strict))).toMatch(/credentials/);
    expect(refused(() => checkTargetUrl("not a url", strict))).toMatch(/not a URL/);
    const long = `https://hooks.example.com/${"a".repeat(MAX_TARGET_URL_LENGTH)}`;
    expect(refused(() => checkTargetUrl(long, strict))).toMatch(/longer than/);
  });
});

describe("addresses", () => {
  it("tells public from non-public addresses", () => {
    for (const ip of ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]) expect(isPublicAddress(ip), ip).toBe(true);
    for (const ip of ["127.0.0.1", "10.0.0.1", "172.31.255.255", "192.168.0.1", "169.254.1.1", "::1", "fc00::1", "fe80::1", "::ffff:10.0.0.1", "not-an-ip"]) {
      expect(isPublicAddress(ip), ip).toBe(false);
    }
  });

  it("refuses a name when any address it resolves to is not public (or when it resolves to none)", () => {
    expect(() => checkAddresses("hooks.example.com", ["93.184.216.34"], strict)).not.toThrow();
    refused(() => checkAddresses("hooks.example.com", ["93.184.216.34", "10.0.0.5"], strict));
    refused(() => checkAddresses("hooks.example.com", [], strict));
    expect(() => checkAddresses("127.0.0.1", ["127.0.0.1"], dev)).not.toThrow();
  });
});

describe("GuardedHttp", () => {
  async function server(): Promise<{ url: string; hits: () => number }> {
    let hits = 0;
    const s = http.createServer((req, res) => {
      hits++;
      req.resume();
      res.writeHead(201).end("ok");
    });
    await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
    onTestFinished(() => new Promise<void>((r) => s.close(() => r())));
    return { url: `http://127.0.0.1:${(s.address() as AddressInfo).port}`, hits: () => hits };
  }

  it("connects only to addresses that pass the rules at resolution time (no DNS rebinding)", async () => {
    const target = await server();
    const port = new URL(target.url).port;
    // A name that resolves to loopback: refused before any connection, though its URL looked fine.
    const rebinding = new GuardedHttp({ policy: { allowHosts: [] }, timeoutMs: 2000, resolve: async () => [{ address: "127.0.0.1", family: 4 }] });
    onTestFinished(() => rebinding.close());
    await expect(rebinding.post(`https://hooks.example.com:${port}/x`, "{}", {})).rejects.toMatchObject({ code: "PUSH_TARGET_REFUSED" });
    expect(target.hits()).toBe(0);
    // An allowed host is reached over http.
    const allowed = new GuardedHttp({ policy: dev, timeoutMs: 2000 });
    onTestFinished(() => allowed.close());
    expect(await allowed.post(`${target.url}/x`, "{}", { "content-type": "application/json" })).toEqual({ status: 201, retryAfterMs: undefined });
    expect(target.hits()).toBe(1);
  });

  it("reads Retry-After as seconds or a date", () => {
    expect(retryAfterMs("120")).toBe(120_000);
    expect(retryAfterMs(new Date(Date.UTC(2030, 0, 1, 0, 0, 30)).toUTCString(), Date.UTC(2030, 0, 1))).toBe(30_000);
    expect(retryAfterMs(undefined)).toBeUndefined();
    expect(retryAfterMs("soon")).toBeUndefined();
  });
});
