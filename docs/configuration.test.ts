import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { CONFIG_DOC, withTable } from "../scripts/config-docs.ts";

describe("docs/configuration.md", () => {
  it("lists every setting of the schema (run `npm run docs:config` after changing it)", () => {
    const doc = readFileSync(CONFIG_DOC, "utf8");
    expect(doc).toBe(withTable(doc));
  });
});
