// The protocol doc must name every error code and close code the server can use.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { CLOSE, ERRORS } from "../core/errors.ts";
import { CLIENT_FRAME_TYPES } from "../edge/protocol.ts";

const doc = readFileSync(new URL("./protocol.md", import.meta.url), "utf8");

describe("docs/protocol.md", () => {
  it.each(Object.keys(ERRORS))("documents error %s", (code) => {
    expect(doc).toContain(`\`${code}\``);
  });
  it.each(Object.entries(CLOSE).map(([k, v]) => [k, v.code]))("documents close code %s (%i)", (_k, code) => {
    expect(doc).toMatch(new RegExp(`^\\| ${code} \\|`, "m"));
  });
  it.each([...CLIENT_FRAME_TYPES])("documents the %s frame", (type) => {
    expect(doc).toContain(`\`${type}\``);
  });
});
