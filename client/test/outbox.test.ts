// The outbox on its own (a fake connection, fake timers): the send window and its order, resend
// with the same cid after a reconnect, retry with backoff on temporary errors without reordering,
// TIMEOUT, and what a closed or stopped client does with sends.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { NatterError } from "../src/errors.js";
import { Outbox, type OutboxOptions, type SendResult } from "../src/outbox.js";
import { FakeWire, refCounter, type RecordingSocket } from "./fake-wire.js";

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

function outbox(opts: OutboxOptions = {}): { wire: FakeWire; box: Outbox } {
  const wire = new FakeWire();
  return { wire, box: new Outbox(wire, opts, refCounter()) };
}

/** The server's answer to the send attempt `frame`, as the client routes it. */
function ack(box: Outbox, frame: Record<string, unknown>, id: number, dup = false): void {
  const ref = frame.ref as string;
  expect(box.has(ref)).toBe(true);
  box.reply(ref, { type: "ack", ref, conv: frame.conv as string, cid: frame.cid as string, id, dup });
}

function refuse(box: Outbox, frame: Record<string, unknown>, code: string, temporary: boolean): void {
  const ref = frame.ref as string;
  box.reply(ref, { type: "error", ref, code, message: `${code} (test)`, temporary });
}

const texts = (socket: RecordingSocket) => socket.frames("send").map((f) => f.text);

describe("outbox", () => {
  it("puts at most sendWindow sends on the wire, oldest first; each ack lets the next one go", async () => {
    const { wire, box } = outbox({ sendWindow: 2 });
    const socket = wire.welcome();
    const sends = ["a", "b", "c", "d"].map((t) => box.send("c1", t, {}));
    expect(texts(socket)).toEqual(["a", "b"]);
    ack(box, socket.frames("send")[0]!, 1);
    expect(texts(socket)).toEqual(["a", "b", "c"]);
    ack(box, socket.frames("send")[2]!, 3); // out of order: c's ack frees a slot too
    expect(texts(socket)).toEqual(["a", "b", "c", "d"]);
    ack(box, socket.frames("send")[1]!, 2);
    ack(box, socket.frames("send")[3]!, 4);
    const results = await Promise.all(sends);
    expect(results.map((r) => r.id)).toEqual([1, 2, 3, 4]);
    expect(results.map((r) => r.cid)).toEqual(socket.frames("send").map((f) => f.cid));
    expect(box.size).toBe(0);
  });

  it("holds sends made while disconnected (and asks to connect), then sends them in order after the welcome", () => {
    const { wire, box } = outbox({ sendWindow: 8 });
    void box.send("c1", "one", {});
    void box.send("c1", "two", { images: ["img_1", { id: "img_2", type: "image/png", width: 1, height: 1, bytes: 1, thumb: { type: "image/png", width: 1, height: 1, bytes: 1 } }] });
    expect(wire.autoConnects).toBe(2);
    expect(box.size).toBe(2);
    const socket = wire.welcome();
    expect(socket.sent).toEqual([]); // nothing goes out until the connection says so
    box.pump();
    expect(socket.frames("send")).toEqual([
      { type: "send", ref: expect.stringMatching(/^s/), conv: "c1", cid: expect.any(String), text: "one" },
      { type: "send", ref: expect.stringMatching(/^s/), conv: "c1", cid: expect.any(String), text: "two", images: ["img_1", "img_2"] },
    ]);
  });

  it("resends what was on the wire after a reconnect with the same cid; the lost attempt's reply is ignored", async () => {
    const { wire, box } = outbox();
    const first = wire.welcome();
    const sent = box.send("c1", "hello", { cid: "cid-1" });
    const lost = first.frames("send")[0]!;
    wire.drop();
    box.requeue();
    expect(box.has(lost.ref)).toBe(false);
    const second = wire.welcome();
    box.pump();
    const again = second.frames("send")[0]!;
    expect(again).toMatchObject({ cid: "cid-1", text: "hello" });
    expect(again.ref).not.toBe(lost.ref);
    ack(box, again, 7, true);
    await expect(sent).resolves.toEqual({ conv: "c1", cid: "cid-1", id: 7, dup: true } satisfies SendResult);
  });

  it("retries a temporary error with the same cid after a backoff; later sends wait behind it", async () => {
    const { wire, box } = outbox({ sendWindow: 2, backoff: { initialMs: 1000, maxMs: 1000 } });
    const socket = wire.welcome();
    const a = box.send("c1", "a", {});
    const b = box.send("c1", "b", {});
    void box.send("c1", "c", {});
    const [fa, fb] = socket.frames("send");
    refuse(box, fa!, "RATE_LIMITED", true);
    // A slot is free, but c does not overtake a.
    expect(texts(socket)).toEqual(["a", "b"]);
    await vi.advanceTimersByTimeAsync(1000); // the backoff's upper bound
    expect(texts(socket)).toEqual(["a", "b", "a"]);
    const retry = socket.frames("send")[2]!;
    expect(retry.cid).toBe(fa!.cid);
    ack(box, fb!, 2);
    expect(texts(socket)).toEqual(["a", "b", "a", "c"]);
    ack(box, retry, 1);
    await expect(a).resolves.toMatchObject({ id: 1, cid: fa!.cid });
    await expect(b).resolves.toMatchObject({ id: 2 });
  });

  it("rejects on a permanent error with the server's code; the next send goes out", async () => {
    const { wire, box } = outbox();
    const socket = wire.welcome();
    const refused = box.send("c1", "x", {});
    void box.send("c1", "y", {});
    refuse(box, socket.frames("send")[0]!, "NOT_MEMBER", false);
    const err = await refused.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NatterError);
    expect(err).toMatchObject({ code: "NOT_MEMBER", temporary: false });
    expect(texts(socket)).toEqual(["x", "y"]);
  });

  it("rejects with TIMEOUT when not acknowledged within sendTimeoutMs, freeing its slot; a late ack is ignored", async () => {
    const { wire, box } = outbox({ sendTimeoutMs: 60_000 });
    const socket = wire.welcome();
    const slow = box.send("c1", "slow", {});
    const caught = slow.catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(30_000);
    const next = box.send("c1", "next", {});
    expect(texts(socket)).toEqual(["slow"]);
    await vi.advanceTimersByTimeAsync(30_000);
    expect(await caught).toMatchObject({ code: "TIMEOUT", temporary: true });
    expect(texts(socket)).toEqual(["slow", "next"]);
    expect(box.has(socket.frames("send")[0]!.ref)).toBe(false);
    ack(box, socket.frames("send")[1]!, 2);
    await expect(next).resolves.toMatchObject({ id: 2 });
    expect(box.size).toBe(0);
  });

  it("treats the same cid as one send: one frame, one promise", () => {
    const { wire, box } = outbox({ sendWindow: 4 });
    const socket = wire.welcome();
    const one = box.send("c1", "hi", { cid: "same" });
    const two = box.send("c1", "hi", { cid: "same" });
    expect(two).toBe(one);
    expect(socket.frames("send")).toHaveLength(1);
    expect(box.size).toBe(1);
  });

  it("rejects every send with the error that stopped the client, and refuses new ones once closed", async () => {
    const { wire, box } = outbox();
    wire.welcome();
    const pending = [box.send("c1", "a", {}), box.send("c1", "b", {})];
    const stop = new NatterError("UNAUTHENTICATED", "refused", { temporary: false, closeCode: 4401 });
    box.stopped(stop);
    for (const p of pending) await expect(p).rejects.toBe(stop);
    expect(box.size).toBe(0);
    wire.state = "closed";
    wire.socket = undefined;
    await expect(box.send("c1", "late", {})).rejects.toMatchObject({ code: "CLOSED" });
    expect(box.size).toBe(0);
  });
});
