// Push notifications for recipients with no online device. The public surface of push/.
export { GuardedHttp } from "./http.ts";
export { Http2Client } from "./h2.ts";
export { PushSubscriptions } from "./subscriptions.ts";
export { PushSenders, WebPushSender, WebhookSender, type VapidKeys } from "./senders.ts";
export { FcmSender, parseServiceAccount } from "./fcm.ts";
export { APNS_HOSTS, ApnsSender, parseApnsKey } from "./apns.ts";
export { checkProviderUrl, type TargetPolicy } from "./targets.ts";
export { SendLedger } from "./ledger.ts";
export { PushDispatcher } from "./dispatcher.ts";
export { PushWorker } from "./worker.ts";
export { ensurePushTopology, pushStreams } from "./topology.ts";
