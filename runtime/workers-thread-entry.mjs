// The workers' thread starts here. Node 20 does not apply the main thread's `--import tsx` to a
// worker thread's entry, so this plain module loads the TypeScript one through tsx's API.
import { tsImport } from "tsx/esm/api";

await tsImport("./workers-thread.ts", import.meta.url);
