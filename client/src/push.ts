// Push subscriptions as registerPush takes them: a webhook, an app's FCM or APNs token, or a Web
// Push subscription in any of the shapes a browser hands out (the PushSubscription itself, its
// toJSON(), or spelled out), and the one frame the server takes for each.
import { NatterError } from "./errors.js";
import type { PushTarget } from "./protocol.js";
import type { RequestFrame } from "./requests.js";

/**
 * A browser's PushSubscription or its `toJSON()`, as `pushManager.subscribe()` gives it: what
 * `registerPush` takes for Web Push without a `kind`.
 */
export interface WebPushSubscriptionLike {
  endpoint?: string | null | undefined;
  expirationTime?: number | null | undefined;
  keys?: Record<string, string> | undefined;
  toJSON?: (() => { endpoint?: string | null | undefined; keys?: Record<string, string> | undefined }) | undefined;
}

/** A registered push subscription. `secret` (webhooks only) is sent once: keep it to check the signatures. */
export interface PushRegistration {
  /** `ps_…`: pass it to `removePush`. Registering the same target again gives the same id. */
  id: string;
  kind: PushTarget["kind"];
  secret?: string | undefined;
}

/**
 * The `push.register` frame for a target. A PushSubscription's keys are only in its `toJSON()`;
 * anything beyond endpoint and keys (`expirationTime`, other keys) is left out, as the server
 * takes nothing else.
 */
export function pushRegisterFrame(target: PushTarget | WebPushSubscriptionLike): RequestFrame {
  if ("kind" in target && target.kind === "webhook") return { type: "push.register", kind: "webhook", url: target.url };
  if ("kind" in target && (target.kind === "fcm" || target.kind === "apns")) {
    if (typeof target.token !== "string" || target.token === "") throw new NatterError("BAD_FRAME", `registerPush: a ${target.kind} subscription needs its token`, { temporary: false });
    return { type: "push.register", kind: target.kind, token: target.token };
  }
  const sub = !("kind" in target) && target.keys === undefined && typeof target.toJSON === "function" ? target.toJSON() : target;
  const { endpoint, keys } = sub;
  if (typeof endpoint !== "string" || typeof keys?.p256dh !== "string" || typeof keys.auth !== "string") {
    throw new NatterError("BAD_FRAME", "registerPush: a Web Push subscription needs endpoint, keys.p256dh and keys.auth", { temporary: false });
  }
  return { type: "push.register", kind: "webpush", endpoint, keys: { p256dh: keys.p256dh, auth: keys.auth } };
}
