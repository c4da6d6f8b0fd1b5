// The SDK's pieces without a server: backoff, URLs, ids, cursor stores, that its copies of the
// server's error codes, close codes and client frame types match core/errors.ts and
// edge/protocol.ts, that it ignores frames it does not know (so new server events are not a
// breaking change), presence and push requests and events, and that the page's bundle is current.
import { WebSocket as NodeWebSocket } from "ws";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { CLOSE, ERRORS } from "../../core/errors.ts";
import { ID_PATTERN } from "../../core/ids.ts";
import { CLIENT_FRAME_TYPES as SERVER_CLIENT_FRAME_TYPES, ClientFrame as ClientFrameSchema, HelloFrame } from "../../edge/protocol.ts";
import { pageBundleIsCurrent } from "../../scripts/build-client.ts";
import {
  backoffDelay,
  CLIENT_FRAME_TYPES,
  CLOSE_CODES,
  closeAction,
  LocalStorageCursorStore,
  NatterClient,
  NatterError,
  newClientId,
  SERVER_ERROR_CODES,
  toWebSocketUrl,
  type ChatMessage,
  type NatterClientOptions,
  type PresenceEntry,
  type StorageLike,
  type WebSocketConstructor,
} from "../src/index.js";

describe("backoff", () => {
  it("waits between half and all of min(max, initial·2^n), never more than max", () => {
    for (const r of [0, 0.5, 0.999]) {
      for (let n = 0; n < 12; n++) {
        const base = Math.min(30_000, 250 * 2 ** n);
        const d = backoffDelay(n, {}, () => r);
        expect(d).toBeGreaterThanOrEqual(base / 2 - 1);
        expect(d).toBeLessThanOrEqual(base);
      }
    }
    expect(backoffDelay(50, { initialMs: 10, maxMs: 1000 }, () => 1)).toBe(1000);
  });
});

describe("helpers", () => {
  it("turns an edge's http URL into its WebSocket URL", () => {
    expect(toWebSocketUrl("http://127.0.0.1:8080")).toBe("ws://127.0.0.1:8080/ws");
    expect(toWebSocketUrl("https://chat.example/")).toBe("wss://chat.example/ws");
    expect(toWebSocketUrl("ws://h:1/custom")).toBe("ws://h:1/custom");
    expect(() => toWebSocketUrl("ftp://h")).toThrow(/not an http/);
  });

  it("makes client ids the server accepts, all different", () => {
    const ids = Array.from({ length: 1000 }, () => newClientId());
    for (const id of ids) expect(id).toMatch(ID_PATTERN);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it("keeps cursors in a Storage under a prefix and ignores garbage", () => {
    const map = new Map<string, string>();
    const storage: StorageLike = { getItem: (k) => map.get(k) ?? null, setItem: (k, v) => void map.set(k, v), removeItem: (k) => void map.delete(k) };
    const store = new LocalStorageCursorStore({ storage });
    expect(store.get("alice/d")).toBeUndefined();
    store.set("alice/d", 42);
    expect(map.get("natter.cursor.alice/d")).toBe("42");
    expect(store.get("alice/d")).toBe(42);
    map.set("natter.cursor.alice/d", "yesterday");
    expect(store.get("alice/d")).toBeUndefined();
    store.delete("alice/d");
    expect(map.size).toBe(0);
  });

  it("takes the browser's WebSocket and the ws package's alike (a compile-time check)", () => {
    const fits: WebSocketConstructor[] = [NodeWebSocket, globalThis.WebSocket];
    expect(fits).toHaveLength(2);
  });
});

describe("agreement with the server", () => {
  it("knows every error code of core/errors.ts", () => {
    expect([...SERVER_ERROR_CODES].sort()).toEqual(Object.keys(ERRORS).sort());
  });

  it("sends every client frame type the server accepts, and no other", () => {
    // The types the server's schema parses (push.register is a union of its own, by kind).
    const typesOf = (schema: z.ZodType): string[] =>
      schema instanceof z.ZodDiscriminatedUnion
        ? (schema.options as z.ZodType[]).flatMap(typesOf)
        : [String(((schema as z.ZodObject).shape.type as z.ZodLiteral).value)];
    const accepted = [...new Set([...typesOf(HelloFrame), ...typesOf(ClientFrameSchema)])].sort();
    expect([...CLIENT_FRAME_TYPES].sort()).toEqual(accepted);
    // The server's own list (it answers UNKNOWN_TYPE to anything else) says the same.
    expect([...SERVER_CLIENT_FRAME_TYPES].sort()).toEqual(accepted);
  });

  it.each(Object.entries(CLOSE))("treats close %s as the server means it", (name, c) => {
    expect(CLOSE_CODES[name as keyof typeof CLOSE_CODES]).toBe(c.code);
    const expected = name === "UNAUTHORIZED" ? "refresh-token" : c.reconnect ? "reconnect" : "stop";
    expect(closeAction(c.code)).toBe(expected);
  });

  it("edge/public/natter-client.js is what client/src gives (else: npm run build:client, and commit it)", async () => {
    expect(await pageBundleIsCurrent()).toBe(true);
  });
});

/** A socket the test plays the server on. */
class FakeSocket {
  static last: FakeSocket | undefined;
  readyState = 0;
  sent: Record<string, unknown>[] = [];
  onopen: (() => void) | null = null;
  onmessage: ((ev: { data: string }) => void) | null = null;
  onclose: ((ev: { code: number }) => void) | null = null;
  onerror: (() => void) | null = null;
  readonly url: string;
  constructor(url: string) {
    this.url = url;
    FakeSocket.last = this;
    queueMicrotask(() => {
      this.readyState = 1;
      this.onopen?.();
    });
  }
  send(data: string): void {
    this.sent.push(JSON.parse(data) as Record<string, unknown>);
  }
  close(): void {
    this.readyState = 3;
  }
  serverSends(frame: Record<string, unknown>): void {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }
  serverCloses(code: number): void {
    this.readyState = 3;
    this.onclose?.({ code });
  }
}

async function connected(opts: Partial<NatterClientOptions> = {}): Promise<{ client: NatterClient; socket: FakeSocket; messages: ChatMessage[] }> {
  const client = new NatterClient({ url: "http://edge.test", user: "u", device: "d", token: "t", WebSocket: FakeSocket, pingIntervalMs: 0, ...opts });
  const messages: ChatMessage[] = [];
  client.on("message", (m) => messages.push(m));
  const done = client.connect();
  await new Promise((r) => setTimeout(r, 0));
  const socket = FakeSocket.last!;
  expect(socket.url).toBe("ws://edge.test/ws");
  expect(socket.sent[0]).toEqual({ type: "hello", v: 1, token: "t", device: "d" });
  socket.serverSends({ type: "welcome", v: 1, user: "u", device: "d", cursor: 10 });
  await done;
  return { client, socket, messages };
}

describe("frames", () => {
  it("ignores frame types it does not know (reactions… from a newer server) and items it already emitted", async () => {
    const { client, socket, messages } = await connected();
    const msg = { type: "msg", conv: "c", id: 1, from: "v", device: "x", cid: "a", text: "hi", ts: 1 };
    socket.serverSends({ type: "reaction", conv: "c", user: "v", emoji: "+1" });
    socket.serverSends({ type: "receipt", conv: "c", user: "v", id: 3, delivered: 1, read: 1 }); // neither a reply nor an inbox item
    socket.serverSends({ ...msg, cursor: 11 });
    socket.serverSends({ ...msg, cursor: 11 });
    socket.serverSends({ ...msg, cursor: 9 });
    expect(messages.map((m) => m.cursor)).toEqual([11]);
    expect(client.cursor).toBe(11);
    expect(client.state).toBe("open");
    client.close();
  });

  it("emits receipts (inbox items, once) and typing signals; merges marks made while one is in flight", async () => {
    const { client, socket } = await connected();
    const receipts: unknown[] = [];
    const typing: unknown[] = [];
    client.on("receipt", (r) => receipts.push(r));
    client.on("typing", (t) => typing.push(t));
    const receipt = { type: "receipt", conv: "c", id: 7, user: "v", device: "x", delivered: 5, read: 4, ts: 1, cursor: 11 };
    socket.serverSends(receipt);
    socket.serverSends(receipt);
    socket.serverSends({ type: "typing", conv: "c", user: "v", ttlMs: 5000 });
    expect(receipts).toEqual([{ conv: "c", id: 7, user: "v", device: "x", delivered: 5, read: 4, ts: 1, cursor: 11 }]);
    expect(typing).toMatchObject([{ conv: "c", user: "v", ttlMs: 5000, expiresAt: expect.any(Number) }]);
    expect(client.cursor).toBe(11);

    const sent = () => socket.sent.filter((f) => f.type === "receipt");
    const reply = (i: number, state: number) =>
      socket.serverSends({ type: "receipt", ref: sent()[i]!.ref, conv: "c", id: 8 + i, user: "u", delivered: state, read: state });
    const tick = () => new Promise((r) => setTimeout(r, 0));
    // Calls made in one turn are one request.
    const batch = [client.markRead("c", 3), client.markRead("c", 5), client.markDelivered("c", 4)];
    await tick();
    expect(sent()).toEqual([{ type: "receipt", conv: "c", read: 5, ref: expect.any(String) }]);
    reply(0, 5);
    for (const p of batch) await expect(p).resolves.toEqual({ user: "u", delivered: 5, read: 5 });
    // Calls made while one is in flight are one request after it.
    const inFlight = client.markRead("c", 6);
    await tick();
    const later = [client.markRead("c", 7), client.markRead("c", 8)];
    await tick();
    expect(sent()).toHaveLength(2);
    reply(1, 6);
    await expect(inFlight).resolves.toEqual({ user: "u", delivered: 6, read: 6 });
    await tick();
    expect(sent()[2]).toMatchObject({ conv: "c", read: 8 });
    reply(2, 8);
    for (const p of later) await expect(p).resolves.toEqual({ user: "u", delivered: 8, read: 8 });
    // Already covered: nothing is sent.
    await expect(client.markRead("c", 2)).resolves.toEqual({ user: "u", delivered: 8, read: 8 });
    expect(sent()).toHaveLength(3);

    // Typing: at most one signal per conversation every 3 s.
    const typed = [client.typing("c"), client.typing("c")];
    expect(socket.sent.filter((f) => f.type === "typing")).toEqual([{ type: "typing", conv: "c", ref: expect.any(String) }]);
    client.close();
    // A typing signal cut off by close() is dropped, not an error for the caller.
    for (const t of typed) await expect(t).resolves.toBeUndefined();
  });

  it("stops on a close that forbids reconnecting, with the error frame's code", async () => {
    const { client, socket } = await connected();
    const pending = client.history("c");
    socket.serverSends({ type: "error", code: "UNSUPPORTED_VERSION", message: "v2 only", temporary: false });
    socket.serverCloses(4426);
    await expect(pending).rejects.toMatchObject({ code: "UNSUPPORTED_VERSION", temporary: false, closeCode: 4426 });
    expect(client.state).toBe("closed");
    await expect(client.connect()).rejects.toMatchObject({ code: "CLOSED" } satisfies Partial<NatterError>);
  });
});

describe("presence and push", () => {
  /** The last frame of `type` the client sent. */
  const lastSent = (socket: FakeSocket, type: string) => socket.sent.filter((f) => f.type === type).at(-1)!;
  const tick = () => new Promise((r) => setTimeout(r, 0));

  it("asks for presence by users or by conversation and resolves with the entries", async () => {
    const { client, socket } = await connected();
    const byUsers = client.presence({ users: ["v", "w"] });
    expect(lastSent(socket, "presence")).toEqual({ type: "presence", users: ["v", "w"], ref: expect.any(String) });
    const entries = [
      { user: "v", online: true, rev: 3 },
      { user: "w", online: false, lastSeen: 1_700_000_000_000, rev: 9 },
    ];
    socket.serverSends({ type: "presence", ref: lastSent(socket, "presence").ref, users: entries });
    await expect(byUsers).resolves.toEqual(entries);

    const byConv = client.presence({ conv: "g" });
    expect(lastSent(socket, "presence")).toEqual({ type: "presence", conv: "g", ref: expect.any(String) });
    socket.serverSends({ type: "presence", ref: lastSent(socket, "presence").ref, users: [] });
    await expect(byConv).resolves.toEqual([]);

    // Asking about no one sends nothing (the server would refuse the empty list).
    await expect(client.presence({ users: [] })).resolves.toEqual([]);
    expect(socket.sent.filter((f) => f.type === "presence")).toHaveLength(2);
    client.close();
  });

  it("emits each entry of a live presence frame, dropping one older than the last seen for its user", async () => {
    const { client, socket } = await connected({ backoff: { initialMs: 1, maxMs: 1 } });
    const seen: PresenceEntry[] = [];
    client.on("presence", (e) => seen.push(e));
    const live = (...users: PresenceEntry[]) => socket.serverSends({ type: "presence", users });
    live({ user: "v", online: true, rev: 5 });
    live({ user: "v", online: false, lastSeen: 100, rev: 4 }); // crossed the newer one: dropped
    live({ user: "v", online: false, lastSeen: 200, rev: 6 }, { user: "w", online: true, rev: 1 });
    expect(seen).toEqual([
      { user: "v", online: true, rev: 5 },
      { user: "v", online: false, lastSeen: 200, rev: 6 },
      { user: "w", online: true, rev: 1 },
    ]);

    // A reply that a live change crossed gives the newer entry; a live frame older than a reply is dropped.
    const asked = client.presence({ users: ["v", "w"] });
    socket.serverSends({
      type: "presence",
      ref: lastSent(socket, "presence").ref,
      users: [
        { user: "v", online: true, rev: 5 },
        { user: "w", online: false, lastSeen: 300, rev: 2 },
      ],
    });
    await expect(asked).resolves.toEqual([
      { user: "v", online: false, lastSeen: 200, rev: 6 },
      { user: "w", online: false, lastSeen: 300, rev: 2 },
    ]);
    live({ user: "w", online: true, rev: 1 });
    expect(seen).toHaveLength(3);

    // A new connection starts over (the app asks again after `open`; revs may restart with the server's bucket).
    socket.serverCloses(1001);
    await expect.poll(() => FakeSocket.last !== socket && FakeSocket.last!.sent.length > 0).toBe(true);
    const again = FakeSocket.last!;
    again.serverSends({ type: "welcome", v: 1, user: "u", device: "d", cursor: 10 });
    again.serverSends({ type: "presence", users: [{ user: "v", online: true, rev: 1 }] });
    expect(seen.at(-1)).toEqual({ user: "v", online: true, rev: 1 });
    client.close();
  });

  it("registers webhook and Web Push subscriptions with the frames the server takes, and removes them", async () => {
    const { client, socket } = await connected();
    const reply = (frame: Record<string, unknown>) => socket.serverSends({ ...frame, ref: socket.sent.at(-1)!.ref });

    const hook = client.registerPush({ kind: "webhook", url: "https://hooks.example/natter" });
    expect(socket.sent.at(-1)).toEqual({ type: "push.register", kind: "webhook", url: "https://hooks.example/natter", ref: expect.any(String) });
    reply({ type: "push.registered", id: "ps_1", kind: "webhook", secret: "s3cret" });
    await expect(hook).resolves.toEqual({ id: "ps_1", kind: "webhook", secret: "s3cret" });

    // A browser's PushSubscription.toJSON(), as it is: expirationTime is left out.
    const keys = { p256dh: "BPk", auth: "au" };
    const json = client.registerPush({ endpoint: "https://push.example/abc", expirationTime: null, keys });
    expect(socket.sent.at(-1)).toEqual({ type: "push.register", kind: "webpush", endpoint: "https://push.example/abc", keys, ref: expect.any(String) });
    reply({ type: "push.registered", id: "ps_2", kind: "webpush" });
    await expect(json).resolves.toEqual({ id: "ps_2", kind: "webpush" });
    // The PushSubscription itself (its keys are only in toJSON()), and the explicit form.
    const subscription = { endpoint: "https://push.example/abc", expirationTime: null, toJSON: () => ({ endpoint: "https://push.example/abc", keys }) };
    for (const [target, endpoint] of [
      [subscription, "https://push.example/abc"],
      [{ kind: "webpush", endpoint: "https://push.example/def", keys }, "https://push.example/def"],
    ] as const) {
      const registered = client.registerPush(target);
      expect(socket.sent.at(-1)).toEqual({ type: "push.register", kind: "webpush", endpoint, keys, ref: expect.any(String) });
      reply({ type: "push.registered", id: "ps_2", kind: "webpush" });
      await expect(registered).resolves.toEqual({ id: "ps_2", kind: "webpush" });
    }
    // Not a subscription: refused here, nothing sent.
    const count = socket.sent.length;
    await expect(client.registerPush({ endpoint: "https://push.example/abc" })).rejects.toMatchObject({ code: "BAD_FRAME", temporary: false });
    expect(socket.sent).toHaveLength(count);

    const removed = client.removePush("ps_1");
    expect(socket.sent.at(-1)).toEqual({ type: "push.remove", id: "ps_1", ref: expect.any(String) });
    reply({ type: "push.removed", id: "ps_1", removed: true });
    await expect(removed).resolves.toBe(true);
    const again = client.removePush("ps_1");
    reply({ type: "push.removed", id: "ps_1", removed: false });
    await expect(again).resolves.toBe(false);
    client.close();
  });

  it("registers an app's FCM registration token and APNs device token as they are", async () => {
    const { client, socket } = await connected();
    const reply = (frame: Record<string, unknown>) => socket.serverSends({ ...frame, ref: socket.sent.at(-1)!.ref });
    for (const [kind, token] of [
      ["fcm", "dBbB2BFT-VY:APA91bHN_ct4xJ9Q8Ylbq3xo3vgvw0bnS1C"],
      ["apns", "ab".repeat(32)],
    ] as const) {
      const registered = client.registerPush({ kind, token });
      expect(socket.sent.at(-1)).toEqual({ type: "push.register", kind, token, ref: expect.any(String) });
      reply({ type: "push.registered", id: `ps_${kind}`, kind });
      await expect(registered).resolves.toEqual({ id: `ps_${kind}`, kind });
    }
    // No token: refused here, nothing sent.
    const count = socket.sent.length;
    await expect(client.registerPush({ kind: "apns", token: "" })).rejects.toMatchObject({ code: "BAD_FRAME", temporary: false });
    expect(socket.sent).toHaveLength(count);
    client.close();
  });

  it("rejects with a typed NatterError when the server refuses (push off) and stays open", async () => {
    const { client, socket } = await connected();
    const refused = client.registerPush({ kind: "webhook", url: "https://hooks.example/natter" });
    socket.serverSends({ type: "error", ref: lastSent(socket, "push.register").ref, code: "PUSH_DISABLED", message: "push notifications are off", temporary: false });
    const err = await refused.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NatterError);
    expect(err).toMatchObject({ code: "PUSH_DISABLED", temporary: false, message: "push notifications are off" });
    const removal = client.removePush("ps_1");
    socket.serverSends({ type: "error", ref: lastSent(socket, "push.remove").ref, code: "PUSH_DISABLED", message: "push notifications are off", temporary: false });
    await expect(removal).rejects.toMatchObject({ code: "PUSH_DISABLED" });
    await tick();
    expect(client.state).toBe("open");
    client.close();
  });
});
