// The orphan sweeper (a workers-process worker): an upload's record in the `uploads` bucket has a
// per-key TTL (images.orphanAfterSec). When it runs out the server itself writes an expiry marker
// (`Nats-Marker-Reason: MaxAge`) into the bucket's stream; this durable consumer reads those and
// removes the upload's blobs unless the image index says the image was sent somewhere. No scan of
// the bucket or the blob store, whatever their size. An attach renews the record with
// compare-and-set before it writes the index, so an upload is either attached or swept, never both.
import type { ConsumerMessages, JetStreamClient, JsMsg } from "@nats-io/jetstream";
import type { Logger } from "../core/logger.ts";
import type { BlobStore } from "../persistence/blob-store.ts";
import type { ImageIndex } from "../persistence/image-index.ts";
import { kvKeySubject, names } from "../nats/index.ts";
import { IMAGE_VARIANTS, imageBlobKey, isImageId } from "./images.ts";

export interface OrphanSweeperDeps {
  js: JetStreamClient;
  blobs: BlobStore;
  index: ImageIndex;
  log: Logger;
}

/** Expiries handled at once. */
const MAX_IN_FLIGHT = 32;

export class OrphanSweeper {
  readonly #d: OrphanSweeperDeps;
  #messages: ConsumerMessages | undefined;
  #loop: Promise<void> | undefined;
  readonly #inFlight = new Set<Promise<void>>();
  readonly #prefix = kvKeySubject(names.uploadsBucket, "");
  /** Uploads whose blobs were removed, and expired uploads kept because they were sent. */
  readonly stats = { removed: 0, kept: 0 };

  constructor(deps: OrphanSweeperDeps) {
    this.#d = deps;
  }

  async start(): Promise<void> {
    const consumer = await this.#d.js.consumers.get(names.kvStream(names.uploadsBucket), names.uploadsSweeperConsumer);
    const messages = await consumer.consume({ max_messages: 256 });
    this.#messages = messages;
    this.#loop = (async () => {
      for await (const m of messages) {
        if (!m.headers?.has("Nats-Marker-Reason") || m.headers.get("Nats-Marker-Reason") !== "MaxAge") {
          m.ack(); // an upload (PUT) or its renewal: nothing to do yet
          continue;
        }
        while (this.#inFlight.size >= MAX_IN_FLIGHT) await Promise.race(this.#inFlight);
        const work: Promise<void> = this.#expired(m).finally(() => this.#inFlight.delete(work));
        this.#inFlight.add(work);
      }
    })();
  }

  async #expired(m: JsMsg): Promise<void> {
    const id = m.subject.slice(this.#prefix.length);
    if (!isImageId(id)) {
      m.ack();
      return;
    }
    try {
      if ((await this.#d.index.sharedImage(id)) !== null) {
        this.stats.kept++;
      } else {
        for (const v of IMAGE_VARIANTS) await this.#d.blobs.delete(imageBlobKey(id, v));
        this.stats.removed++;
        this.#d.log.debug({ image: id }, "orphan upload removed");
      }
      m.ack();
    } catch (err) {
      const delay = Math.min(30_000, 1000 * 2 ** Math.min(m.info.deliveryCount, 5));
      this.#d.log.warn({ err, image: id, retryInMs: delay }, "removing an orphan upload failed; will retry");
      m.nak(delay);
    }
  }

  /** Stops pulling and waits for removals in flight. */
  async stop(): Promise<void> {
    this.#messages?.stop();
    await this.#loop;
    await Promise.allSettled([...this.#inFlight]);
  }
}
