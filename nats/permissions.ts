// What each of natter's NATS identities may publish and subscribe to: the allow-lists the
// nats-server enforces (docs/security.md, "NATS identities"). Derived from the names in
// subjects.ts and from what each role's code does; everything not listed is refused by the server.
//
//   edge     WebSocket clients: sends, membership, receipts, catch-up reads, device presence,
//            discovery, uploads, push subscriptions; subscribes to its users' deliveries.
//   workers  fan-out, persister, presence, push sender, upload sweeper; creates and updates the
//            topology (streams, buckets, the workers' durable consumers).
//   ops      the operator (the `nats` CLI of docs/operations.md): the whole account. natter's
//            processes never hold it.
import { REPLAYABLE_WORKERS } from "./dead-letter.ts";
import { names, revocationsFilter, subjectPatterns } from "./subjects.ts";

/** The identities natter's processes connect as. */
export type NatsRole = "edge" | "workers";
/** Every identity of a deployment: natter's roles and the operator's. */
export type NatsIdentityRole = NatsRole | "ops";
export const NATS_IDENTITY_ROLES: readonly NatsIdentityRole[] = ["edge", "workers", "ops"];

interface NatsPermissions {
  publish: string[];
  subscribe: string[];
}

/** The shard counts the stream names depend on (streams.conversationShards, streams.inboxShards). */
interface PermissionShards {
  conversationShards: number;
  inboxShards: number;
}

/**
 * Prefix of a role's reply subjects (nats.js `inboxPrefix`): JetStream answers, direct gets and
 * pulled messages go to `<prefix>.…`, and a role may subscribe to its own prefix only, so an edge
 * cannot read what the workers ask for (or the other way round).
 */
export function inboxPrefix(role: NatsIdentityRole): string {
  return `_INBOX_${role}`;
}

const API = "$JS.API";

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

function streamsOf(s: PermissionShards) {
  const kv = (bucket: string) => names.kvStream(bucket);
  return {
    conversations: range(s.conversationShards).map(names.conversationStream),
    inboxes: range(s.inboxShards).map(names.inboxStream),
    push: range(s.inboxShards).map(names.pushStream),
    dead: names.deadLetterStream,
    contacts: kv(names.contactsBucket),
    userConversations: kv(names.userConversationsBucket),
    presence: kv(names.presenceBucket),
    presenceUsers: kv(names.presenceUsersBucket),
    edges: kv(names.edgesBucket),
    uploads: kv(names.uploadsBucket),
    pushSubscriptions: kv(names.pushSubscriptionsBucket),
    pushSent: kv(names.pushSentBucket),
    quota: kv(names.quotaBucket),
    revocations: kv(names.revocationsBucket),
    replay: names.replayStream,
  };
}

/** Every stream and bucket natter creates (whether push is on or not: a name that does not exist grants nothing). */
function allStreams(s: PermissionShards): string[] {
  const st = streamsOf(s);
  return [
    ...st.conversations,
    ...st.inboxes,
    st.dead,
    st.contacts,
    st.userConversations,
    st.presence,
    st.presenceUsers,
    st.edges,
    st.uploads,
    st.pushSubscriptions,
    st.pushSent,
    st.quota,
    st.revocations,
    st.replay,
    ...st.push,
  ];
}

/** Direct gets (`allow_direct`): by body, and the last message of a subject in the subject. */
const directGet = (stream: string) => [`${API}.DIRECT.GET.${stream}`, `${API}.DIRECT.GET.${stream}.>`];

/** The durable consumers the workers pull from, by stream. */
function workerConsumers(s: PermissionShards): { stream: string; consumer: string }[] {
  const st = streamsOf(s);
  return [
    ...st.conversations.flatMap((stream) => [
      { stream, consumer: names.fanoutConsumer },
      { stream, consumer: names.persisterConsumer },
    ]),
    { stream: st.presence, consumer: names.presenceConsumer },
    { stream: st.uploads, consumer: names.uploadsSweeperConsumer },
    ...st.push.map((stream) => ({ stream, consumer: names.pushSenderConsumer })),
    // Dead letters sent back by `natter dead replay`, one consumer per worker that takes them.
    ...REPLAYABLE_WORKERS.map((worker) => ({ stream: st.replay, consumer: names.replayConsumer(worker) })),
  ];
}

function edgePermissions(s: PermissionShards): NatsPermissions {
  const st = streamsOf(s);
  return {
    publish: [
      // The account's JetStream info (jetstreamManager) and the topology check at start and in /readyz.
      `${API}.INFO`,
      `${API}.STREAM.NAMES`,
      // Reads: membership, history and receipts; inboxes (catch-up); contacts, each user's
      // conversations, devices and presence, edges, uploads, push subscriptions, users' daily
      // counts, revoked tokens.
      ...[
        ...st.conversations,
        ...st.inboxes,
        st.contacts,
        st.userConversations,
        st.presence,
        st.presenceUsers,
        st.edges,
        st.uploads,
        st.pushSubscriptions,
        st.quota,
        st.revocations,
      ].flatMap(directGet),
      // How full each conversation stream is (chat sends stop before it is full), and how far
      // the persister is behind on it (sends stop before a message could expire unpersisted).
      ...st.conversations.map((stream) => `${API}.STREAM.INFO.${stream}`),
      ...st.conversations.map((stream) => `${API}.CONSUMER.INFO.${stream}.${names.persisterConsumer}`),
      // A receipt checks the conversation's last id on the stream leader.
      ...st.conversations.map((stream) => `${API}.STREAM.MSG.GET.${stream}`),
      // Writes: sends, membership changes, receipts; dm.open's contacts, device presence, the
      // edge's discovery entry, uploads, push subscriptions; typing signals (core NATS).
      subjectPatterns.messages,
      subjectPatterns.membership,
      subjectPatterns.receipts,
      names.kvStreamSubjects(names.contactsBucket),
      names.kvStreamSubjects(names.presenceBucket),
      names.kvStreamSubjects(names.edgesBucket),
      names.kvStreamSubjects(names.uploadsBucket),
      names.kvStreamSubjects(names.pushSubscriptionsBucket),
      names.kvStreamSubjects(names.quotaBucket),
      subjectPatterns.typing,
    ],
    subscribe: [
      `${inboxPrefix("edge")}.>`,
      // Any user may connect to any edge, so an edge may subscribe to any user's feeds (one
      // subject per user and kind: `deliver.>` and other wider wildcards are refused).
      subjectPatterns.deliveries,
      subjectPatterns.presence,
      subjectPatterns.typing,
      // Revocations as they are written: the edge closes the user's sockets at once.
      revocationsFilter(),
    ],
  };
}

function workersPermissions(s: PermissionShards): NatsPermissions {
  const st = streamsOf(s);
  const consumers = workerConsumers(s);
  return {
    publish: [
      `${API}.INFO`,
      `${API}.STREAM.NAMES`,
      // Every stream's usage for the natter_stream_usage gauge.
      `${API}.STREAM.LIST`,
      // The topology: created at start and updated to the configuration (never deleted or purged).
      ...allStreams(s).flatMap((stream) => [`${API}.STREAM.INFO.${stream}`, `${API}.STREAM.CREATE.${stream}`, `${API}.STREAM.UPDATE.${stream}`]),
      // Their own durable consumers: create/update, info, reset to the ack floor at start, pull, ack.
      ...consumers.flatMap(({ stream, consumer }) => [
        // (with a filter subject, the API subject ends in it)
        `${API}.CONSUMER.CREATE.${stream}.${consumer}`,
        `${API}.CONSUMER.CREATE.${stream}.${consumer}.>`,
        `${API}.CONSUMER.INFO.${stream}.${consumer}`,
        `${API}.CONSUMER.RESET.${stream}.${consumer}`,
        `${API}.CONSUMER.MSG.NEXT.${stream}.${consumer}`,
        `$JS.ACK.${stream}.${consumer}.>`,
      ]),
      // The push dispatcher's consumer of earlier versions, removed at start.
      ...st.conversations.map((stream) => `${API}.CONSUMER.DELETE.${stream}.${names.legacyPushConsumer}`),
      // Reads: membership, inbox chains, contacts, each user's conversations, devices and
      // presence, push subscriptions and send markers.
      ...[
        ...st.conversations,
        ...st.inboxes,
        st.contacts,
        st.userConversations,
        st.presence,
        st.presenceUsers,
        st.pushSubscriptions,
        st.pushSent,
        // The oldest dead letter's age (a gauge).
        st.dead,
      ].flatMap(directGet),
      // Writes: inbox copies, the conversation index, users' presence and its notices (core
      // NATS), push requests, send markers and removed subscriptions, dead letters.
      subjectPatterns.inboxes,
      names.kvStreamSubjects(names.userConversationsBucket),
      names.kvStreamSubjects(names.presenceUsersBucket),
      subjectPatterns.presence,
      subjectPatterns.push,
      names.kvStreamSubjects(names.pushSentBucket),
      names.kvStreamSubjects(names.pushSubscriptionsBucket),
      subjectPatterns.deadLetters,
    ],
    subscribe: [`${inboxPrefix("workers")}.>`],
  };
}

/** The allow-lists of one of natter's roles, for a deployment's shard counts. */
export function rolePermissions(role: NatsRole, shards: PermissionShards): NatsPermissions {
  switch (role) {
    case "edge":
      return edgePermissions(shards);
    case "workers":
      return workersPermissions(shards);
    default: {
      const never: never = role;
      throw new Error(`unknown NATS role ${String(never)}`);
    }
  }
}

/**
 * How a user proves who it is in the server's config: a public nkey, or a user name and a
 * password (`passwordVariable`: the name of an environment variable of the nats-server that holds
 * it, so the config file holds no secret; `password`: the value itself).
 */
type NatsUserEntry = { nkey: string } | { user: string; password: string } | { user: string; passwordVariable: string };

interface AuthorizationOptions {
  shards: PermissionShards;
  users: Record<NatsIdentityRole, NatsUserEntry>;
}

/** The nats-server's environment variable holding a role's password in deploy/nats/auth.conf. */
export function passwordVariable(role: NatsIdentityRole): string {
  return `NATS_${role.toUpperCase()}_PASSWORD`;
}

const quote = (s: string) => JSON.stringify(s);

function renderList(items: string[], indent: string): string {
  return `[\n${items.map((i) => `${indent}  ${quote(i)}`).join("\n")}\n${indent}]`;
}

function renderUser(role: NatsIdentityRole, entry: NatsUserEntry, shards: PermissionShards): string {
  const who =
    "nkey" in entry
      ? `nkey: ${quote(entry.nkey)}`
      : "passwordVariable" in entry
        ? `user: ${quote(entry.user)}, password: $${entry.passwordVariable}`
        : `user: ${quote(entry.user)}, password: ${quote(entry.password)}`;
  if (role === "ops") return `    # ops: the operator's identity, the whole account (no permissions block).\n    { ${who} }`;
  const p = rolePermissions(role, shards);
  return [
    `    # ${role}: ${p.publish.length} publish and ${p.subscribe.length} subscribe subjects; everything else is refused.`,
    `    {`,
    `      ${who}`,
    `      permissions: {`,
    `        publish: { allow: ${renderList(p.publish, "        ")} }`,
    `        subscribe: { allow: ${renderList(p.subscribe, "        ")} }`,
    `      }`,
    `    }`,
  ].join("\n");
}

/** The nats-server `authorization { users: […] }` block of natter's identities. */
export function renderAuthorization(opts: AuthorizationOptions): string {
  const users = NATS_IDENTITY_ROLES.map((role) => renderUser(role, opts.users[role], opts.shards));
  return [
    `# natter's NATS identities (nats/permissions.ts); conversation shards: ${opts.shards.conversationShards}, inbox shards: ${opts.shards.inboxShards}.`,
    "# No user means no connection: anonymous clients are refused.",
    "authorization {",
    "  users: [",
    users.join("\n"),
    "  ]",
    "}",
    "",
  ].join("\n");
}

/**
 * The authorization block of a cluster (deploy/nats/auth.conf, `natter nats-auth`): users named
 * after their roles, each password read from the nats-server's environment (passwordVariable).
 */
export function deployAuthorization(shards: PermissionShards): string {
  const users = Object.fromEntries(NATS_IDENTITY_ROLES.map((role) => [role, { user: role, passwordVariable: passwordVariable(role) }])) as Record<NatsIdentityRole, NatsUserEntry>;
  return [
    "# Generated by `natter nats-auth` (nats/permissions.ts) from natter's configuration; a test",
    "# (test/production-shape.test.ts) checks that it is current. Each password comes from the",
    `# nats-server's environment: ${NATS_IDENTITY_ROLES.map((r) => `$${passwordVariable(r)}`).join(", ")}.`,
    renderAuthorization({ shards, users }),
  ].join("\n");
}
