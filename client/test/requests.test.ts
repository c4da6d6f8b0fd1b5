// Requests on their own (a fake connection, fake timers): waiting for the welcome, replies by ref,
// typed errors, TIMEOUT, DISCONNECTED when the connection drops, and a stopped or closed client.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { NatterError } from "../src/errors.js";
import { expectReply, Requests } from "../src/requests.js";
import { FakeWire, refCounter } from "./fake-wire.js";

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

function requests(requestTimeoutMs?: number): { wire: FakeWire; req: Requests } {
  const wire = new FakeWire();
  return { wire, req: new Requests(wire, requestTimeoutMs === undefined ? {} : { requestTimeoutMs }, refCounter()) };
}

describe("requests", () => {
  it("holds requests made before the welcome (and asks to connect), then sends them in order; replies resolve by ref", async () => {
    const { wire, req } = requests();
    const dm = req.request({ type: "dm.open", peer: "bob" });
    const hist = req.request({ type: "history", conv: "c1" });
    expect(wire.autoConnects).toBe(2);
    const socket = wire.welcome();
    req.flush();
    expect(socket.sent).toEqual([
      { type: "dm.open", peer: "bob", ref: expect.stringMatching(/^r/) },
      { type: "history", conv: "c1", ref: expect.stringMatching(/^r/) },
    ]);
    const [a, b] = socket.sent;
    // Replies may come in any order: each finds its request by ref.
    req.reply(b!.ref as string, { type: "history", ref: b!.ref as string, conv: "c1", messages: [] });
    req.reply(a!.ref as string, { type: "conv", ref: a!.ref as string, conv: { id: "c1", kind: "dm", members: ["u", "bob"] } });
    await expect(hist).resolves.toMatchObject({ type: "history", conv: "c1" });
    await expect(dm).resolves.toMatchObject({ type: "conv", conv: { id: "c1" } });
    expect(req.has(a!.ref)).toBe(false);
  });

  it("rejects with the server's typed error", async () => {
    const { wire, req } = requests();
    const socket = wire.welcome();
    const p = req.request({ type: "dm.open", peer: "me" });
    const ref = socket.sent[0]!.ref as string;
    req.reply(ref, { type: "error", ref, code: "SELF_CONVERSATION", message: "not with yourself", temporary: false });
    const err = await p.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NatterError);
    expect(err).toMatchObject({ code: "SELF_CONVERSATION", message: "not with yourself", temporary: false });
  });

  it("rejects with TIMEOUT after requestTimeoutMs; a late reply is ignored, and a request that timed out waiting is never sent", async () => {
    const { wire, req } = requests(5_000);
    const waiting = req.request({ type: "convs" }).catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(await waiting).toMatchObject({ code: "TIMEOUT", temporary: true });
    const socket = wire.welcome();
    req.flush();
    expect(socket.sent).toEqual([]);

    const sent = req.request({ type: "receipts", conv: "c1" }).catch((e: unknown) => e);
    const ref = socket.sent[0]!.ref as string;
    await vi.advanceTimersByTimeAsync(5_000);
    expect(await sent).toMatchObject({ code: "TIMEOUT" });
    expect(req.has(ref)).toBe(false);
  });

  it("on a drop, rejects requests on the wire with DISCONNECTED (temporary, with the close code); queued ones go out after the next welcome", async () => {
    const { wire, req } = requests();
    const socket = wire.welcome();
    const onWire = req.request({ type: "group.add", conv: "g", user: "v" });
    wire.drop();
    const queued = req.request({ type: "members", conv: "g" });
    req.disconnected(1006);
    const err = await onWire.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NatterError);
    expect(err).toMatchObject({ code: "DISCONNECTED", temporary: true, closeCode: 1006 });
    expect(req.has(socket.sent[0]!.ref)).toBe(false);

    const next = wire.welcome();
    req.flush();
    expect(next.sent).toEqual([{ type: "members", conv: "g", ref: expect.any(String) }]);
    const ref = next.sent[0]!.ref as string;
    req.reply(ref, { type: "conv", ref, conv: { id: "g", kind: "group", members: ["u", "v"] } });
    await expect(queued).resolves.toMatchObject({ type: "conv" });
  });

  it("rejects everything, on the wire or waiting, with the error that stopped the client; nothing once closed", async () => {
    const { wire, req } = requests();
    wire.welcome();
    const onWire = req.request({ type: "ping" });
    wire.drop();
    const queued = req.request({ type: "ping" });
    const stop = new NatterError("CONNECTION_REFUSED", "no", { temporary: false });
    req.stopped(stop);
    await expect(onWire).rejects.toBe(stop);
    await expect(queued).rejects.toBe(stop);
    wire.state = "closed";
    await expect(req.request({ type: "ping" })).rejects.toMatchObject({ code: "CLOSED", temporary: false });
    expect(wire.autoConnects).toBe(2);
  });

  it("treats a reply of the wrong type as INTERNAL, naming what was asked", () => {
    expect(() => expectReply({ type: "pong" }, "push.removed", "push.remove")).toThrow(
      expect.objectContaining({ code: "INTERNAL", message: "unexpected reply pong to push.remove" }),
    );
    expect(expectReply({ type: "convs", convs: [] }, "convs").convs).toEqual([]);
  });
});
