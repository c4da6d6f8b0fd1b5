// Presence and push subscriptions through the SDK against a real natter (edge and workers in this
// process, a real nats-server): a contact's live presence events and `presence()` answers as a
// device connects and closes, and registering and removing a webhook subscription.
import { WebSocket } from "ws";
import { describe, expect, it, onTestFinished } from "vitest";
import { useNats } from "../../test/harness/nats.ts";
import { testConfig, useNode } from "../../test/support/node.ts";
import { NatterClient, NatterError, type PresenceEntry } from "../src/index.js";

const nats = useNats();
// Push is on by default; webhook targets must be https on public hosts unless allowed, and
// test/push.int.test.ts allows loopback the same way. Nothing is pushed here: no messages are sent.
const node = useNode(() => testConfig(nats.url, { push: { allowHosts: ["127.0.0.1"] } }));

function sdk(user: string, device = "d"): NatterClient {
  const client = new NatterClient({ url: node.url, user, device, token: () => node.token(user), WebSocket, backoff: { initialMs: 20, maxMs: 200 } });
  onTestFinished(() => client.close());
  return client;
}

describe("presence", () => {
  it("a contact sees a device come online and, after a graceful close, go offline with lastSeen; presence() agrees", async () => {
    const bob = sdk("pp-bob");
    const seen: PresenceEntry[] = [];
    bob.on("presence", (e) => seen.push(e));
    await bob.connect();
    // A 1:1 conversation makes them contacts (either side opening it is enough).
    const dm = await bob.openDm("pp-alice");
    const ofAlice = () => seen.filter((e) => e.user === "pp-alice");

    const connectedAt = Date.now();
    const alice = sdk("pp-alice", "phone");
    await alice.connect();
    await expect.poll(() => ofAlice().some((e) => e.online)).toBe(true);
    const online = ofAlice().find((e) => e.online)!;
    expect(online.lastSeen).toBeUndefined();
    const [asked] = await bob.presence({ users: ["pp-alice"] });
    expect(asked).toMatchObject({ user: "pp-alice", online: true });
    expect(asked!.rev).toBeGreaterThanOrEqual(online.rev);

    // Closing the socket (close 1000) takes the device offline at once, not after the TTL.
    alice.close();
    const closedAt = Date.now();
    await expect.poll(() => ofAlice().at(-1)?.online).toBe(false);
    const offline = ofAlice().at(-1)!;
    expect(offline.rev).toBeGreaterThan(online.rev);
    expect(offline.lastSeen).toBeGreaterThanOrEqual(connectedAt);
    expect(offline.lastSeen).toBeLessThanOrEqual(Date.now());
    expect(offline.lastSeen! - closedAt).toBeLessThan(5_000);
    // By conversation too (co-members), with the same state.
    expect(await bob.presence({ conv: dm.id })).toEqual([offline]);
    // Revs only grew; no stale entry was emitted.
    const revs = ofAlice().map((e) => e.rev);
    expect(revs).toEqual([...revs].sort((a, b) => a - b));
  });
});

describe("push subscriptions", () => {
  it("registers a webhook (with its secret), removes it once, and refuses a private target with a typed error", async () => {
    const carol = sdk("pp-carol");
    const reg = await carol.registerPush({ kind: "webhook", url: "http://127.0.0.1:9/natter-hook" });
    expect(reg).toEqual({ id: expect.stringMatching(/^ps_/), kind: "webhook", secret: expect.any(String) });
    expect(await carol.removePush(reg.id)).toBe(true);
    expect(await carol.removePush(reg.id)).toBe(false);

    const refused = await carol.registerPush({ kind: "webhook", url: "https://10.1.2.3/hook" }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(NatterError);
    expect(refused).toMatchObject({ code: "PUSH_TARGET_REFUSED", temporary: false });
    expect(carol.state).toBe("open");
  });
});
