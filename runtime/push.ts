// Wires push notifications into a node: the VAPID keys, the subscriptions the edge registers, and
// (with workers) the dispatcher and the push worker with its senders (FCM and APNs when their
// credentials are configured).
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import webpush from "web-push";
import { z } from "zod";
import type { Config } from "../config/index.ts";
import { type Logger, type Metrics, NatterError } from "../core/index.ts";
import type { SessionPush } from "../edge/index.ts";
import type { PresenceStore } from "../presence/index.ts";
import {
  APNS_HOSTS,
  ApnsSender,
  checkProviderUrl,
  FcmSender,
  GuardedHttp,
  Http2Client,
  parseApnsKey,
  parseServiceAccount,
  PushDispatcher,
  PushSenders,
  PushSubscriptions,
  PushWorker,
  SendLedger,
  WebhookSender,
  WebPushSender,
  type TargetPolicy,
  type VapidKeys,
} from "../push/index.ts";
import type { Topology } from "../nats/index.ts";

const KeyPair = z.object({ publicKey: z.string().min(1), privateKey: z.string().min(1) });

/** The VAPID key pair: configured, or kept in the data folder (like the JWT secret) so browsers' subscriptions survive restarts. */
function vapidKeys(cfg: Config): VapidKeys {
  const { publicKey, privateKey, subject } = cfg.push.vapid;
  if (publicKey !== undefined || privateKey !== undefined) {
    if (publicKey === undefined || privateKey === undefined) {
      throw new NatterError("CONFIG_INVALID", "push.vapid: set both publicKey and privateKey, or neither");
    }
    return { publicKey, privateKey, subject };
  }
  const file = path.resolve(cfg.dataDir, "vapid.json");
  if (existsSync(file)) {
    const parsed = KeyPair.safeParse(JSON.parse(readFileSync(file, "utf8")));
    if (!parsed.success) throw new NatterError("CONFIG_INVALID", `${file} is not a VAPID key pair; remove it to make a new one`);
    return { ...parsed.data, subject };
  }
  mkdirSync(path.dirname(file), { recursive: true });
  const keys = webpush.generateVAPIDKeys();
  writeFileSync(file, `${JSON.stringify({ publicKey: keys.publicKey, privateKey: keys.privateKey })}\n`, { mode: 0o600 });
  return { publicKey: keys.publicKey, privateKey: keys.privateKey, subject };
}

function readSecretFile(file: string, setting: string): string {
  try {
    return readFileSync(path.resolve(file), "utf8");
  } catch (err) {
    throw new NatterError("CONFIG_INVALID", `${setting}: cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
}

/** The FCM and APNs senders the configuration asks for (each absent without its settings). */
function mobileSenders(cfg: Config, policy: TargetPolicy, http: Http2Client): { fcm?: FcmSender; apns?: ApnsSender } {
  const { fcm, apns, timeoutMs } = cfg.push;
  const out: { fcm?: FcmSender; apns?: ApnsSender } = {};
  if (fcm.serviceAccountFile !== undefined) {
    const account = parseServiceAccount(readSecretFile(fcm.serviceAccountFile, "push.fcm.serviceAccountFile"), fcm.serviceAccountFile);
    checkProviderUrl(account.tokenUri, policy, `token_uri of ${fcm.serviceAccountFile}`);
    out.fcm = new FcmSender(http, { account, projectId: fcm.projectId, baseUrl: checkProviderUrl(fcm.baseUrl, policy, "push.fcm.baseUrl").href, timeoutMs });
  }
  if (apns.keyFile !== undefined && apns.keyId !== undefined && apns.teamId !== undefined && apns.topic !== undefined) {
    const key = parseApnsKey(readSecretFile(apns.keyFile, "push.apns.keyFile"), apns.keyFile);
    const baseUrl = checkProviderUrl(apns.baseUrl ?? APNS_HOSTS[apns.environment], policy, "push.apns.baseUrl").href;
    out.apns = new ApnsSender(http, { credentials: { key, keyId: apns.keyId, teamId: apns.teamId }, topic: apns.topic, baseUrl, timeoutMs });
  }
  return out;
}

export interface PushNode {
  edge: SessionPush;
  subscriptions: PushSubscriptions;
  /** The push decision the fan-out makes beside its copies (with workers). */
  dispatcher: PushDispatcher | undefined;
  close(): Promise<void>;
}

export interface PushDeps {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  /** Absent when presence is off: then no one counts as online, and every recipient with a subscription gets pushes. */
  presence: PresenceStore | undefined;
  topology: Topology;
  metrics: Metrics;
  log: Logger;
  /** Run the dispatcher and the push worker in this process. */
  workers: boolean;
}

export async function startPush(cfg: Config, deps: PushDeps): Promise<PushNode> {
  const p = cfg.push;
  const { nc, js, jsm, log } = deps;
  const vapid = vapidKeys(cfg);
  const policy = { allowHosts: p.allowHosts };
  const mobile = { fcm: p.fcm.serviceAccountFile !== undefined, apns: p.apns.keyFile !== undefined };
  const subscriptions = new PushSubscriptions({ js, jsm, policy, maxPerUser: p.maxSubscriptionsPerUser, mobile, log });
  const stops: (() => Promise<void>)[] = [];
  let dispatcher: PushDispatcher | undefined;
  if (deps.workers) {
    const presence = deps.presence;
    dispatcher = new PushDispatcher({
      nc,
      subscriptions,
      online: async (users) => {
        if (!presence) return new Set();
        const records = await presence.users(users);
        return new Set(users.filter((u) => records.get(u)?.state.online === true));
      },
      topology: deps.topology,
      content: p.content,
      previewChars: p.previewChars,
      maxAgeSec: p.maxAgeSec,
      log,
      metrics: deps.metrics,
    });
    const d = dispatcher;
    stops.push(async () => d.close());
    const http = new GuardedHttp({ policy, timeoutMs: p.timeoutMs });
    const h2 = new Http2Client();
    stops.push(async () => h2.close());
    const worker = new PushWorker({
      nc,
      subscriptions,
      ledger: new SendLedger(js, jsm),
      senders: new PushSenders({ webpush: new WebPushSender(http, vapid), webhook: new WebhookSender(http), ...mobileSenders(cfg, policy, h2) }),
      topology: deps.topology,
      settings: { maxAttempts: p.maxAttempts, retryBaseMs: p.retryBaseMs, retryMaxMs: p.retryMaxMs, timeoutMs: p.timeoutMs, maxAgeSec: p.maxAgeSec, concurrency: p.concurrency },
      log,
      metrics: deps.metrics,
    });
    await worker.start();
    stops.push(async () => {
      await worker.stop();
      http.close();
    });
  }
  return {
    subscriptions,
    dispatcher,
    edge: {
      vapidPublicKey: vapid.publicKey,
      register: (user, device, input) => subscriptions.register(user, device, input),
      remove: (user, id) => subscriptions.remove(user, id),
    },
    async close() {
      for (const stop of stops.reverse()) await stop();
    },
  };
}
