export { createEdge, type Edge, type EdgeDeps, type Readiness, type ReadinessCheck } from "./server.ts";
export { mintToken, verifyToken, type TokenSettings } from "./auth.ts";
export { PROTOCOL_VERSION, type ServerFrame, type ClientFrame, type HistoryMessage, type HistoryReader } from "./protocol.ts";
export type { SessionPush, PushTarget } from "./session.ts";
