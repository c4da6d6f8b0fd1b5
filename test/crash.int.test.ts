// kill -9 of natter's whole process tree (the node with its workers' thread, and its nats-server)
// in the middle of a busy chat mix, then a restart on the same data. The devices are the SDK, as
// users run it: they reconnect with backoff, resume from their cursors and resend what was not
// acknowledged with the same client id. In the end every device of every member holds each
// message of its conversations exactly once and in order, and every send resolved once.
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { WebSocket } from "ws";
import { afterAll, describe, expect, it } from "vitest";
import { MemoryCursorStore, NatterClient, type ChatMessage } from "../client/src/index.js";
import { devToken, spawnNatter, type NatterProcess } from "./support/natter-process.ts";

const RECEIVERS = 24;
const SENDERS = 4;
/** Sends acked before the kill: enough that the fan-out, the persister and the inboxes are mid-way. */
const KILL_AFTER_ACKS = 1500;
/** Sends after the kill, from before it was noticed: they resolve once the node is back. */
const MORE_SENDS = 100;
// A fast sender is the point here, not the send limit (its own test is in limits.int.test.ts).
const ENV = { NATTER_EDGE__SENDS_PER_SECOND: "10000" };

const dataDir = mkdtempSync(path.join(os.tmpdir(), "natter-crash-"));
const running: NatterProcess[] = [];
afterAll(async () => {
  for (const n of running) await n.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

interface Conv {
  id: string;
  members: string[];
  sender: string;
}

describe("kill -9 of the whole node mid-burst", () => {
  it("keeps every acked message, once and in order, on every device after a restart; unacked sends land once", async () => {
    let natter = await spawnNatter(ENV, { dataDir });
    running.push(natter);
    let url = natter.url;
    const got = new Map<string, Map<string, number[]>>(); // user -> conv -> ids received
    const device = async (user: string) => {
      const client = new NatterClient({
        url: () => url,
        user,
        device: "d",
        token: () => devToken(url, user),
        WebSocket,
        cursorStore: new MemoryCursorStore(),
        sendWindow: 8,
        backoff: { initialMs: 100, maxMs: 1000 },
      });
      const mine = new Map<string, number[]>();
      got.set(user, mine);
      client.on("message", (m: ChatMessage) => {
        const ids = mine.get(m.conv) ?? [];
        ids.push(m.id);
        mine.set(m.conv, ids);
      });
      await client.connect();
      return client;
    };
    const receivers = await Promise.all(Array.from({ length: RECEIVERS }, (_, i) => device(`cr_u${i}`)));
    const senders = await Promise.all(Array.from({ length: SENDERS }, (_, i) => device(`cr_s${i}`)));
    const clients = [...receivers, ...senders];
    try {
      // 1:1 conversations (a sender with each of its receivers) and groups of 6 receivers + a sender.
      const convs: Conv[] = [];
      for (let i = 0; i < RECEIVERS; i++) {
        const s = i % SENDERS;
        const c = await senders[s]!.openDm(`cr_u${i}`);
        convs.push({ id: c.id, members: c.members, sender: `cr_s${s}` });
      }
      for (let g = 0; g < RECEIVERS / 6; g++) {
        const s = g % SENDERS;
        const c = await senders[s]!.createGroup(`crash ${g}`, Array.from({ length: 6 }, (_, j) => `cr_u${g * 6 + j}`));
        convs.push({ id: c.id, members: c.members, sender: `cr_s${s}` });
      }

      // Each sender sends round-robin over its conversations (the SDK keeps 8 in flight) until
      // KILL_AFTER_ACKS sends were acked; then the whole tree is killed while sends are in flight.
      const acked = new Map<string, Set<number>>(); // conv -> ids acked
      let ackCount = 0;
      let killing: Promise<void> | undefined;
      const sent: Promise<void>[] = [];
      const send = (s: number, k: number) => {
        const mine = convs.filter((c) => c.sender === `cr_s${s}`);
        const conv = mine[k % mine.length]!;
        return senders[s]!.send(conv.id, `${s}-${k}`).then((r) => {
          const ids = acked.get(conv.id) ?? new Set<number>();
          ids.add(r.id);
          acked.set(conv.id, ids);
          if (++ackCount === KILL_AFTER_ACKS) killing = natter.kill();
        });
      };
      // 16 lanes per sender, each waiting for its send's ack before the next: with the SDK's window
      // of 8, every sender has sends queued and in flight at all times (the peak of the mix).
      let next = 0;
      const lane = async (s: number) => {
        while (!killing && next < 20_000) await send(s, next++);
      };
      const lanes = senders.flatMap((_, s) => Array.from({ length: 16 }, () => lane(s)));
      await Promise.race([Promise.all(lanes), expect.poll(() => killing !== undefined, { timeout: 120_000, interval: 20 }).toBe(true)]);
      expect(killing, "the node was killed mid-burst").toBeDefined();
      await killing;
      const ackedAtKill = ackCount;
      // Sends made while the node is down wait in the SDKs and go out after the restart.
      for (let k = 0; k < MORE_SENDS / SENDERS; k++) for (let s = 0; s < SENDERS; s++) sent.push(send(s, 100_000 + k));

      natter = await spawnNatter(ENV, { dataDir });
      running.push(natter);
      url = natter.url;
      // The lanes' sends that were in flight at the kill resolve now too (resent with their cids).
      await Promise.all([...sent, ...lanes]);

      // Every member's device ends with exactly the conversation's acked ids, in order.
      const expected = (conv: Conv) => [...(acked.get(conv.id) ?? [])].sort((a, b) => a - b);
      const complete = () => convs.every((c) => c.members.every((u) => (got.get(u)!.get(c.id)?.length ?? 0) >= expected(c).length));
      await expect.poll(complete, { timeout: 60_000, interval: 250 }).toBe(true);
      for (const c of convs) {
        for (const u of c.members) expect(got.get(u)!.get(c.id) ?? [], `${u} in ${c.id}`).toEqual(expected(c));
      }
      const total = convs.reduce((n, c) => n + expected(c).length, 0);
      expect(total).toBe(ackCount);
      console.log(`crash: ${ackedAtKill} acked before kill -9, ${ackCount - ackedAtKill} after the restart (in flight at the kill or sent while down); ${total} messages on ${clients.length} devices, each once and in order`);
    } finally {
      for (const c of clients) c.close();
    }
  }, 240_000);
});
