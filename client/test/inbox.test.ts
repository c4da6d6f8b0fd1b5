// The inbox on its own: each item emitted once (by cursor), cursor writes that never overlap and
// end on the newest, a cursor the server refused (forgotten, then a reset after the welcome), a
// server reset, and a failing store reported without stopping delivery.
import { describe, expect, it } from "vitest";
import { MemoryCursorStore, type CursorStore } from "../src/cursor-store.js";
import { Emitter, type NatterEvents } from "../src/events.js";
import { Inbox } from "../src/inbox.js";

/** A store whose writes finish when the test says. */
class SlowStore implements CursorStore {
  readonly writes: { cursor: number; done: () => void }[] = [];
  inFlight = 0;
  maxInFlight = 0;
  value: number | undefined;
  get(): number | undefined {
    return this.value;
  }
  set(_key: string, cursor: number): Promise<void> {
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    return new Promise((resolve) => {
      this.writes.push({
        cursor,
        done: () => {
          this.value = cursor;
          this.inFlight--;
          resolve();
        },
      });
    });
  }
  delete(): void {
    this.value = undefined;
  }
}

function inbox(store: CursorStore): { inbox: Inbox; seen: { [K in keyof NatterEvents]?: NatterEvents[K][] } } {
  const events = new Emitter();
  const seen: { [K in keyof NatterEvents]?: NatterEvents[K][] } = {};
  for (const type of ["message", "reset", "error"] as const) events.on(type, (e) => {
    seen[type] ??= [];
    (seen[type] as unknown[]).push(e);
  });
  return { inbox: new Inbox(store, "u/d", events), seen };
}

const msg = (cursor: number) => ({ type: "msg" as const, cursor, conv: "c", id: cursor, from: "v", device: "x", cid: `m${cursor}`, text: "hi", ts: 1 });
const flush = () => new Promise((r) => setTimeout(r, 0));

describe("inbox", () => {
  it("emits each item once, in cursor order, and resumes from the stored cursor", async () => {
    const store = new MemoryCursorStore();
    store.set("u/d", 10);
    const { inbox: box, seen } = inbox(store);
    await box.load();
    expect(box.load()).toBeUndefined(); // read once
    expect(box.cursor).toBe(10);
    for (const c of [9, 10, 11, 11, 12]) box.message(msg(c));
    expect(seen.message?.map((m) => m.cursor)).toEqual([11, 12]);
    await flush();
    expect(store.get("u/d")).toBe(12);
  });

  it("never overlaps cursor writes, and the last one written is the newest", async () => {
    const store = new SlowStore();
    const { inbox: box } = inbox(store);
    box.welcomed(10);
    for (const c of [11, 12, 13]) box.message(msg(c));
    expect(store.writes.map((w) => w.cursor)).toEqual([10]);
    store.writes[0]!.done();
    await flush();
    // 11 and 12 were overtaken while 10 was being written: only the newest follows.
    expect(store.writes.map((w) => w.cursor)).toEqual([10, 13]);
    store.writes[1]!.done();
    await flush();
    expect(store.maxInFlight).toBe(1);
    expect(store.value).toBe(13);
  });

  it("forgets a cursor the server refused, starts where the next welcome says, and tells the app with a reset", async () => {
    const store = new MemoryCursorStore();
    store.set("u/d", 10_000);
    const { inbox: box, seen } = inbox(store);
    await box.load();
    box.refused("cursor 10000 is ahead of the inbox");
    expect(box.cursor).toBeUndefined(); // the next hello goes without one
    await flush();
    expect(store.get("u/d")).toBeUndefined();
    box.welcomed(42);
    expect(seen.reset).toBeUndefined(); // not before the welcome is announced
    box.opened(42);
    expect(seen.reset).toEqual([{ cursor: 42, reason: "the server did not know cursor 10000: cursor 10000 is ahead of the inbox" }]);
    await flush();
    expect(store.get("u/d")).toBe(42);
    box.opened(42);
    expect(seen.reset).toHaveLength(1);
  });

  it("moves to the server's cursor on a reset frame and says why", async () => {
    const store = new MemoryCursorStore();
    const { inbox: box, seen } = inbox(store);
    box.welcomed(5);
    box.reset({ type: "reset", cursor: 90, reason: "older than the inbox's retention" });
    expect(seen.reset).toEqual([{ cursor: 90, reason: "older than the inbox's retention" }]);
    box.message(msg(60));
    expect(seen.message).toBeUndefined();
    await flush();
    expect(store.get("u/d")).toBe(90);
  });

  it("reports a failing store as an error event and goes on delivering", async () => {
    const store: CursorStore = { get: () => undefined, set: () => Promise.reject(new Error("quota exceeded")), delete: () => undefined };
    const { inbox: box, seen } = inbox(store);
    box.welcomed(1);
    box.message(msg(2));
    await flush();
    expect(seen.error).toMatchObject([{ code: "INTERNAL", temporary: true, message: "the cursor store failed: quota exceeded" }]);
    box.message(msg(3));
    expect(seen.message?.map((m) => m.cursor)).toEqual([2, 3]);
  });
});
