// What docs/protocol.md promises, read from its tables: the error codes, the close codes and the
// frame types a server sends. Tests compare what natter does with these, so a behaviour the page
// does not document fails a test.
import { readFileSync } from "node:fs";
import { REPO_ROOT } from "../../config/index.ts";

export const PROTOCOL_DOC = readFileSync(`${REPO_ROOT}/docs/protocol.md`, "utf8");

/** The rows' first cells of the table under `heading` (a `## ` heading of the page). */
function firstCells(heading: string): string[] {
  const at = PROTOCOL_DOC.indexOf(`\n## ${heading}\n`);
  if (at < 0) throw new Error(`docs/protocol.md has no "## ${heading}" section`);
  const next = PROTOCOL_DOC.indexOf("\n## ", at + 4);
  const section = PROTOCOL_DOC.slice(at, next < 0 ? undefined : next);
  return section
    .split("\n")
    .filter((l) => l.startsWith("| ") && !l.startsWith("|---"))
    .slice(1) // the header row
    .map((l) => l.split("|")[1]!.trim());
}

/** Error codes of the "Errors" table. */
export const DOCUMENTED_ERRORS = new Set(firstCells("Errors").map((c) => c.replaceAll("`", "")));

/** Close codes of the "Close codes" table. */
export const DOCUMENTED_CLOSE_CODES = new Set(firstCells("Close codes").map(Number));

/** The "Frame costs" table: what each client frame costs of its user's budget, in sends. */
export const DOCUMENTED_FRAME_COSTS: Record<string, number> = (() => {
  const at = PROTOCOL_DOC.indexOf("\n### Frame costs\n");
  if (at < 0) throw new Error('docs/protocol.md has no "### Frame costs" section');
  const lines = PROTOCOL_DOC.slice(at).split("\n");
  const start = lines.findIndex((l) => l.startsWith("|"));
  const end = lines.findIndex((l, i) => i > start && !l.startsWith("|"));
  const rows = lines.slice(start + 2, end < 0 ? undefined : end);
  return Object.fromEntries(rows.map((l) => l.split("|").map((c) => c.trim())).map((c) => [c[1]!.replaceAll("`", ""), Number(c[2])]));
})();

/** Frame types of the "Server frames" table (a cell may list several). */
export const DOCUMENTED_SERVER_FRAMES = new Set(firstCells("Server frames").flatMap((c) => [...c.matchAll(/`([^`]+)`/g)].map((m) => m[1]!)));
