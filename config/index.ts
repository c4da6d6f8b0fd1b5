export { loadConfig } from "./load.ts";
export * from "./schema.ts";
export { REPO_ROOT, binPath } from "./tools.ts";
export { weakSecretReason } from "./secrets.ts";
