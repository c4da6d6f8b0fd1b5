// Push notifications for recipients with no online device. The public surface of push/.
export { renderNotification, truncate, NotificationSchema, GENERIC_TITLE, GENERIC_BODY, type Notification, type PushContent } from "./content.ts";
export { checkTargetUrl, checkAddresses, isPublicAddress, MAX_TARGET_URL_LENGTH, type TargetPolicy } from "./targets.ts";
export { GuardedHttp, retryAfterMs, type GuardedHttpOptions, type HttpResult, type Resolver } from "./http.ts";
export {
  PushSubscriptions,
  subscriptionId,
  checkWebPushKeys,
  type PushSubscriptionsOptions,
  type RegisterInput,
  type Registered,
  type Subscription,
  type SubscriptionKind,
} from "./subscriptions.ts";
export {
  PushSenders,
  WebPushSender,
  WebhookSender,
  WEBHOOK_HEADERS,
  webhookSignature,
  pushPayload,
  outcomeOf,
  type PushMessage,
  type PushSender,
  type SendOutcome,
  type VapidKeys,
} from "./senders.ts";
export { SendLedger, type Claim, type Settlement } from "./ledger.ts";
export { PushDispatcher, type PushDispatcherDeps } from "./dispatcher.ts";
export { PushWorker, pushIdOf, retryDelay, type PushWorkerDeps, type PushWorkerSettings } from "./worker.ts";
export { PushRequestSchema, type PushRequest } from "./request.ts";
export { ensurePushTopology, pushStreams, pushStreamConfig, pushSubscriptionsBucketConfig, pushSentBucketConfig } from "./topology.ts";
