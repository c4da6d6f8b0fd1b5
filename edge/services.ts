// What a device session needs from the rest of natter, as small interfaces: the edge wires real
// ones (server.ts), the session's unit tests fake them. Nothing here reaches NATS by itself.
import type { EdgeConfig } from "../config/index.ts";
import type { Logger, MistakeLog } from "../core/index.ts";
import type { DevicePresence } from "../presence/index.ts";
import type { ImageService } from "../media/index.ts";
import type { ConversationDirectory, InboxBounds, InboxItem, PrevList, Receipts, SendInput, SendResult } from "../streams/index.ts";
import type { TokenSettings } from "./auth.ts";
import type { HelloSlots } from "./admission.ts";
import type { LiveItem } from "./feeds.ts";
import type { UserBudgets } from "./limits.ts";
import type { HistoryReader, PresenceView } from "./protocol.ts";
import type { RevocationCheck } from "./revocations.ts";
import type { TypingSignal } from "./typing.ts";

/** A push subscription a device registers (the `push.register` frame without type and ref). */
export type PushTarget =
  | { kind: "webpush"; endpoint: string; keys: { p256dh: string; auth: string } }
  | { kind: "webhook"; url: string }
  | { kind: "fcm" | "apns"; token: string };

/** Push subscriptions as a session uses them (absent when push.enabled is false). */
export interface SessionPush {
  /** The VAPID public key browsers subscribe with (GET /push/vapid-public-key). */
  vapidPublicKey: string;
  register(user: string, device: string, target: PushTarget): Promise<{ id: string; kind: PushTarget["kind"]; secret?: string | undefined }>;
  remove(user: string, id: string): Promise<boolean>;
}

/** Presence as a session uses it (absent when presence.enabled is false). */
export interface SessionPresence {
  /** This edge's connected devices: heartbeats become KV writes by the write rule. */
  devices: DevicePresence;
  /** The presence of these users (no authorization: the session decides whom it may ask about). */
  lookup(users: readonly string[]): Promise<PresenceView[]>;
  /** The devices of `user` online on any edge (their presence keys live). */
  onlineDevices(user: string): Promise<string[]>;
}

/** The daily quota as a send uses it: a check before, a count after a message is stored. */
interface SendQuota {
  check(user: string, storedBytes: number): Promise<void>;
  add(user: string, storedBytes: number): void;
}

/** A user's inbox, read for catch-up and gap fills. */
export interface InboxReader {
  bounds(user: string): Promise<InboxBounds>;
  /** Items with after < seq ≤ until, in order; `next`: the chain of the item right after `until`, when known (a live item's). */
  read(user: string, after: number, until: number, next?: PrevList | undefined): AsyncIterable<InboxItem>;
}

/** The live side: a user's inbox items as they are stored, and its contacts' presence changes. */
export interface LiveFeeds {
  attach(user: string, onItem: (item: LiveItem) => void, onPresence?: (entry: PresenceView) => void, onDevices?: (count: number) => void): () => void;
  /** Resolves once every subscription made so far is in force. */
  flush(): Promise<void>;
}

/** Typing signals: received for a user while attached, published to others. */
interface TypingChannel {
  attach(user: string, listener: (signal: TypingSignal) => void): () => void;
  publish(recipients: readonly string[], signal: TypingSignal): void;
}

export interface SessionServices {
  directory: ConversationDirectory;
  /** Stores a client's message in its conversation stream; resolves after JetStream acked it. */
  publish(input: SendInput): Promise<SendResult>;
  inbox: InboxReader;
  feeds: LiveFeeds;
  edge: EdgeConfig;
  tokens: TokenSettings;
  /** Revoked tokens: checked at hello and on every `token` frame. */
  revocations: RevocationCheck;
  history: HistoryReader;
  presence?: SessionPresence | undefined;
  /** Push subscriptions (`push.register`, `push.remove`); absent when push is off. */
  push?: SessionPush | undefined;
  /** Images attached to sends (absent: sends with images are refused). */
  images?: ImageService | undefined;
  /** Receipts, unread counts and the conversation list. */
  receipts: Receipts;
  typing: TypingChannel;
  log: Logger;
  /** Client mistakes (bad frames, bad tokens): counted and logged at warn at most once per interval. */
  mistakes: MistakeLog;
  /** Each user's daily quota of sends (absent: none). */
  quota?: SendQuota | undefined;
  /** Temporary failures told to clients (UNAVAILABLE, TIMEOUT): counted, logged at warn at most once per interval. */
  failures: MistakeLog;
  /** The per-user budgets of this edge: every frame is charged to its user. */
  budgets: UserBudgets;
  /** Hellos in progress on this edge: bounded (admission.ts). */
  hellos: HelloSlots;
}
