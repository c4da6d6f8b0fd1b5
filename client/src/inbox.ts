// The inbox as this device sees it. Every item (message, membership change, receipt) is emitted
// once, in order: only when its cursor is newer than the last one emitted. That cursor is kept in
// the CursorStore, so the next hello (in this process or the next) resumes after it and the
// server replays what came after. When the server cannot resume from it, the cursor moves to
// where the server says and the app hears of it as a `reset` event.
import type { CursorStore } from "./cursor-store.js";
import { NatterError } from "./errors.js";
import type { ChatMessage, Emitter, MembershipChange, NatterEvents } from "./events.js";
import type { ServerFrame } from "./protocol.js";

export class Inbox {
  readonly #store: CursorStore;
  /** The store's key: a cursor is only meaningful for the inbox (user) and device it came from. */
  readonly #key: string;
  readonly #events: Emitter;
  #cursor: number | undefined;
  #loaded = false;
  #dirty = false;
  #writing = false;
  /** Set when the server refused the cursor: the reset event to emit after the next welcome. */
  #resetReason: string | undefined;

  constructor(store: CursorStore, key: string, events: Emitter) {
    this.#store = store;
    this.#key = key;
    this.#events = events;
  }

  /** The inbox position of the last item emitted (undefined before the first connection). */
  get cursor(): number | undefined {
    return this.#cursor;
  }

  /** Reads the stored cursor before the first hello; undefined when it has been read already. */
  load(): Promise<void> | undefined {
    return this.#loaded ? undefined : this.#read();
  }

  async #read(): Promise<void> {
    this.#cursor = (await this.#store.get(this.#key)) ?? undefined;
    this.#loaded = true;
  }

  /** Emits the item at `cursor` as `type` unless it was emitted already; the cursor moves to it first. */
  deliver<K extends keyof NatterEvents>(cursor: number, type: K, event: () => NatterEvents[K]): void {
    if (this.#cursor !== undefined && cursor <= this.#cursor) return;
    this.#cursor = cursor;
    this.#save();
    this.#events.emit(type, event());
  }

  message(f: Extract<ServerFrame, { type: "msg" }>): void {
    this.deliver(f.cursor, "message", (): ChatMessage => ({
      conv: f.conv,
      id: f.id,
      from: f.from,
      device: f.device,
      cid: f.cid,
      text: f.text,
      ts: f.ts,
      cursor: f.cursor,
      ...(f.images !== undefined && f.images.length > 0 ? { images: f.images } : {}),
    }));
  }

  membership(f: Extract<ServerFrame, { type: "members" }>): void {
    this.deliver(f.cursor, "membership", (): MembershipChange => ({
      conv: f.conv,
      id: f.id,
      action: f.action,
      user: f.user,
      by: f.by,
      members: f.members,
      name: f.name,
      owner: f.owner,
      ts: f.ts,
      cursor: f.cursor,
    }));
  }

  /** The server could not resume from the cursor (older than the inbox's retention): it goes on from `cursor`. */
  reset(f: Extract<ServerFrame, { type: "reset" }>): void {
    this.#cursor = f.cursor;
    this.#save();
    this.#events.emit("reset", { cursor: f.cursor, reason: f.reason });
  }

  /**
   * The server did not know the cursor (BAD_CURSOR: its inbox was wiped or replaced): the next
   * hello goes without one, so delivery starts again at the inbox's present end, and the app is
   * told as for a reset once the server has welcomed this device.
   */
  refused(message: string): void {
    this.#resetReason = `the server did not know cursor ${this.#cursor}: ${message}`;
    this.#cursor = undefined;
    void Promise.resolve(this.#store.delete(this.#key)).catch(() => undefined);
  }

  /** The server welcomed this device at `cursor`: a device without a cursor (its first connection, or after a refusal) starts there. */
  welcomed(cursor: number): void {
    if (this.#cursor !== undefined) return;
    this.#cursor = cursor;
    this.#save();
  }

  /** After the welcome was announced: the reset a refused cursor caused. */
  opened(cursor: number): void {
    if (this.#resetReason === undefined) return;
    const reason = this.#resetReason;
    this.#resetReason = undefined;
    this.#events.emit("reset", { cursor, reason });
  }

  /** Writes the newest cursor; writes never overlap, and the last one written is the newest. */
  #save(): void {
    this.#dirty = true;
    if (this.#writing) return;
    this.#writing = true;
    void (async () => {
      try {
        while (this.#dirty) {
          this.#dirty = false;
          const c = this.#cursor;
          if (c === undefined) continue;
          await this.#store.set(this.#key, c);
        }
      } catch (err) {
        this.#events.emit("error", new NatterError("INTERNAL", `the cursor store failed: ${(err as Error)?.message ?? String(err)}`, { temporary: true, cause: err }));
      } finally {
        this.#writing = false;
      }
    })();
  }
}
