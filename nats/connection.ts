// natter's NATS connections: one per role in a process (the edge's, the workers'), each with its
// role's identity (connectRole).
//
// Writes are coalesced. nats.js writes its outbound buffer to the socket once per microtask, so
// code that publishes after an await (an ack after a store write, a send after a membership
// check) costs one socket write per message; measured: 100,000 publishes issued one per microtask
// took 100,001 writes and 1 s of CPU, and 85 writes and 0.1 s when flushed once the microtask
// queue drains (process.nextTick: never later than the current turn of the event loop). nats.js
// has no option for this, so the connection's protocol handler gets a deferred flush; a test
// (nats/connection.int.test.ts) checks it still takes with the installed nats.js.
import { readFileSync } from "node:fs";
import {
  AuthorizationError,
  connect,
  credsAuthenticator,
  nkeyAuthenticator,
  PermissionViolationError,
  usernamePasswordAuthenticator,
  type Authenticator,
  type ConnectionOptions,
  type NatsConnection,
} from "@nats-io/transport-node";
import type { NatsConfig, NatsCredential } from "../config/index.ts";
import { type Logger, NatterError } from "../core/index.ts";
import { inboxPrefix, type NatsIdentityRole } from "./permissions.ts";

/** Buffered bytes past which a flush happens at once (bounds memory in tight loops). */
const FLUSH_AT_BYTES = 256 * 1024;

interface ProtocolInternals {
  flushPending(): void;
  outbound: { size(): number };
}

/**
 * Makes `nc` write once per drained microtask queue instead of once per microtask. False (and
 * nothing changed) when the nats.js internals it relies on are not there.
 */
function coalesceWrites(nc: NatsConnection): boolean {
  const p = (nc as unknown as { protocol?: Partial<ProtocolInternals> }).protocol;
  if (!p || typeof p.flushPending !== "function" || typeof p.outbound?.size !== "function") return false;
  const protocol = p as ProtocolInternals;
  const flushNow = protocol.flushPending.bind(protocol);
  let scheduled = false;
  const run = () => {
    scheduled = false;
    flushNow();
  };
  protocol.flushPending = () => {
    if (protocol.outbound.size() >= FLUSH_AT_BYTES) {
      flushNow();
      return;
    }
    if (!scheduled) {
      scheduled = true;
      process.nextTick(run);
    }
  };
  return true;
}

interface NatsConnectOptions extends ConnectionOptions {
  log?: Logger | undefined;
}

/** Connects the way natter's processes do: reconnecting forever, no async stack traces, coalesced writes. */
async function connectNats(opts: NatsConnectOptions): Promise<NatsConnection> {
  const { log, ...options } = opts;
  const nc = await connect({
    maxReconnectAttempts: -1,
    // A stack trace captured for every request (a timer error and an error context) cost ~8% of
    // the process's CPU in the bench:burst profile; errors still say which operation failed.
    noAsyncTraces: true,
    ...options,
  });
  if (!coalesceWrites(nc)) log?.warn("nats.js internals changed: socket writes are not coalesced (slower, still correct)");
  return nc;
}

function readSetting(file: string, setting: string): Uint8Array {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new NatterError("CONFIG_INVALID", `${setting}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): point the setting at the file`, {
      cause: err,
    });
  }
}

/** nats.js's authenticator for a configured identity; the files are read now, so a missing one names its setting. */
function authenticatorOf(c: NatsCredential, setting: string): Authenticator {
  if (c.nkeySeedFile !== undefined) {
    const seed = new TextDecoder().decode(readSetting(c.nkeySeedFile, `${setting}.nkeySeedFile`)).trim();
    if (!seed.startsWith("SU")) throw new NatterError("CONFIG_INVALID", `${setting}.nkeySeedFile: ${c.nkeySeedFile} holds no user nkey seed (SU…)`);
    return nkeyAuthenticator(new TextEncoder().encode(seed));
  }
  if (c.credsFile !== undefined) return credsAuthenticator(readSetting(c.credsFile, `${setting}.credsFile`));
  return usernamePasswordAuthenticator(c.user ?? "", c.password ?? "");
}

function tlsOf(nats: NatsConfig): Pick<ConnectionOptions, "tls"> {
  const t = nats.tls;
  if (t === undefined || !(t.enabled ?? (t.caFile ?? t.certFile) !== undefined)) return {};
  for (const [key, file] of [["caFile", t.caFile], ["certFile", t.certFile], ["keyFile", t.keyFile]] as const) {
    if (file !== undefined) readSetting(file, `nats.tls.${key}`);
  }
  return { tls: { ...(t.caFile ? { caFile: t.caFile } : {}), ...(t.certFile ? { certFile: t.certFile, keyFile: t.keyFile } : {}) } };
}

/** Logs every permission the server refuses this connection: a refusal means an allow-list lacks what the code does. */
async function logRefusals(nc: NatsConnection, role: NatsIdentityRole, log: Logger): Promise<void> {
  for await (const s of nc.status()) {
    if (s.type === "error" && s.error instanceof PermissionViolationError) {
      log.error(
        { role, operation: s.error.operation, subject: s.error.subject },
        `NATS refused the ${role} identity a ${s.error.operation} to ${s.error.subject}: its allow-list (nats/permissions.ts) lacks it`,
      );
    }
  }
}

export interface RoleConnectOptions {
  nats: NatsConfig;
  /** The servers to dial (the configured ones, or the embedded server's URL). */
  servers: string[];
  role: NatsIdentityRole;
  /** Client name, as the server's monitoring shows it. */
  name: string;
  log: Logger;
}

/**
 * Connects as one of natter's roles: its configured identity (nats.credentials.<role>), TLS as
 * configured, and reply subjects under the role's own prefix (its permissions allow that one).
 * A refused identity or certificate is CONFIG_INVALID naming the setting; an unreachable server
 * UNAVAILABLE.
 */
export async function connectRole(o: RoleConnectOptions): Promise<NatsConnection> {
  const setting = `nats.credentials.${o.role}`;
  const credential = o.nats.credentials?.[o.role];
  if (!credential) o.log.warn({ role: o.role }, `connecting to NATS without credentials: set ${setting} unless this server is meant to let anyone in`);
  const options: NatsConnectOptions = {
    servers: o.servers,
    name: o.name,
    inboxPrefix: inboxPrefix(o.role),
    ...(credential ? { authenticator: authenticatorOf(credential, setting) } : {}),
    ...tlsOf(o.nats),
    log: o.log,
  };
  let nc: NatsConnection;
  try {
    nc = await connectNats(options);
  } catch (err) {
    const where = o.servers.join(", ");
    if (err instanceof AuthorizationError || /authorization|authentication/i.test(String((err as Error).message))) {
      throw new NatterError(
        "CONFIG_INVALID",
        credential
          ? `NATS at ${where} refused the ${o.role} identity (${setting}): check it against the server's users`
          : `NATS at ${where} requires credentials: set ${setting} (user and password, nkeySeedFile or credsFile)`,
        { cause: err },
      );
    }
    const e = err as Error & { code?: string; cause?: { code?: string; message?: string } };
    const code = e.code ?? e.cause?.code;
    if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS|tls/i.test(`${code ?? ""} ${e.message} ${e.cause?.message ?? ""}`)) {
      throw new NatterError("CONFIG_INVALID", `TLS to NATS at ${where} failed (${code ?? e.message}): check nats.tls (caFile: the CA that signed the servers' certificates; certFile and keyFile if they verify clients)`, {
        cause: err,
      });
    }
    throw new NatterError("UNAVAILABLE", `cannot connect to NATS at ${where}: is it running?`, { cause: err });
  }
  void logRefusals(nc, o.role, o.log);
  return nc;
}
