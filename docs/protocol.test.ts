// The protocol doc must name every error code, close code and frame type the server can use; the
// fuzz test (test/fuzz.int.test.ts) checks what a real edge answers against the same tables.
import { describe, expect, it } from "vitest";
import { CLOSE, ERRORS, LIBRARY_CLOSE_CODES } from "../core/errors.ts";
import { CLIENT_FRAME_TYPES } from "../edge/protocol.ts";
import { FRAME_COSTS } from "../edge/limits.ts";
import { DOCUMENTED_CLOSE_CODES, DOCUMENTED_ERRORS, DOCUMENTED_FRAME_COSTS, PROTOCOL_DOC } from "../test/support/protocol-doc.ts";

describe("docs/protocol.md", () => {
  it.each(Object.keys(ERRORS))("documents error %s in the Errors table", (code) => {
    expect(DOCUMENTED_ERRORS).toContain(code);
  });
  it.each([...Object.entries(CLOSE).map(([k, v]) => [k, v.code] as const), ...Object.entries(LIBRARY_CLOSE_CODES)])(
    "documents close code %s (%i) in the Close codes table",
    (_k, code) => {
      expect(DOCUMENTED_CLOSE_CODES).toContain(code);
    },
  );
  it.each([...CLIENT_FRAME_TYPES])("documents the %s frame", (type) => {
    expect(PROTOCOL_DOC).toContain(`\`${type}\``);
  });
  it("states every frame's cost as the edge charges it", () => {
    expect(DOCUMENTED_FRAME_COSTS).toEqual(FRAME_COSTS);
  });
  it("documents no error code natter does not have", () => {
    expect([...DOCUMENTED_ERRORS].filter((c) => !(c in ERRORS))).toEqual([]);
  });
});
