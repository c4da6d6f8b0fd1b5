import { describe, expect, it } from "vitest";
import { NatterError } from "../core/errors.ts";
import { ClientFrame, HelloFrame, MAX_FRAME_DEPTH, decodeFrame, nestedDeeperThan, validateFrame, type RawFrame } from "./protocol.ts";

const MAX = 64 * 1024;
const frameOf = (v: unknown) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v));

function errorOf(f: () => unknown): { code: string; message: string; ref?: string } {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(NatterError);
    const e = err as NatterError & { ref?: string };
    return { code: e.code, message: e.message, ...(e.ref !== undefined ? { ref: e.ref } : {}) };
  }
  throw new Error("expected an error");
}

const validate = (v: unknown) => validateFrame(ClientFrame, decodeFrame(frameOf(v), false, MAX));

describe("decodeFrame", () => {
  it("refuses what is not a JSON object with a string type, in natter's words", () => {
    expect(errorOf(() => decodeFrame(frameOf("{nope"), false, MAX))).toEqual({ code: "BAD_JSON", message: "frame is not valid JSON" });
    expect(errorOf(() => decodeFrame(frameOf([1]), false, MAX)).code).toBe("BAD_FRAME");
    expect(errorOf(() => decodeFrame(frameOf({ ref: "a" }), false, MAX))).toEqual({ code: "BAD_FRAME", message: "type: required", ref: "a" });
    expect(errorOf(() => decodeFrame(frameOf({ type: 5 }), false, MAX))).toEqual({ code: "BAD_FRAME", message: "type: must be a string" });
    expect(errorOf(() => decodeFrame(frameOf({ type: "ping" }), true, MAX)).code).toBe("BAD_FRAME");
    expect(errorOf(() => decodeFrame(Buffer.alloc(MAX + 1, 32), false, MAX)).code).toBe("FRAME_TOO_LARGE");
  });

  it("never echoes an unknown type, whatever it holds", () => {
    for (const type of ["nope", "\u202e\u0000evil", "\ud800", "x".repeat(5000)]) {
      const e = errorOf(() => decodeFrame(frameOf({ type, ref: "r" }), false, MAX));
      expect(e).toEqual({ code: "UNKNOWN_TYPE", message: "unknown frame type: see the protocol's list of client frames", ref: "r" });
    }
  });

  it("refuses deep nesting before parsing it (a 5,000-deep type is BAD_FRAME, not a stack overflow)", () => {
    const deep = `{"type":${"[".repeat(5000)}${"]".repeat(5000)}}`;
    expect(errorOf(() => decodeFrame(frameOf(deep), false, MAX))).toEqual({ code: "BAD_FRAME", message: `frame nests deeper than ${MAX_FRAME_DEPTH} levels` });
    expect(nestedDeeperThan(`{"a":"[[[[[[[[[[[[[[[[[[[["}`, 2)).toBe(false); // brackets in strings do not count
    expect(nestedDeeperThan(`{"a":"\\"[","b":[[[]]]}`, 3)).toBe(true);
  });
});

describe("validateFrame", () => {
  it.each([
    [{ type: "typing", ref: "b" }, "conv: required"],
    [{ type: "typing", conv: 5 }, "conv: must be a string"],
    [{ type: "typing", conv: "a b" }, "conv: must be 1-64 characters of A-Z a-z 0-9 _ -"],
    [{ type: "typing", conv: "ab", extra: 1, "\u202eevil": 2 }, "frame: 2 unknown fields"],
    [{ type: "history", conv: "ab", limit: 1000 }, "limit: at most 100"],
    [{ type: "history", conv: "ab", limit: 1.5 }, "limit: must be an integer"],
    [{ type: "history", conv: "ab", before: 0 }, "before: must be greater than 0"],
    [{ type: "push.register", kind: "nope" }, "kind: must be one of webpush, webhook, fcm, apns"],
    [{ type: "push.register", kind: "webpush", endpoint: "x", keys: { p256dh: 3, auth: "a" } }, "keys.p256dh: must be a string"],
    [{ type: "group.create", name: "" }, "name: must not be empty"],
    [{ type: "group.create", name: "g", members: [1] }, "members[0]: must be a string"],
    [{ type: "presence", users: [] }, "users: must not be empty"],
    [{ type: "send", conv: "a", cid: "b", text: "x", images: "no" }, "images: must be a list"],
  ])("%j → BAD_FRAME %s", (frame, message) => {
    expect(errorOf(() => validate(frame))).toMatchObject({ code: "BAD_FRAME", message });
  });

  it("prefixes hello's fields", () => {
    const raw: RawFrame = { type: "hello", obj: { type: "hello", v: "1", token: "t", device: "d" } };
    expect(errorOf(() => validateFrame(HelloFrame, raw, "hello."))).toMatchObject({ code: "BAD_FRAME", message: "hello.v: must be a number" });
  });

  it("passes valid frames through with defaults", () => {
    expect(validate({ type: "history", conv: "c1", ref: "r" })).toEqual({ type: "history", conv: "c1", ref: "r", limit: 50 });
  });
});
