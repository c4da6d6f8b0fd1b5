// An image-processing child process starts here (media/processor.ts forks it). A plain module, so
// that it runs under any parent (`node --import tsx`, vitest): it loads the TypeScript one
// through tsx's API.
import { tsImport } from "tsx/esm/api";

await tsImport("./process-child.ts", import.meta.url);
