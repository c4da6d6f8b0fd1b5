// The edge's whole public surface: the server (createEdge), tokens, and the protocol types other
// layers need (the history reader the runtime wires, push's session interface).
export { createEdge, type Edge, type EdgeDeps, type Readiness, type ReadinessCheck } from "./server.ts";
export { mintToken, verifyToken, type TokenSettings } from "./auth.ts";
export { PROTOCOL_VERSION, type ServerFrame, type ClientFrame, type HistoryMessage, type HistoryReader } from "./protocol.ts";
export type { InboxReader, SessionPush, PushTarget } from "./services.ts";
