// The message store: where every conversation message lives for as long as the product keeps
// it. JetStream holds the recent log; the store holds everything.
import { ImageRefSchema, type ImageRef } from "../streams/messages.ts";

export interface StoredMessage {
  conv: string;
  /** "msg": a text message; "members": a membership change (`text` holds its JSON). */
  kind: "msg" | "members";
  /** Message id: the conversation stream sequence. Unique and increasing within `conv`. */
  id: number;
  from: string;
  device: string;
  /** The client's message id. */
  cid: string;
  text: string;
  /** Accept time, ms since epoch. */
  ts: number;
  /** The images a message carries (absent when none). */
  images?: ImageRef[] | undefined;
}

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
