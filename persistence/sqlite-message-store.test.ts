import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { imageIndexConformance } from "../test/conformance/image-index.ts";
import { messageStoreConformance } from "../test/conformance/message-store.ts";
import { EmbeddedMessageStore } from "./sqlite-message-store.ts";

const dir = mkdtempSync(path.join(os.tmpdir(), "natter-sqlite-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

messageStoreConformance("embedded (SQLite)", async () => new EmbeddedMessageStore(path.join(dir, "conformance.sqlite")));
imageIndexConformance("embedded (SQLite)", async () => new EmbeddedMessageStore(path.join(dir, "images.sqlite")));

describe("EmbeddedMessageStore", () => {
  it("keeps messages across a reopen of the same file", async () => {
    const file = path.join(dir, "reopen.sqlite");
    const a = new EmbeddedMessageStore(file);
    await a.putMessages([{ conv: "c1", id: 5, kind: "msg", from: "u", device: "d", cid: "x", text: "kept", ts: 1 }]);
    await a.close();
    const b = new EmbeddedMessageStore(file);
    expect((await b.history("c1", { limit: 5 })).map((m) => m.text)).toEqual(["kept"]);
    await b.close();
  });
});
