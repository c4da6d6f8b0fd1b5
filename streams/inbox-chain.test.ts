import { describe, expect, it } from "vitest";
import { CHAIN_LENGTH, decodePrev, encodePrev } from "./inbox-chain.ts";

describe("the Natter-Prev header", () => {
  it.each([
    { seqs: [], pending: 0, open: false },
    { seqs: [1_000_000, 999_990, 5], pending: 0, open: false },
    { seqs: [42], pending: 3, open: false },
    { seqs: [77, 12], pending: 0, open: true },
    { seqs: Array.from({ length: CHAIN_LENGTH }, (_, i) => 9_000_000_000 - i * 1234), pending: 40, open: false },
  ])("round-trips %j", (list) => {
    const value = encodePrev(list);
    expect(value).toMatch(/^[0-9a-z~,+-]+$/);
    expect(decodePrev(value)).toEqual(list);
  });

  it("is short: 32 neighbours' gaps in well under 200 bytes", () => {
    const seqs = Array.from({ length: CHAIN_LENGTH }, (_, i) => 5_000_000 - i * 5000);
    expect(encodePrev({ seqs, pending: 0, open: false }).length).toBeLessThan(200);
  });

  it("reads an absent or malformed list as none (the entry is then found by scanning)", () => {
    for (const bad of [undefined, "", "x!", "10,20", "~0,5", "5,,1", Array.from({ length: CHAIN_LENGTH + 1 }, () => "1").join(",")]) {
      expect(decodePrev(bad), String(bad)).toBeUndefined();
    }
  });
});
