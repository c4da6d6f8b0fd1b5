// natter's one configuration schema. Defaults live here; every module receives its typed
// section. Values may come from a file (JSON or YAML) or from NATTER_* environment variables,
// so scalar leaves also accept their string spelling ("8080", "true", "a,b").
// Long (≈460 lines) on purpose: every setting with its comment in one file, which docs/configuration.md
// is generated from.
import { z } from "zod";
import { weakSecretReason } from "./secrets.ts";

const int = (min: number, max: number) =>
  z.preprocess(
    (v) => (typeof v === "string" && v.trim() !== "" ? Number(v) : v),
    z.number().int().min(min).max(max),
  );

const bool = () =>
  z.preprocess((v) => {
    if (typeof v !== "string") return v;
    const s = v.trim().toLowerCase();
    if (["true", "1", "yes", "on"].includes(s)) return true;
    if (["false", "0", "no", "off"].includes(s)) return false;
    return v;
  }, z.boolean());

const list = () =>
  z.preprocess(
    (v) => (typeof v === "string" ? v.split(",").map((s) => s.trim()).filter((s) => s !== "") : v),
    z.array(z.string().min(1)),
  );

const json = <T extends z.ZodType>(schema: T) =>
  z.preprocess((v) => {
    if (typeof v !== "string") return v;
    try {
      return JSON.parse(v) as unknown;
    } catch {
      return v;
    }
  }, schema);

const DAY_S = 24 * 3600;

/**
 * A secret setting: never logged, and also accepted from a file named by `<VARIABLE>_FILE`
 * (config/load.ts finds these by their `secret` mark).
 */
const secret = <T extends z.ZodType>(schema: T) => schema.meta({ secret: true });

const LogSchema = z.strictObject({
  level: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  /** Human-readable logs; defaults to whether stdout is a terminal. */
  pretty: bool().optional(),
});

/**
 * One NATS identity: a user name and password, an nkey seed file, or a `.creds` file (JWT and
 * seed, decentralized auth). Exactly one of the three.
 */
const NatsCredentialSchema = z
  .strictObject({
    user: z.string().min(1).optional(),
    password: secret(z.string().min(1).optional()),
    /** File holding the identity's nkey seed (`SU…`); the server knows its public key. */
    nkeySeedFile: z.string().min(1).optional(),
    /** A `.creds` file (user JWT and nkey seed), for servers in operator (JWT) mode. */
    credsFile: z.string().min(1).optional(),
  })
  .superRefine((c, ctx) => {
    const forms = [c.user !== undefined || c.password !== undefined, c.nkeySeedFile !== undefined, c.credsFile !== undefined].filter(Boolean).length;
    if (forms !== 1) ctx.addIssue({ code: "custom", message: "give exactly one of: user and password, nkeySeedFile, credsFile" });
    else if ((c.user === undefined) !== (c.password === undefined)) ctx.addIssue({ code: "custom", message: "give both user and password" });
  });

const NatsTlsSchema = z
  .strictObject({
    /** Connect with TLS (the server's certificate is verified). Defaults to on when a file below is set. */
    enabled: bool().optional(),
    /** CA certificate (PEM) that signed the servers' certificates; unset: the system's CAs. */
    caFile: z.string().min(1).optional(),
    /** Client certificate and its key (PEM), for servers that verify clients (`tls { verify: true }`). */
    certFile: z.string().min(1).optional(),
    keyFile: z.string().min(1).optional(),
  })
  .superRefine((t, ctx) => {
    if ((t.certFile === undefined) !== (t.keyFile === undefined)) ctx.addIssue({ code: "custom", message: "give both certFile and keyFile, or neither" });
    if (t.enabled === false && (t.caFile ?? t.certFile) !== undefined) ctx.addIssue({ code: "custom", message: "files are set but enabled is false: remove them or enable TLS" });
  });

const NatsSchema = z.strictObject({
  /** Connect to these NATS servers (comma-separated). Unset: `natter start` runs its own nats-server. */
  servers: list().optional(),
  /**
   * The identity each role connects as (docs/security.md): `edge` for the WebSocket side,
   * `workers` for the workers (their own connection, also in a worker thread). Only with
   * `servers`: the embedded nats-server's identities are generated in `<dataDir>/nats/auth/`.
   * Unset: that role connects without credentials (the server must allow it).
   */
  credentials: z
    .strictObject({
      edge: NatsCredentialSchema.optional(),
      workers: NatsCredentialSchema.optional(),
      /** The operator's identity, for natter's admin commands (`natter revoke`, `natter dead`); no natter process holds it. Default with the embedded server: `<dataDir>/nats/auth/ops.nk`. */
      ops: NatsCredentialSchema.optional(),
    })
    .optional(),
  /** TLS for the connections to `servers`. */
  tls: NatsTlsSchema.optional(),
  embedded: z
    .strictObject({
      /** nats-server binary; defaults to the one `npm run obtain` caches. */
      binary: z.string().optional(),
      host: z.string().default("127.0.0.1"),
      port: int(1, 65535).default(4222),
      httpPort: int(1, 65535).default(8222),
      /** The server config natter starts with (`nats-server.conf` at the repository root). */
      configFile: z.string().optional(),
    })
    .prefault({}),
}).superRefine((n, ctx) => {
  if (n.servers !== undefined) return;
  const why = "applies to nats.servers; the embedded nats-server (nats.servers unset) uses the identities natter generates in <dataDir>/nats/auth/ and listens on loopback";
  if (n.credentials !== undefined) ctx.addIssue({ code: "custom", path: ["credentials"], message: why });
  if (n.tls !== undefined) ctx.addIssue({ code: "custom", path: ["tls"], message: why });
});

const StreamsSchema = z.strictObject({
  /** JetStream replicas for natter's streams and buckets: 1 on one node, 3 in a cluster. */
  replicas: int(1, 5).default(1),
  conversationShards: int(1, 256).default(1),
  inboxShards: int(1, 256).default(1),
  /** How long a client message id is deduplicated by JetStream (seconds). */
  duplicateWindowSec: int(10, 7 * DAY_S).default(600),
  /** How long conversation streams keep messages; the store keeps them beyond. */
  conversationMaxAgeSec: int(1, 365 * DAY_S).default(7 * DAY_S),
  /**
   * Edges refuse new messages (STORE_BEHIND) to a conversation stream whose oldest message not
   * yet written to the store is this share of conversationMaxAgeSec old (percent), so a store or
   * persister outage stops sends loudly instead of letting messages expire unpersisted; the rest
   * of the retention is the time left to bring the persister back (docs/operations.md).
   */
  refuseSendsAtBacklogPct: int(1, 95).default(50),
  /** How long device inboxes are kept; a cursor older than this gets a reset. */
  inboxMaxAgeSec: int(60, 365 * DAY_S).default(7 * DAY_S),
  /** How long a worker may hold a message unacked before JetStream redelivers it (seconds). */
  ackWaitSec: int(1, 3600).default(30),
  /** Upper bound of unacknowledged messages per worker consumer. */
  maxAckPending: int(1, 100_000).default(1000),
  /**
   * Upper bound of unacknowledged messages of the persister's consumer (and how far it pulls
   * ahead). Deeper than the others: under a backlog the persister writes each conversation's
   * waiting messages together, and the window decides how many wait.
   */
  persisterMaxAckPending: int(1, 100_000).default(4096),
  /**
   * JetStream file storage natter's streams and buckets may fill, in bytes, shared out by kind
   * (docs/operations.md, "Storage bounds"). It is reserved on the server: keep it under the
   * nats-server's max_file_store (20 GB in the shipped configuration).
   */
  storageBytes: int(64 * 1024 * 1024, 2 ** 50).default(16 * 1024 ** 3),
});

const QuotaSchema = z.strictObject({
  /** Messages one user may send per UTC day, on all its devices and edges; one more is refused QUOTA_EXCEEDED. 0: no quota. */
  messagesPerDay: int(0, 100_000_000).default(20_000),
  /**
   * Bytes one user's messages may store per UTC day: each message's text times the members of its
   * conversation (every member's inbox keeps a copy). 0: no quota.
   */
  storedBytesPerDay: int(0, 2 ** 50).default(256 * 1024 * 1024),
});

const AuthSchema = z
  .strictObject({
    /**
     * HS256 secret for tokens: at least 32 characters, 8 different ones, not a repeated piece nor a
     * placeholder ("changeme", "secret"…). Unset: `natter start` keeps a random one in the data folder.
     */
    jwtSecret: secret(
      z
        .string()
        .superRefine((v, ctx) => {
          const why = weakSecretReason(v);
          if (why !== undefined) ctx.addIssue({ code: "custom", message: `too weak to sign tokens: it ${why}` });
        })
        .optional(),
    ),
    issuer: z.string().default("natter"),
    audience: z.string().default("natter"),
    /** Serve POST /dev/token (mint a token for any user name): for development only, and refused unless edge.host is a loopback address. */
    devTokens: bool().default(false),
    /** Lifetime of the tokens natter mints (`natter token`, POST /dev/token), seconds; at most maxTokenAgeSec. */
    tokenTtlSec: int(60, 30 * DAY_S).default(DAY_S),
    /** A token is refused this long after its `iat` whatever its `exp` says (seconds); tokens without `iat`, `exp` or `sub` are refused. */
    maxTokenAgeSec: int(60, 365 * DAY_S).default(7 * DAY_S),
    /** A socket whose token expired gets this long to send a fresh one (`token` frame) before it is closed 4401 (seconds). */
    expiryGraceSec: int(1, 3600).default(30),
  })
  .refine((a) => a.tokenTtlSec <= a.maxTokenAgeSec, { path: ["tokenTtlSec"], message: "must not exceed auth.maxTokenAgeSec: tokens would be refused before they expire" });

const EdgeSchema = z.strictObject({
  /** Serve HTTP and WebSocket clients from this process (off for a workers-only process). */
  enabled: bool().default(true),
  host: z.string().default("127.0.0.1"),
  port: int(0, 65535).default(8080),
  /**
   * Connections the kernel holds for the edge until it accepts them (the listen backlog; Linux
   * caps it at net.core.somaxconn). Past it a connection waits for the client's SYN retries (1 s,
   * 3 s, 7 s, …): a reconnect storm overflowed Node's default of 511.
   */
  listenBacklog: int(1, 65_535).default(4096),
  region: z.string().default("local"),
  /** Largest WebSocket frame accepted (bytes). */
  maxPayloadBytes: int(256, 1024 * 1024).default(64 * 1024),
  /** Longest text of one message (characters). */
  maxTextChars: int(1, 100_000).default(4000),
  /**
   * Origins allowed to open a WebSocket (e.g. https://chat.example.com). Empty: only the edge's own
   * host (an Origin whose host:port is the request's Host); requests without an Origin (apps, not
   * browsers) are always allowed. Others are closed 4403.
   */
  allowedOrigins: list().default([]),
  helloTimeoutMs: int(100, 60_000).default(5000),
  /** Bytes buffered for a slow socket before it is closed with "resume from your cursor". */
  maxBufferedBytes: int(1024, 64 * 1024 * 1024).default(1024 * 1024),
  /**
   * Each user's budget, in sends per second (token bucket, burst 2×), shared by all its devices
   * on all edges; every frame type costs a share of a send (docs/protocol.md, "Limits").
   */
  sendsPerSecond: int(1, 10_000).default(50),
  /** Frames of one socket being handled at once; one more is refused RATE_LIMITED. */
  maxInFlightPerSocket: int(1, 1000).default(16),
  /** Connections of one user (this edge's sockets, and its devices online on other edges); one more is closed 4503. */
  maxConnectionsPerUser: int(1, 1000).default(10),
  /**
   * Sockets this edge holds; one more is closed 4503 with a retry hint. 0: as many as the process's
   * open-file limit leaves room for (less 512 for everything else).
   */
  maxConnections: int(0, 10_000_000).default(0),
  /** Sockets from one remote address that have not said hello yet (0: no cap; behind a proxy, raise it or set 0). */
  maxPendingPerAddress: int(0, 1_000_000).default(100),
  /**
   * Hellos handled at once (token, subscriptions, catch-up). More wait for a slot, in order, up to
   * 4 s; one that would wait longer is closed 4503 with a retry hint (a time reserved for it).
   */
  maxHellosInProgress: int(1, 100_000).default(128),
  /**
   * Conversations one user may be a member of (1:1 and groups); opening, creating or being added
   * to one more is refused with TOO_MANY_CONVERSATIONS. At most 10,000: what a listing returns.
   */
  maxConversationsPerUser: int(1, 10_000).default(10_000),
  /** Bad frames tolerated per minute before the socket is closed. */
  badFramesPerMinute: int(1, 10_000).default(30),
  /** The URL clients reach this edge at, as discovery returns it; defaults to the listen URL. */
  publicUrl: z.url().optional(),
  /** Connections this edge is sized for: discovery ranks edges by connections / capacity. */
  capacity: int(1, 10_000_000).default(10_000),
  /** This edge's id in the edges bucket (1-64 of A-Z a-z 0-9 _ -); defaults to <hostname>-<port>. */
  id: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/).optional(),
});

const PresenceSchema = z.strictObject({
  /** Track which devices are online (heartbeats, KV bucket `presence`) and tell contacts. */
  enabled: bool().default(true),
  /** A device is offline at most this long after its last heartbeat (per-key TTL, seconds); clients heartbeat every ttlSec/3. */
  ttlSec: int(2, 3600).default(30),
  /** How long expiry markers and removal tombstones stay in the bucket (seconds); a presence worker down longer misses those expiries. */
  markerTtlSec: int(1, 7 * DAY_S).default(600),
});

const DiscoverySchema = z.strictObject({
  /** Each edge's registration in the KV bucket `edges` expires after this (seconds); refreshed every ttlSec/3 while healthy. */
  ttlSec: int(2, 3600).default(15),
  /** How many edges GET /discovery returns, best first. */
  results: int(1, 100).default(3),
});

const SimpleReplication = z.strictObject({
  class: z.literal("SimpleStrategy"),
  replicationFactor: int(1, 9).default(1),
});
const NetworkTopologyReplication = z.strictObject({
  class: z.literal("NetworkTopologyStrategy"),
  /** Replicas per data center, e.g. {"dc1": 3}. */
  dataCenters: json(z.record(z.string(), z.number().int().min(1).max(9))),
});

const CassandraStoreSchema = z.strictObject({
  kind: z.literal("cassandra"),
  contactPoints: list().default(["127.0.0.1:9042"]),
  localDataCenter: z.string().default("datacenter1"),
  keyspace: z.string().regex(/^[a-z][a-z0-9_]{0,47}$/).default("natter"),
  replication: z
    .discriminatedUnion("class", [SimpleReplication, NetworkTopologyReplication])
    .prefault({ class: "SimpleStrategy" }),
  consistency: z.enum(["ONE", "LOCAL_ONE", "QUORUM", "LOCAL_QUORUM", "ALL"]).default("LOCAL_QUORUM"),
  /** Apply schema migrations when natter starts (otherwise run `natter migrate`). */
  migrateOnStart: bool().default(true),
  username: z.string().optional(),
  password: secret(z.string().optional()),
});

const SqliteStoreSchema = z.strictObject({
  kind: z.literal("sqlite"),
  /** Database file; defaults to `<dataDir>/natter.sqlite`. */
  path: z.string().optional(),
});

const StoreSchema = z.discriminatedUnion("kind", [SqliteStoreSchema, CassandraStoreSchema]);

const FsBlobsSchema = z.strictObject({
  kind: z.literal("fs"),
  /** Folder for blobs; defaults to `<dataDir>/blobs`. */
  dir: z.string().optional(),
});

const S3BlobsSchema = z.strictObject({
  kind: z.literal("s3"),
  endPoint: z.string(),
  port: int(1, 65535).default(9000),
  useSSL: bool().default(false),
  accessKey: z.string().min(1),
  secretKey: secret(z.string().min(1)),
  bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/),
  region: z.string().default("us-east-1"),
  /** Base URL clients reach the S3 server at, for presigned GETs (e.g. https://media.example.com); defaults to the endpoint above. */
  publicUrl: z.url().optional(),
});

const BlobsSchema = z.discriminatedUnion("kind", [FsBlobsSchema, S3BlobsSchema]);

const ImagesSchema = z.strictObject({
  /** Largest image file accepted by POST /images (bytes). */
  maxBytes: int(1024, 256 * 1024 * 1024).default(16 * 1024 * 1024),
  /** Largest decoded image (width × height × frames), checked from the header before decoding: refuses decompression bombs. */
  maxPixels: int(1, 1_000_000_000).default(50_000_000),
  /** Images one message may carry. */
  maxPerMessage: int(1, 100).default(10),
  /** Longest side of a thumbnail (pixels). */
  thumbSize: int(16, 2048).default(320),
  /** Uploads not attached to a message within this time are removed by the workers (seconds). */
  orphanAfterSec: int(1, 30 * DAY_S).default(DAY_S),
  /** How long a presigned GET URL of an image is valid (seconds; S3 blobs only). */
  urlTtlSec: int(1, 7 * DAY_S).default(300),
  /** Uploads decoded at once per edge (each in its own child process); up to 8× this many more are read or wait, beyond that RATE_LIMITED. */
  maxConcurrent: int(1, 64).default(2),
  /** Uploads one user may have in progress on an edge (read, waiting or processed); more: RATE_LIMITED. */
  maxUploadsPerUser: int(1, 64).default(4),
  /** An upload's body must average at least this many bytes per second since it began, checked from 5 s on; slower: cut with UPLOAD_TIMEOUT. */
  uploadMinBytesPerSec: int(1, 1024 * 1024 * 1024).default(8 * 1024),
  /** An upload's whole body must arrive within this time (seconds); later: cut with UPLOAD_TIMEOUT. */
  uploadTimeoutSec: int(1, 3600).default(300),
  /** Decoding, re-encoding and the thumbnail of one image must finish within this time (seconds); the child process is killed past it (IMAGE_TIMEOUT). */
  processTimeoutSec: int(1, 600).default(30),
});

const WorkersSchema = z.strictObject({
  /** Run the workers (fan-out, persister, push, presence, sweeper) in this process. */
  enabled: bool().default(true),
  /**
   * With an edge in the same process, run the workers in a worker thread (own NATS connection and
   * store handle), so the edge's event loop and the workers' each get a core. false: one thread.
   */
  thread: bool().default(true),
  /** The workers' HTTP port: GET /metrics (Prometheus), /healthz, /readyz. 0 picks a free port. */
  httpHost: z.string().default("127.0.0.1"),
  httpPort: int(0, 65535).default(9090),
  /**
   * Store writes of the persister in flight: one per conversation at a time, carrying all its
   * waiting messages (one batch under a backlog). Fewer slots make bigger batches (cheaper for a
   * busy Cassandra); more let many quiet conversations be written side by side at lower latency.
   */
  persistConcurrency: int(1, 4096).default(64),
});

const PushSchema = z.strictObject({
  /** Push notifications to recipients with no online device: the workers queue and send them, edges take push.register. */
  enabled: bool().default(true),
  /** What a notification says: "preview" (the sender and the start of the text) or "generic" ("New message", nothing more). */
  content: z.enum(["preview", "generic"]).default("preview"),
  /** Characters of a message's text in a preview; longer text is cut and ends with "…". */
  previewChars: int(1, 200).default(100),
  /** Push subscriptions one user may register (all devices together). */
  maxSubscriptionsPerUser: int(1, 100).default(10),
  /** Hosts (exact names or IP literals) exempt from the target rules (https only, public addresses only): for development and tests, e.g. 127.0.0.1. */
  allowHosts: list().default([]),
  /** Attempts to send one push before it is dead-lettered. */
  maxAttempts: int(1, 100).default(8),
  /** Delay before the first retry (ms); it doubles per attempt, up to retryMaxMs. */
  retryBaseMs: int(10, 3_600_000).default(1000),
  retryMaxMs: int(10, 3_600_000).default(300_000),
  /** Time limit of one request to a push service or webhook (ms). */
  timeoutMs: int(100, 60_000).default(10_000),
  /** A push not sent within this time after its message is dropped; also the Web Push TTL (seconds). */
  maxAgeSec: int(60, 7 * DAY_S).default(DAY_S),
  /** Pushes sent at once by one worker process. */
  concurrency: int(1, 1024).default(64),
  vapid: z
    .strictObject({
      /** VAPID key pair (URL-safe base64, as `web-push generate-vapid-keys` prints); set both, and the same on every node. Unset: `natter start` keeps a pair in <dataDir>/vapid.json. */
      publicKey: z.string().optional(),
      privateKey: secret(z.string().optional()),
      /** Contact for push services: a mailto: or https: URL. */
      subject: z.string().regex(/^(mailto:|https:\/\/)/).default("mailto:natter@localhost"),
    })
    .prefault({}),
  /** Firebase Cloud Messaging (HTTP v1): `fcm` subscriptions are accepted only when serviceAccountFile is set. */
  fcm: z
    .strictObject({
      /** The service account's key file (JSON, Firebase console → Project settings → Service accounts); keep it out of the repository. */
      serviceAccountFile: z.string().min(1).optional(),
      /** Project the pushes are sent in; defaults to the key file's project_id. */
      projectId: z.string().min(1).optional(),
      /** API root: https, or http for a host in allowHosts (tests). */
      baseUrl: z.string().url().default("https://fcm.googleapis.com"),
    })
    .prefault({}),
  /** Apple Push Notification service, token-based: `apns` subscriptions are accepted only when keyFile is set (with keyId, teamId, topic). */
  apns: z
    .strictObject({
      /** The APNs signing key (.p8 file from Apple's developer account); keep it out of the repository. */
      keyFile: z.string().min(1).optional(),
      /** The key's 10-character id. */
      keyId: z.string().regex(/^[A-Z0-9]{10}$/, "must be the 10-character key id").optional(),
      /** The 10-character team id the key belongs to. */
      teamId: z.string().regex(/^[A-Z0-9]{10}$/, "must be the 10-character team id").optional(),
      /** The app's bundle id (apns-topic). */
      topic: z.string().min(1).optional(),
      /** production (api.push.apple.com) or sandbox (api.sandbox.push.apple.com, development builds). */
      environment: z.enum(["production", "sandbox"]).default("production"),
      /** Overrides the environment's host: https, or http for a host in allowHosts (tests). */
      baseUrl: z.string().url().optional(),
    })
    .superRefine((a, ctx) => {
      const missing = (["keyFile", "keyId", "teamId", "topic"] as const).filter((k) => a[k] === undefined);
      if (missing.length === 4) return;
      for (const k of missing) ctx.addIssue({ code: "custom", path: [k], message: "required with the other push.apns settings (keyFile, keyId, teamId, topic)" });
    })
    .prefault({}),
});

export const ConfigSchema = z.strictObject({
  /** Folder for natter's own data when it runs embedded (nats-server's store, SQLite, blobs). */
  dataDir: z.string().default(".data"),
  log: LogSchema.prefault({}),
  nats: NatsSchema.prefault({}),
  streams: StreamsSchema.prefault({}),
  auth: AuthSchema.prefault({}),
  edge: EdgeSchema.prefault({}),
  quota: QuotaSchema.prefault({}),
  store: StoreSchema.prefault({ kind: "sqlite" }),
  blobs: BlobsSchema.prefault({ kind: "fs" }),
  images: ImagesSchema.prefault({}),
  workers: WorkersSchema.prefault({}),
  presence: PresenceSchema.prefault({}),
  discovery: DiscoverySchema.prefault({}),
  push: PushSchema.prefault({}),
});

export type Config = z.output<typeof ConfigSchema>;
export type CassandraStoreConfig = z.output<typeof CassandraStoreSchema>;
export type BlobsConfig = Config["blobs"];
export type NatsConfig = Config["nats"];
export type NatsCredential = NonNullable<NatsConfig["credentials"]>["edge"] & {};
export type EdgeConfig = Config["edge"];
export type QuotaConfig = Config["quota"];
export type StreamsConfig = Config["streams"];
export type PresenceConfig = Config["presence"];
export type PushConfig = Config["push"];
export type ImagesConfig = Config["images"];
