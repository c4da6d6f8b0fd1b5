export { loadConfig, envSettings, checkConfig, type LoadOptions } from "./load.ts";
export * from "./schema.ts";
export { REPO_ROOT, cacheDir, binPath, cassandraLibDir, TOOLS, type ToolName } from "./tools.ts";
