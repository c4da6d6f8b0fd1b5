// The arithmetic of the limits: per-user budgets shared by devices, frame costs, edge admission.
import { describe, expect, it } from "vitest";
import { NatterError } from "../core/index.ts";
import { silentLogger } from "../core/logger.ts";
import { EdgeAdmission, type HelloSlot, type Refusal } from "./admission.ts";
import { FRAME_COSTS, TokenBucket, UserBudgets } from "./limits.ts";

/** How many frames of `type` the user's budget on this edge grants before RATE_LIMITED. */
function granted(budgets: UserBudgets, user: string, type: keyof typeof FRAME_COSTS, tries = 10_000): number {
  for (let i = 0; i < tries; i++) {
    try {
      budgets.charge(user, type);
    } catch (err) {
      expect(err).toBeInstanceOf(NatterError);
      expect((err as NatterError).code).toBe("RATE_LIMITED");
      return i;
    }
  }
  return tries;
}

describe("UserBudgets", () => {
  const stopped = () => 0;

  it("grants a burst of twice the rate, in sends, whatever the frame type costs", () => {
    for (const type of Object.keys(FRAME_COSTS) as (keyof typeof FRAME_COSTS)[]) {
      const budgets = new UserBudgets({ sendsPerSecond: 10 }, stopped);
      budgets.attach("u");
      expect(granted(budgets, "u", type), type).toBe(Math.floor(20 / FRAME_COSTS[type] + 1e-9));
    }
  });

  it("splits a user's budget between edges by the share of its devices each holds", () => {
    const edge1 = new UserBudgets({ sendsPerSecond: 10 }, stopped);
    const edge2 = new UserBudgets({ sendsPerSecond: 10 }, stopped);
    edge1.attach("u", 1); // the phone, alone at first
    edge2.attach("u", 2); // the laptop, on another edge, sees two devices
    edge1.devices("u", 2); // the presence notice reaches the first edge
    expect(granted(edge1, "u", "send") + granted(edge2, "u", "send")).toBe(20);
  });

  it("gives the whole budget back to the devices that remain", () => {
    let now = 0;
    const budgets = new UserBudgets({ sendsPerSecond: 10 }, () => now);
    budgets.attach("u", 2);
    expect(granted(budgets, "u", "send")).toBe(10);
    budgets.devices("u", 1); // the other device left
    now += 1000;
    expect(granted(budgets, "u", "send")).toBe(10); // a whole second at the full rate; the burst refills over time
    now += 10_000;
    expect(granted(budgets, "u", "send")).toBe(20);
  });

  it("keeps one budget for the sockets of a user on one edge, past the last one for as long as it takes to refill", () => {
    let now = 0;
    const budgets = new UserBudgets({ sendsPerSecond: 5 }, () => now);
    budgets.attach("u");
    budgets.attach("u");
    expect(budgets.sockets("u")).toBe(2);
    expect(granted(budgets, "u", "send")).toBe(10);
    budgets.detach("u");
    budgets.detach("u");
    expect(budgets.sockets("u")).toBe(0);
    budgets.attach("u"); // reconnecting at once buys no fresh burst
    expect(granted(budgets, "u", "send")).toBe(0);
    budgets.detach("u");
    now += 2000;
    budgets.attach("u");
    expect(granted(budgets, "u", "send")).toBe(10);
  });
});

describe("TokenBucket", () => {
  it("refills at its rate up to its burst", () => {
    let now = 0;
    const b = new TokenBucket(2, 4, () => now);
    expect([b.take(), b.take(), b.take(), b.take(), b.take()]).toEqual([true, true, true, true, false]);
    now += 500;
    expect([b.take(), b.take()]).toEqual([true, false]);
    now += 60_000;
    expect(b.take(4)).toBe(true);
    expect(b.take(0.5)).toBe(false);
  });
});

describe("EdgeAdmission", () => {
  const edge = { maxConnections: 0, maxPendingPerAddress: 2, maxHellosInProgress: 1 };

  it("caps sockets below the open-file limit, leaving 512 descriptors for everything else", () => {
    expect(new EdgeAdmission(edge, silentLogger(), { fileLimit: 1024 }).maxSockets).toBe(512);
    expect(new EdgeAdmission({ ...edge, maxConnections: 100 }, silentLogger(), { fileLimit: 1024 }).maxSockets).toBe(100);
    expect(new EdgeAdmission({ ...edge, maxConnections: 5000 }, silentLogger(), { fileLimit: 1024 }).maxSockets).toBe(512);
  });

  it("refuses past the cap with a jittered retry hint, and admits again when a socket closes", () => {
    const a = new EdgeAdmission({ ...edge, maxConnections: 2, maxPendingPerAddress: 0 }, silentLogger(), { fileLimit: 100_000, random: () => 0.5 });
    expect(a.open("1.1.1.1")).toBeUndefined();
    expect(a.open("2.2.2.2")).toBeUndefined();
    expect(a.open("3.3.3.3")).toMatchObject({ retryAfterMs: 5000 });
    const early = new EdgeAdmission({ ...edge, maxConnections: 0 }, silentLogger(), { fileLimit: 513, random: () => 0 });
    expect(early.open("x")).toBeUndefined();
    expect(early.open("y")).toMatchObject({ retryAfterMs: 2500 });
    a.closed();
    expect(a.open("3.3.3.3")).toBeUndefined();
  });

  it("caps sockets per address until they say hello", () => {
    const a = new EdgeAdmission(edge, silentLogger(), { fileLimit: 100_000 });
    expect(a.open("1.1.1.1")).toBeUndefined();
    expect(a.open("1.1.1.1")).toBeUndefined();
    expect(a.open("1.1.1.1")?.message).toMatch(/waiting to say hello/);
    expect(a.open("2.2.2.2")).toBeUndefined();
    a.helloDone("1.1.1.1");
    expect(a.open("1.1.1.1")).toBeUndefined();
  });

  it("bounds hellos in progress: the next ones wait for a slot, in order; one whose socket closed gives up its place", async () => {
    const a = new EdgeAdmission(edge, silentLogger(), { fileLimit: 100_000, sweepMs: 0 });
    const first = await a.startHello();
    expect("end" in first).toBe(true);
    const got: string[] = [];
    let thirdGone = false;
    const waiters = (["second", "third", "fourth"] as const).map((name) =>
      a.startHello(name === "third" ? () => thirdGone : undefined).then((r) => {
        got.push(`${name}: ${"end" in r ? "slot" : "refused"}`);
        return r;
      }),
    );
    expect(a.waiting).toBe(3);
    thirdGone = true;
    (first as HelloSlot).end();
    const second = (await waiters[0]) as HelloSlot;
    expect(got).toEqual(["second: slot"]);
    second.end();
    second.end(); // twice is once
    const fourth = await waiters[2];
    expect(got).toEqual(["second: slot", "third: refused", "fourth: slot"]);
    expect(a.waiting).toBe(0);
    (fourth as HelloSlot).end();
    expect("end" in (await a.startHello())).toBe(true);
  });

  it("tells a hello that waited 4 s for a slot when to come back", async () => {
    let now = 0;
    const a = new EdgeAdmission(edge, silentLogger(), { fileLimit: 100_000, sweepMs: 0, now: () => now, random: () => 0.5 });
    await a.startHello();
    const waiter = a.startHello();
    now = 3999;
    a.sweep();
    expect(a.waiting).toBe(1);
    now = 4000;
    a.sweep();
    expect(await waiter).toMatchObject({ message: expect.stringMatching(/busy/), retryAfterMs: expect.any(Number) });
    expect((await waiter as Refusal).retryAfterMs).toBeGreaterThanOrEqual(500);
  });

  it("refuses at once a hello that would wait more than 4 s at the rate hellos finish, and spaces the refused at that rate", async () => {
    let now = 0;
    const a = new EdgeAdmission({ ...edge, maxHellosInProgress: 2 }, silentLogger(), { fileLimit: 100_000, sweepMs: 0, now: () => now, random: () => 0.5 });
    const slots = [(await a.startHello()) as HelloSlot, (await a.startHello()) as HelloSlot];
    // Busy: a hello finishes every 10 ms while others wait.
    for (let i = 0; i < 20; i++) {
      const next = a.startHello();
      now += 10;
      slots.shift()!.end();
      slots.push((await next) as HelloSlot);
    }
    // A crowd: 400 wait (4 s at 10 ms each), the next are told to come back 10 ms apart, after them.
    const crowd = Array.from({ length: 400 }, () => a.startHello());
    expect(a.waiting).toBe(400);
    const refused = [(await a.startHello()) as Refusal, (await a.startHello()) as Refusal, (await a.startHello()) as Refusal];
    expect(refused.map((r) => r.retryAfterMs)).toEqual([4010, 4020, 4030]);
    expect(a.waiting).toBe(400);
    a.close();
    await Promise.all(crowd);
  });
});
