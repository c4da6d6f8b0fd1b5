// The SDK and token lifetime against a real natter: told `token.expired`, it asks its token
// provider (reason "refresh") and sends the fresh token on the socket, which stays open through
// token after token; a fixed token that expires ends the client with UNAUTHENTICATED; a
// revocation closes the socket 4401 and the client comes back on a token issued after it.
import { SignJWT } from "jose";
import { WebSocket } from "ws";
import { describe, expect, it, onTestFinished } from "vitest";
import { mintToken, Revocations } from "../../edge/index.ts";
import { silentLogger } from "../../core/logger.ts";
import { useNats } from "../../test/harness/nats.ts";
import { TEST_SECRET, testConfig, useNode } from "../../test/support/node.ts";
import { NatterClient, type NatterClientOptions, type NatterError, type StateChange } from "../src/index.js";

const GRACE_SEC = 1;
const TOKEN_TTL_SEC = 2;
const nats = useNats();
const node = useNode(() => testConfig(nats.url, { auth: { jwtSecret: TEST_SECRET, expiryGraceSec: GRACE_SEC } }));

function sdk(user: string, opts: Partial<NatterClientOptions>) {
  const client = new NatterClient({ url: node.url, user, device: "d", token: () => node.token(user), WebSocket, backoff: { initialMs: 20, maxMs: 200 }, ...opts });
  onTestFinished(() => client.close());
  const states: StateChange[] = [];
  const errors: NatterError[] = [];
  client.on("state", (s) => states.push(s));
  client.on("error", (e) => errors.push(e));
  return { client, states, errors };
}

describe("the SDK and token lifetime", () => {
  it("renews a token that expires on the open socket through the provider, token after token, without reconnecting", async () => {
    const reasons: string[] = [];
    const { client, states, errors } = sdk("life_a", {
      token: (reason) => {
        reasons.push(reason);
        return mintToken(node.node.tokens, "life_a", TOKEN_TTL_SEC);
      },
    });
    await client.connect();
    const peer = sdk("life_b", {});
    const dm = await peer.client.openDm("life_a");
    // Each token lives at least 1 s (exp is in whole seconds) and the grace is 1 s: by the third
    // refresh the first token's grace is long over, so the socket lived on the renewed tokens.
    await expect.poll(() => reasons.filter((r) => r === "refresh").length, { timeout: 20_000 }).toBeGreaterThanOrEqual(3);
    expect(reasons[0]).toBe("connect");
    expect(states.map((s) => s.state)).toEqual(["connecting", "open"]);
    expect(errors).toEqual([]);
    const got = new Promise<string>((resolve) => client.on("message", (m) => resolve(m.text)));
    await peer.client.send(dm.id, "on the same socket");
    expect(await got).toBe("on the same socket");
    expect(client.state).toBe("open");
  });

  it("with a fixed token that expires: told, closed 4401 after the grace, and stopped with UNAUTHENTICATED", async () => {
    const { client, states, errors } = sdk("life_c", { token: await mintToken(node.node.tokens, "life_c", TOKEN_TTL_SEC) });
    await client.connect();
    await expect.poll(() => client.state, { timeout: 20_000 }).toBe("closed");
    expect(states.at(-1)).toMatchObject({ state: "closed", closeCode: 4401 });
    expect(errors.map((e) => e.code)).toContain("UNAUTHENTICATED");
  });

  it("after a revocation: closed 4401, asks the provider for a fresh token and is back on one issued after it", async () => {
    let notBefore = 0;
    const reasons: string[] = [];
    const { client, states } = sdk("life_d", {
      token: (reason) => {
        reasons.push(reason);
        if (notBefore === 0) return mintToken(node.node.tokens, "life_d", 600);
        return new SignJWT({})
          .setProtectedHeader({ alg: "HS256" })
          .setIssuer("natter")
          .setAudience("natter")
          .setSubject("life_d")
          .setIssuedAt(notBefore)
          .setExpirationTime(notBefore + 600)
          .sign(new TextEncoder().encode(TEST_SECRET));
      },
    });
    await client.connect();
    notBefore = Math.floor(Date.now() / 1000) + 1;
    const ops = await node.opsConnection();
    await new Revocations({ nc: ops.nc, js: ops.jsm.jetstream(), jsm: ops.jsm, log: silentLogger(), maxTokenAgeSec: 3600 }).revoke("life_d", notBefore);
    await expect.poll(() => states.filter((s) => s.state === "open").length).toBe(2);
    expect(states.find((s) => s.state === "reconnecting")).toMatchObject({ closeCode: 4401 });
    expect(reasons).toEqual(["connect", "refresh"]);
  });
});
