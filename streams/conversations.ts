// The conversation directory: who is in which conversation. Lives in a JetStream KV bucket so
// every edge and worker shares it; cached per process and kept fresh by a bucket watch.
import { createHash } from "node:crypto";
import type { KV } from "@nats-io/kv";
import { z } from "zod";
import { NatterError } from "../core/errors.ts";
import { checkId } from "../core/ids.ts";
import type { Logger } from "../core/logger.ts";
import { decodeJson, encodeJson } from "./messages.ts";

export const ConversationSchema = z.object({
  id: z.string(),
  kind: z.enum(["dm", "group"]),
  members: z.array(z.string()),
  name: z.string().optional(),
  owner: z.string().optional(),
  createdAt: z.number(),
});
export type Conversation = z.infer<typeof ConversationSchema>;

/** The one 1:1 conversation of a pair: the same id whichever side opens it. */
export function dmConversationId(a: string, b: string): string {
  const [x, y] = [checkId("user id", a), checkId("user id", b)].sort();
  return `dm_${createHash("sha256").update(`${x}\n${y}`).digest("hex").slice(0, 40)}`;
}

export class ConversationDirectory {
  readonly #kv: KV;
  readonly #cache = new Map<string, Conversation>();
  readonly #log: Logger;
  #watching: Promise<void> | undefined;
  #stop: (() => void) | undefined;

  constructor(kv: KV, log: Logger) {
    this.#kv = kv;
    this.#log = log;
  }

  /** Keeps the cache in step with the bucket (membership changes made by other processes). */
  async startWatch(): Promise<void> {
    const it = await this.#kv.watch({ include: "updates" });
    this.#stop = () => it.stop();
    this.#watching = (async () => {
      for await (const e of it) {
        if (e.operation === "PUT") {
          const parsed = ConversationSchema.safeParse(decodeJson(e.value));
          if (parsed.success) this.#cache.set(e.key, parsed.data);
          else this.#cache.delete(e.key);
        } else {
          this.#cache.delete(e.key);
        }
      }
    })().catch((err: unknown) => this.#log.warn({ err }, "conversation watch ended"));
  }

  async close(): Promise<void> {
    this.#stop?.();
    await this.#watching;
  }

  async get(id: string): Promise<Conversation | null> {
    checkId("conversation id", id);
    const hit = this.#cache.get(id);
    if (hit) return hit;
    let entry;
    try {
      entry = await this.#kv.get(id);
    } catch (err) {
      throw new NatterError("UNAVAILABLE", "conversation directory unavailable", { cause: err });
    }
    if (!entry || entry.operation !== "PUT") return null;
    const conv = ConversationSchema.parse(decodeJson(entry.value));
    this.#cache.set(id, conv);
    return conv;
  }

  /** The conversation, if `userId` is a member; otherwise NOT_MEMBER (also when it does not exist). */
  async requireMember(id: string, userId: string): Promise<Conversation> {
    const conv = await this.get(id);
    if (!conv || !conv.members.includes(userId)) throw new NatterError("NOT_MEMBER");
    return conv;
  }

  /** Opens (or returns) the 1:1 conversation between two users. */
  async openDm(userId: string, peerId: string): Promise<Conversation> {
    if (userId === peerId) throw new NatterError("SELF_CONVERSATION");
    const id = dmConversationId(userId, peerId);
    const existing = await this.get(id);
    if (existing) return existing;
    const conv: Conversation = { id, kind: "dm", members: [userId, peerId].sort(), createdAt: Date.now() };
    try {
      await this.#kv.create(id, encodeJson(conv));
    } catch (err) {
      // Lost a race with another edge creating the same pair: the stored one wins.
      const stored = await this.get(id);
      if (stored) return stored;
      throw new NatterError("UNAVAILABLE", "could not create the conversation", { cause: err });
    }
    this.#cache.set(id, conv);
    return conv;
  }
}
