// The presence worker on the in-memory store: user transitions only, to contacts, with last seen.
import { describe, expect, it, onTestFinished, vi } from "vitest";
import { silentLogger } from "../core/logger.ts";
import { MemoryPresence } from "./memory-presence.ts";
import { PresenceWorker, presenceOf, type PresenceEntry } from "./worker.ts";

function setup() {
  const store = new MemoryPresence({ ttlMs: 60_000 });
  const sent: { to: readonly string[]; entry: PresenceEntry }[] = [];
  const contacts: Record<string, string[]> = { alice: ["bob", "carol"] };
  const worker = new PresenceWorker({
    store,
    contactsOf: async (u) => contacts[u] ?? [],
    notify: (to, entry) => sent.push({ to, entry }),
    log: silentLogger(),
  });
  onTestFinished(async () => {
    await worker.stop();
    store.close();
  });
  return { store, worker, sent };
}

describe("PresenceWorker", () => {
  it("tells contacts when a user comes online and when its last device leaves, with last seen", async () => {
    const { store, worker, sent } = setup();
    await worker.start();
    const phone = await store.touch("alice", "phone");
    await vi.waitFor(() => expect(sent).toHaveLength(1));
    expect(sent[0]).toEqual({ to: ["bob", "carol"], entry: { user: "alice", online: true, rev: expect.any(Number) } });
    const laptop = await store.touch("alice", "laptop");
    await store.leave("alice", "phone", phone.revision);
    await new Promise((r) => setTimeout(r, 100));
    expect(sent).toHaveLength(1); // still online through the laptop
    const before = Date.now();
    await store.leave("alice", "laptop", laptop.revision);
    await vi.waitFor(() => expect(sent).toHaveLength(2));
    const off = sent[1]!.entry;
    expect(off).toMatchObject({ user: "alice", online: false });
    expect(off.lastSeen).toBeGreaterThanOrEqual(before);
    expect(off.rev).toBeGreaterThan(sent[0]!.entry.rev);
    expect(await presenceOf(store, ["alice", "zed"])).toEqual([off, { user: "zed", online: false, rev: 0 }]);
  });

  it("two workers applying the same change publish it once", async () => {
    const { store, worker, sent } = setup();
    await store.touch("alice", "phone");
    const other = new PresenceWorker({ store, contactsOf: async () => ["bob"], notify: (to, entry) => sent.push({ to, entry }), log: silentLogger() });
    const change = { user: "alice", device: "phone", online: true, at: Date.now() };
    await Promise.all([worker.apply(change), other.apply(change), worker.apply(change)]);
    expect(sent).toHaveLength(1);
  });

  it("a user without contacts changes state silently", async () => {
    const { store, worker, sent } = setup();
    await store.touch("loner", "d");
    await worker.apply({ user: "loner", device: "d", online: true, at: 1 });
    expect(sent).toHaveLength(0);
    expect((await presenceOf(store, ["loner"]))[0]).toMatchObject({ online: true });
  });
});
