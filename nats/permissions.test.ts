import { describe, expect, it } from "vitest";
import { inboxPrefix, renderAuthorization, rolePermissions } from "./permissions.ts";
import {
  conversationSubject,
  deadLetterSubject,
  deliverySubject,
  inboxSubject,
  kvKeySubject,
  membershipSubject,
  names,
  presenceDeviceKey,
  presenceSubject,
  pushSentKey,
  pushSubject,
  receiptSubject,
  subjectPatterns,
  revocationsFilter,
  typingSubject,
} from "./subjects.ts";

/** NATS subject matching: `*` one token, `>` one or more at the end. */
function matches(pattern: string, subject: string): boolean {
  const p = pattern.split(".");
  const s = subject.split(".");
  for (let i = 0; i < p.length; i++) {
    if (p[i] === ">") return s.length > i;
    if (s[i] === undefined || (p[i] !== "*" && p[i] !== s[i])) return false;
  }
  return p.length === s.length;
}
const allowed = (list: string[], subject: string) => list.some((p) => matches(p, subject));

const t = { conversationShards: 3, inboxShards: 2 };
const edge = rolePermissions("edge", t);
const workers = rolePermissions("workers", t);

describe("NATS permissions", () => {
  it("each subject pattern matches what its builder makes, on every shard", () => {
    for (const id of ["alice", "bob", "carol", "dave", "g_team", "dm_x"]) {
      expect(matches(subjectPatterns.messages, conversationSubject(t, id))).toBe(true);
      expect(matches(subjectPatterns.membership, membershipSubject(t, id))).toBe(true);
      expect(matches(subjectPatterns.receipts, receiptSubject(t, id, "alice"))).toBe(true);
      expect(matches(subjectPatterns.inboxes, inboxSubject(t, id))).toBe(true);
      expect(matches(subjectPatterns.deliveries, deliverySubject(t, id))).toBe(true);
      expect(matches(subjectPatterns.typing, typingSubject(t, id))).toBe(true);
      expect(matches(subjectPatterns.presence, presenceSubject(t, id))).toBe(true);
      expect(matches(subjectPatterns.push, pushSubject(t, id))).toBe(true);
    }
    expect(matches(subjectPatterns.deadLetters, deadLetterSubject("fanout", "CONV_0"))).toBe(true);
    // Patterns do not overlap: a message is not a membership event, nor the other way round.
    expect(matches(subjectPatterns.messages, membershipSubject(t, "g_team"))).toBe(false);
  });

  it("lets the edge send, read, keep presence and feeds, and nothing that destroys or forges", () => {
    for (const s of [conversationSubject(t, "g"), membershipSubject(t, "g"), receiptSubject(t, "g", "alice"), typingSubject(t, "bob")]) expect(allowed(edge.publish, s), s).toBe(true);
    for (const b of [names.contactsBucket, names.presenceBucket, names.edgesBucket, names.uploadsBucket, names.pushSubscriptionsBucket]) {
      expect(allowed(edge.publish, kvKeySubject(b, "alice.x")), b).toBe(true);
    }
    for (const shard of [0, 1]) expect(allowed(edge.publish, `$JS.API.DIRECT.GET.${names.inboxStream(shard)}`)).toBe(true);
    expect(allowed(edge.publish, `$JS.API.DIRECT.GET.${names.conversationStream(2)}.conv.2.g`)).toBe(true);
    const refused = [
      inboxSubject(t, "alice"),
      deliverySubject(t, "alice"),
      presenceSubject(t, "alice"),
      pushSubject(t, "alice"),
      deadLetterSubject("fanout", "CONV_0"),
      kvKeySubject(names.presenceUsersBucket, "alice"),
      kvKeySubject(names.userConversationsBucket, "alice.g"),
      kvKeySubject(names.pushSentBucket, pushSentKey("alice", "s", "CONV_0", 1)),
      `$JS.API.DIRECT.GET.${names.deadLetterStream}`,
      `$JS.API.DIRECT.GET.${names.kvStream(names.pushSentBucket)}`,
      `$JS.API.DIRECT.GET.${names.pushStream(0)}`,
    ];
    for (const s of refused) expect(allowed(edge.publish, s), s).toBe(false);
    // No JetStream API call that creates, changes, deletes or purges anything, and no consumer of
    // its own: it only reads how far the persister is behind (the send gate).
    expect(edge.publish.filter((s) => /\.(CREATE|UPDATE|DELETE|PURGE|RESET)\.|CONSUMER|SNAPSHOT|RESTORE|\$JS\.ACK/.test(s) && !/^\$JS\.API\.CONSUMER\.INFO\.CONV_\d+\.persister$/.test(s))).toEqual([]);
    expect(edge.subscribe).toEqual([`${inboxPrefix("edge")}.>`, subjectPatterns.deliveries, subjectPatterns.presence, subjectPatterns.typing, revocationsFilter()]);
    // Writes to the revocations bucket are the operator's (natter revoke), not an edge's.
    expect(allowed(edge.publish, kvKeySubject(names.revocationsBucket, "alice"))).toBe(false);
  });

  it("lets the workers copy, index, notify and own the topology, never delete or purge a stream, nor do the edge's writes", () => {
    for (const s of [inboxSubject(t, "alice"), presenceSubject(t, "alice"), pushSubject(t, "alice"), deadLetterSubject("push", "PUSH_1")]) expect(allowed(workers.publish, s), s).toBe(true);
    expect(allowed(workers.publish, kvKeySubject(names.presenceUsersBucket, "alice"))).toBe(true);
    expect(allowed(workers.publish, `$JS.API.STREAM.CREATE.${names.conversationStream(2)}`)).toBe(true);
    expect(allowed(workers.publish, `$JS.API.CONSUMER.MSG.NEXT.${names.kvStream(names.presenceBucket)}.${names.presenceConsumer}`)).toBe(true);
    expect(allowed(workers.publish, `$JS.ACK.${names.pushStream(1)}.${names.pushSenderConsumer}.1.2.3.4.5`)).toBe(true);
    for (const s of [
      conversationSubject(t, "g"),
      membershipSubject(t, "g"),
      typingSubject(t, "bob"),
      deliverySubject(t, "alice"),
      kvKeySubject(names.presenceBucket, presenceDeviceKey("alice", "d")),
      kvKeySubject(names.edgesBucket, "e1"),
      `$JS.ACK.${names.conversationStream(0)}.someone-else.1.2.3.4.5`,
      `$JS.API.CONSUMER.CREATE.${names.inboxStream(0)}.mine`,
    ]) {
      expect(allowed(workers.publish, s), s).toBe(false);
    }
    expect(workers.publish.filter((s) => /\.(DELETE|PURGE)\./.test(s))).toEqual(
      [0, 1, 2].map((shard) => `$JS.API.CONSUMER.DELETE.${names.conversationStream(shard)}.${names.legacyPushConsumer}`),
    );
    expect(workers.subscribe).toEqual([`${inboxPrefix("workers")}.>`]);
  });

  it("renders users with nkeys or passwords; ops has no permissions block, so it is the whole account", () => {
    const text = renderAuthorization({
      shards: t,
      users: { edge: { nkey: "UEDGE" }, workers: { user: "workers", passwordVariable: "NATS_WORKERS_PASSWORD" }, ops: { user: "ops", password: 'p"w' } },
    });
    expect(text).toContain('nkey: "UEDGE"');
    expect(text).toContain('user: "workers", password: $NATS_WORKERS_PASSWORD');
    expect(text).toContain('{ user: "ops", password: "p\\"w" }');
    expect(text.match(/permissions:/g)).toHaveLength(2);
    expect(text).not.toContain("no_auth_user");
    // Subjects are quoted: an unquoted `$JS…` would be read as a variable.
    expect(text).toContain('"$JS.API.INFO"');
  });
});
