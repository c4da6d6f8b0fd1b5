// Wiring only: how a natter node is put together from the layers below (docs/architecture.md).
export { startNatter, type NatterNode } from "./node.ts";
export { revokeTokens, tokenSettings } from "./tokens.ts";
export { ensureNatterTopology } from "./topology.ts";
export { connectOps } from "./ops-connection.ts";
