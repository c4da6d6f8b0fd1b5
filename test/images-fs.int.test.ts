// Images on the filesystem blob store (the run command's default) with the embedded SQLite store:
// fetches are streamed by the edge after the membership check. The suite is test/images.suite.ts.
import { readdir } from "node:fs/promises";
import path from "node:path";
import { imageSuite } from "./images.suite.ts";
import { useNats } from "./harness/nats.ts";
import { testConfig, useNode } from "./support/node.ts";

const MAX_BYTES = 2 * 1024 * 1024;
const ORPHAN_AFTER_SEC = 4;

const nats = useNats();
let blobDir = "";
const node = useNode(() => {
  const cfg = testConfig(nats.url, { images: { maxBytes: MAX_BYTES, orphanAfterSec: ORPHAN_AFTER_SEC } });
  blobDir = path.join(cfg.dataDir, "blobs", "objects");
  return cfg;
});

async function countFiles(dir: string): Promise<number> {
  let n = 0;
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    n += e.isDirectory() ? await countFiles(path.join(dir, e.name)) : 1;
  }
  return n;
}

imageSuite({ name: "fs", node, countBlobs: () => countFiles(blobDir), maxBytes: MAX_BYTES, orphanAfterSec: ORPHAN_AFTER_SEC, maxPerMessage: 10 });
