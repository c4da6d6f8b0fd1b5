// Where a device keeps its cursor (the inbox position of the last item it received) between
// connections and restarts. The key names the user and the device: a cursor is only meaningful
// for the inbox it came from.

export interface CursorStore {
  get(key: string): number | undefined | Promise<number | undefined>;
  set(key: string, cursor: number): void | Promise<void>;
  delete(key: string): void | Promise<void>;
}

/** Keeps cursors for the life of the process (the default). */
export class MemoryCursorStore implements CursorStore {
  readonly #cursors = new Map<string, number>();
  get(key: string): number | undefined {
    return this.#cursors.get(key);
  }
  set(key: string, cursor: number): void {
    this.#cursors.set(key, cursor);
  }
  delete(key: string): void {
    this.#cursors.delete(key);
  }
}

/** The part of the Web Storage API this store uses (localStorage, sessionStorage, or a stand-in). */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/** Keeps cursors in the browser's localStorage (or any StorageLike) under `prefix + key`. */
export class LocalStorageCursorStore implements CursorStore {
  readonly #storage: StorageLike;
  readonly #prefix: string;
  constructor(opts: { storage?: StorageLike; prefix?: string } = {}) {
    const storage = opts.storage ?? (globalThis as { localStorage?: StorageLike }).localStorage;
    if (storage === undefined) throw new TypeError("LocalStorageCursorStore: no localStorage here; pass { storage }");
    this.#storage = storage;
    this.#prefix = opts.prefix ?? "natter.cursor.";
  }
  get(key: string): number | undefined {
    const raw = this.#storage.getItem(this.#prefix + key);
    if (raw === null) return undefined;
    const n = Number(raw);
    return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
  }
  set(key: string, cursor: number): void {
    this.#storage.setItem(this.#prefix + key, String(cursor));
  }
  delete(key: string): void {
    this.#storage.removeItem(this.#prefix + key);
  }
}
