// NATS identities on real servers (docs/security.md, "NATS identities"). On a server that knows
// only natter's users: an anonymous client is refused; natter's full chat path runs on the edge's
// and the workers' identities without one refusal; with the edge's identity the server refuses
// deleting or changing a stream, purging an inbox, subscribing outside its users' feeds and
// writing the presence-users bucket or an inbox; the workers' identity is refused the edge's
// work and the same destruction. `natter start` generates its embedded server's identities and
// never lets an anonymous client in.
import { readFileSync, statSync } from "node:fs";
import path from "node:path";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, nkeyAuthenticator, nkeys, PermissionViolationError, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, describe, expect, it, onTestFinished } from "vitest";
import { loadConfig } from "../config/index.ts";
import { silentLogger } from "../core/logger.ts";
import { connectRole, deliverySubject, encodeJson, inboxPrefix, inboxStreamOf, inboxSubject, kvKeySubject, names, type NatsRole } from "../nats/index.ts";
import { TEST_NATS_USERS, useNats } from "./harness/nats.ts";
import { devToken, spawnNatter } from "./support/natter-process.ts";
import { testConfig, useNode } from "./support/node.ts";
import { TestClient } from "./support/ws-client.ts";

// "strict": natter's users only, no anonymous fallback; the refusals below are on purpose.
const nats = useNats({ auth: "strict", expectViolations: true });
const node = useNode(() => testConfig(nats.url, { presence: { ttlSec: 300 } }));
const topology = { conversationShards: 1, inboxShards: 1 };

/** A connection as one identity of the harness, with that role's reply prefix (as natter's own). */
async function connectAs(role: NatsRole | "ops", opts: { inboxPrefix?: string } = {}): Promise<{ nc: NatsConnection; refusals: string[] }> {
  const u = TEST_NATS_USERS[role];
  const prefix = opts.inboxPrefix ?? (role === "ops" ? undefined : inboxPrefix(role));
  const nc = await connect({ servers: nats.url, name: `test-${role}`, user: u.user, pass: u.password, ...(prefix ? { inboxPrefix: prefix } : {}) });
  onTestFinished(() => nc.close());
  // The server's -ERR for a core publish arrives as a status, not as a rejected call.
  const refusals: string[] = [];
  void (async () => {
    for await (const s of nc.status()) if (s.type === "error" && s.error instanceof PermissionViolationError) refusals.push(s.error.message);
  })();
  return { nc, refusals };
}

/** The message a refused request is rejected with (nats.js relays the server's -ERR); "done" when it went through. */
async function outcome(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "done";
  } catch (err) {
    return (err as Error).message;
  }
}

/** Subscribes; the server's refusal, or "allowed" when the subscription is still open after a round trip. */
async function subscribeOutcome(nc: NatsConnection, subject: string): Promise<string> {
  const sub = nc.subscribe(subject);
  await nc.flush();
  if (!sub.isClosed()) {
    sub.unsubscribe();
    return "allowed";
  }
  const err = await sub.closed;
  return err instanceof Error ? err.message : "closed without an error";
}

/** A core publish, then the server's refusal of it as the connection's status reports it (none: the poll's deadline fails). */
async function corePublishRefusal(c: { nc: NatsConnection; refusals: string[] }, subject: string): Promise<string | undefined> {
  const before = c.refusals.length;
  c.nc.publish(subject, "forged");
  await c.nc.flush();
  const refusal = () => c.refusals.slice(before).find((m) => m.includes(`"${subject}"`));
  await expect.poll(refusal).toBeDefined();
  return refusal();
}

const refusedPublish = (subject: string) => `Permissions Violation for Publish to "${subject}"`;
const refusedSubscription = (subject: string) => `Permissions Violation for Subscription to "${subject}"`;

async function client(user: string, device: string, cursor?: number): Promise<TestClient> {
  const c = await TestClient.connect(node.url, { token: await node.token(user), device, ...(cursor !== undefined ? { cursor } : {}) });
  onTestFinished(() => c.close());
  return c;
}

/** What ops sees of alice's inbox: its last sequence for her subject (0: none). */
async function aliceInboxLast(): Promise<number> {
  const jsm = await node.ops();
  const sm = await jsm.streams.getMessage(inboxStreamOf(topology, "alice"), { last_by_subj: inboxSubject(topology, "alice") }).catch(() => null);
  return sm?.seq ?? 0;
}

/** The server's log lines refusing natter's own connections (named natter-edge / natter-workers). */
const nodeRefusals = () => nats.violations().filter((l) => /nats\.js:natter/.test(l));

describe("NATS identities", () => {
  it("refuses a client without credentials, or with a wrong password; natter says which setting to fix", async () => {
    await expect(connect({ servers: nats.url })).rejects.toThrow(/Authorization Violation/);
    await expect(connect({ servers: nats.url, user: "edge", pass: "not-the-password" })).rejects.toThrow(/Authorization Violation/);
    const cfg = loadConfig({ env: {}, overrides: { nats: { servers: [nats.url] } } });
    await expect(connectRole({ nats: cfg.nats, servers: [nats.url], role: "edge", name: "t", log: silentLogger() })).rejects.toThrow(
      /requires credentials: set nats\.credentials\.edge/,
    );
    const wrong = loadConfig({ env: {}, overrides: { nats: { servers: [nats.url], credentials: { workers: { user: "workers", password: "nope" } } } } });
    await expect(connectRole({ nats: wrong.nats, servers: [nats.url], role: "workers", name: "t", log: silentLogger() })).rejects.toThrow(
      /refused the workers identity \(nats\.credentials\.workers\)/,
    );
  });

  it("runs the full chat path on the edge's and the workers' identities without one refusal", async () => {
    const alice = await client("alice", "phone");
    const bob = await client("bob", "laptop");
    const dm = (await alice.request({ type: "dm.open", peer: "bob" })).conv as { id: string };
    const group = (await alice.request({ type: "group.create", name: "g", members: ["bob", "carol"] })).conv as { id: string };
    const ack = await alice.request({ type: "send", conv: dm.id, cid: "c1", text: "hello bob" });
    expect(ack.type).toBe("ack");
    await bob.waitFor((f) => f.type === "msg" && f.id === ack.id);
    const gack = await bob.request({ type: "send", conv: group.id, cid: "g1", text: "hello group" });
    await alice.waitFor((f) => f.type === "msg" && f.id === gack.id);
    expect((await bob.request({ type: "receipt", conv: dm.id, read: ack.id as number })).type).not.toBe("error");
    expect((await alice.request({ type: "typing", conv: dm.id })).type).not.toBe("error");
    await bob.waitFor((f) => f.type === "typing" && f.conv === dm.id);
    expect((await alice.request({ type: "group.remove", conv: group.id, user: "carol" })).type).toBe("conv");
    // A second device of bob's catches up from cursor 0 (direct gets of his inbox).
    const tablet = await client("bob", "tablet", 0);
    await tablet.waitFor((f) => f.type === "msg" && f.id === gack.id);
    // The presence worker recorded alice as online; the conversation list reads the index.
    await expect.poll(async () => ((await bob.request({ type: "presence", users: ["alice"] })).users as { online: boolean }[])[0]?.online).toBe(true);
    const convs = await alice.request({ type: "convs" });
    expect((convs.convs as { id: string }[]).map((c) => c.id).sort()).toEqual([dm.id, group.id].sort());
    // The persister wrote both messages with the workers' identity.
    await expect.poll(async () => (await node.node.store.history(dm.id, { limit: 10 })).some((m) => m.id === ack.id)).toBe(true);
    expect((await fetch(`${node.url}/readyz`)).status).toBe(200);
    expect(nodeRefusals()).toEqual([]);
  });

  it("with the edge's identity, deleting or changing a stream, purging an inbox and writing presence-users or an inbox are refused", async () => {
    const alice = await client("alice", "refusals");
    const bob = await client("bob", "refusals");
    const dm = (await alice.request({ type: "dm.open", peer: "bob" })).conv as { id: string };
    const sent = await bob.request({ type: "send", conv: dm.id, cid: "r1", text: "kept" });
    await alice.waitFor((f) => f.type === "msg" && f.id === sent.id);
    const lastBefore = await aliceInboxLast();
    expect(lastBefore).toBeGreaterThan(0);
    const presenceKey = kvKeySubject(names.presenceUsersBucket, "alice");
    const opsJsm = await node.ops();
    const presenceBefore = await opsJsm.direct.getMessage(names.kvStream(names.presenceUsersBucket), { last_by_subj: presenceKey });

    const edge = await connectAs("edge");
    const jsm = await jetstreamManager(edge.nc);
    const js = jetstream(edge.nc);
    const inbox = inboxStreamOf(topology, "alice");
    expect(await outcome(jsm.streams.delete(inbox))).toContain(refusedPublish(`$JS.API.STREAM.DELETE.${inbox}`));
    expect(await outcome(jsm.streams.delete(names.conversationStream(0)))).toContain(refusedPublish(`$JS.API.STREAM.DELETE.${names.conversationStream(0)}`));
    expect(await outcome(jsm.streams.purge(inbox, { filter: inboxSubject(topology, "alice") }))).toContain(refusedPublish(`$JS.API.STREAM.PURGE.${inbox}`));
    // (nats.js's update reads the stream's info first, refused too: ask the API directly.)
    const shrink = JSON.stringify({ ...(await opsJsm.streams.info(inbox)).config, max_msgs_per_subject: 1 });
    expect(await outcome(edge.nc.request(`$JS.API.STREAM.UPDATE.${inbox}`, shrink))).toContain(refusedPublish(`$JS.API.STREAM.UPDATE.${inbox}`));
    expect(await outcome(jsm.consumers.delete(names.conversationStream(0), names.fanoutConsumer))).toContain(
      refusedPublish(`$JS.API.CONSUMER.DELETE.${names.conversationStream(0)}.${names.fanoutConsumer}`),
    );
    expect(await outcome(js.publish(presenceKey, encodeJson({ online: false, since: 0, lastSeen: 0 })))).toContain(refusedPublish(presenceKey));
    expect(await outcome(js.publish(inboxSubject(topology, "alice"), encodeJson({ forged: true })))).toContain(refusedPublish(inboxSubject(topology, "alice")));
    // A forged delivery straight to alice's devices (core NATS) is refused too.
    expect(await corePublishRefusal(edge, deliverySubject(topology, "alice"))).toBe(refusedPublish(deliverySubject(topology, "alice")));
    expect(await corePublishRefusal(edge, "presence.0.alice")).toBe(refusedPublish("presence.0.alice"));

    // Nothing changed: the streams and the fan-out's consumer are there, alice's inbox and presence record are as they were.
    const streams: string[] = [];
    for await (const s of opsJsm.streams.names()) streams.push(s);
    expect(streams).toEqual(expect.arrayContaining([inbox, names.conversationStream(0)]));
    expect((await opsJsm.streams.info(inbox)).config.max_msgs_per_subject).not.toBe(1);
    expect((await opsJsm.consumers.info(names.conversationStream(0), names.fanoutConsumer)).name).toBe(names.fanoutConsumer);
    expect(await aliceInboxLast()).toBe(lastBefore);
    const presenceAfter = await opsJsm.direct.getMessage(names.kvStream(names.presenceUsersBucket), { last_by_subj: presenceKey });
    expect(presenceAfter?.seq).toBe(presenceBefore?.seq);
  });

  it("with the edge's identity, subscriptions outside one user's deliveries, presence and typing are refused", async () => {
    const edge = await connectAs("edge");
    for (const subject of ["deliver.>", ">", "inbox.>", "conv.>", "presence.>", "typing.>", "$KV.>", "_INBOX.>", `${inboxPrefix("workers")}.>`, "$JS.API.>", "dead.>", "push.*.*"]) {
      expect(await subscribeOutcome(edge.nc, subject), subject).toBe(refusedSubscription(subject));
    }
    // The trade-off: any user may connect to any edge, so every user's feeds are open to every
    // edge, one subscription per user or all at once (docs/security.md).
    for (const subject of [deliverySubject(topology, "alice"), "presence.0.alice", "typing.0.alice", "deliver.*.*", `${inboxPrefix("edge")}.x.y`]) {
      expect(await subscribeOutcome(edge.nc, subject), subject).toBe("allowed");
    }
    // Replies under another prefix never reach it: a request needs its own prefix.
    const stray = await connectAs("edge", { inboxPrefix: "_INBOX" });
    expect(await outcome(jetstreamManager(stray.nc))).toContain(refusedSubscription("_INBOX.>").replace(/"_INBOX\.>"$/, ""));
  });

  it("with the workers' identity, the edge's writes, its users' feeds and destroying a stream are refused", async () => {
    const workers = await connectAs("workers");
    const jsm = await jetstreamManager(workers.nc);
    const js = jetstream(workers.nc);
    const inbox = inboxStreamOf(topology, "alice");
    expect(await outcome(jsm.streams.delete(inbox))).toContain(refusedPublish(`$JS.API.STREAM.DELETE.${inbox}`));
    expect(await outcome(jsm.streams.purge(inbox))).toContain(refusedPublish(`$JS.API.STREAM.PURGE.${inbox}`));
    expect(await outcome(jsm.consumers.delete(names.conversationStream(0), names.persisterConsumer))).toContain(
      refusedPublish(`$JS.API.CONSUMER.DELETE.${names.conversationStream(0)}.${names.persisterConsumer}`),
    );
    const msg = "conv.0.dm_forged";
    expect(await outcome(js.publish(msg, encodeJson({ forged: true })))).toContain(refusedPublish(msg));
    const edgeKey = kvKeySubject(names.edgesBucket, "rogue");
    expect(await outcome(js.publish(edgeKey, encodeJson({ url: "https://attacker.example" })))).toContain(refusedPublish(edgeKey));
    for (const subject of [deliverySubject(topology, "alice"), "typing.0.alice", `${inboxPrefix("edge")}.>`]) {
      expect(await subscribeOutcome(workers.nc, subject), subject).toBe(refusedSubscription(subject));
    }
    // Its own work: the fan-out's consumer and an inbox read.
    expect((await jsm.consumers.info(names.conversationStream(0), names.fanoutConsumer)).name).toBe(names.fanoutConsumer);
    expect((await jsm.direct.getMessage(inbox, { last_by_subj: inboxSubject(topology, "alice") }))?.subject).toBe(inboxSubject(topology, "alice"));
  });
});

describe("natter start's embedded nats-server", () => {
  let natter: Awaited<ReturnType<typeof spawnNatter>> | undefined;
  afterAll(async () => {
    await natter?.stop();
  });

  it("generates one identity per role into the data folder, refuses anonymous clients and applies the allow-lists", async () => {
    natter = await spawnNatter();
    const dir = path.join(natter.dataDir, "nats", "auth");
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    const seeds: Record<string, string> = {};
    for (const role of ["edge", "workers", "ops"]) {
      const file = path.join(dir, `${role}.nk`);
      expect(statSync(file).mode & 0o777, file).toBe(0o600);
      seeds[role] = readFileSync(file, "utf8").trim();
      expect(seeds[role]).toMatch(/^SU[A-Z2-7]+$/);
    }
    await expect(connect({ servers: natter.natsUrl })).rejects.toThrow(/Authorization Violation/);

    // The edge part and the workers' thread each connected with their own identity.
    const publicKey = (seed: string) => nkeys.fromSeed(new TextEncoder().encode(seed)).getPublicKey();
    const connz = (await (await fetch(`${natter.natsMonitorUrl}/connz?auth=true`)).json()) as { connections: { name?: string; authorized_user?: string }[] };
    const as = (name: string) => connz.connections.filter((c) => c.name === name).map((c) => c.authorized_user);
    expect(as("natter-edge")).toEqual([publicKey(seeds.edge!)]);
    expect(as("natter-workers")).toEqual([publicKey(seeds.workers!)]);

    // A message goes through on those identities.
    const token = async (user: string) => devToken(natter!.url, user);
    const alice = await TestClient.connect(natter.url, { token: await token("alice"), device: "d" });
    onTestFinished(() => alice.close());
    const bob = await TestClient.connect(natter.url, { token: await token("bob"), device: "d" });
    onTestFinished(() => bob.close());
    const dm = (await alice.request({ type: "dm.open", peer: "bob" })).conv as { id: string };
    const ack = await alice.request({ type: "send", conv: dm.id, cid: "e1", text: "on generated identities" });
    await bob.waitFor((f) => f.type === "msg" && f.id === ack.id);

    // The ops identity sees everything; the edge's cannot delete a stream.
    const ops = await connect({ servers: natter.natsUrl, authenticator: nkeyAuthenticator(new TextEncoder().encode(seeds.ops!)) });
    onTestFinished(() => ops.close());
    const streams: string[] = [];
    for await (const s of (await jetstreamManager(ops)).streams.names()) streams.push(s);
    expect(streams).toContain(inboxStreamOf(topology, "bob"));
    const edge = await connect({ servers: natter.natsUrl, authenticator: nkeyAuthenticator(new TextEncoder().encode(seeds.edge!)), inboxPrefix: inboxPrefix("edge") });
    onTestFinished(() => edge.close());
    const inbox = inboxStreamOf(topology, "bob");
    expect(await outcome((await jetstreamManager(edge)).streams.delete(inbox))).toContain(refusedPublish(`$JS.API.STREAM.DELETE.${inbox}`));
  });
});
