// The message store: where every conversation message lives for as long as the product keeps
// it. JetStream holds the recent log; the store holds everything.
import { ImageRefSchema, type ChatRecord, type ImageRef } from "../streams/index.ts";

/** What the store keeps per message or membership change (streams/messages.ts). */
export type StoredMessage = ChatRecord;

export interface HistoryQuery {
  /** Only ids strictly below this one; omit for the newest. */
  before?: number | undefined;
  /** 1..100. */
  limit: number;
}

export interface MessageStore {
  /** Writes messages; writing the same (conv, id) again changes nothing. */
  putMessages(messages: readonly StoredMessage[]): Promise<void>;
  /** Newest first. */
  history(conv: string, query: HistoryQuery): Promise<StoredMessage[]>;
  /** Throws when the store cannot serve requests. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export const MAX_HISTORY_LIMIT = 100;

/** A stored images column (JSON written by a store); an unreadable one is left out, never fatal. */
export function parseImages(json: string | null): ImageRef[] | undefined {
  if (json === null || json === "") return undefined;
  try {
    const parsed = ImageRefSchema.array().safeParse(JSON.parse(json));
    return parsed.success && parsed.data.length > 0 ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}
