// The edge's whole public surface: the server (createEdge), tokens, and the protocol types other
// layers need (the history reader the runtime wires, push's session interface).
export { createEdge, type Edge, type Readiness, type ReadinessCheck } from "./server.ts";
export { mintToken, type TokenSettings } from "./auth.ts";
export { Revocations } from "./revocations.ts";
export type { SessionPush } from "./services.ts";
