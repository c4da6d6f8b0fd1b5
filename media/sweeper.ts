// The orphan sweeper (a workers-process worker): an upload's record in the `uploads` bucket has a
// per-key TTL (images.orphanAfterSec). When it runs out the server itself writes an expiry marker
// (`Nats-Marker-Reason: MaxAge`) into the bucket's stream; this durable consumer reads those and
// removes the upload's blobs unless the image index says the image was sent somewhere. No scan of
// the bucket or the blob store, whatever their size. An attach renews the record with
// compare-and-set before it writes the index, so an upload is either attached or swept, never both.
import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger, Metrics } from "../core/index.ts";
import type { BlobStore, ImageIndex } from "../persistence/index.ts";
import { ConsumerWorker, kvKeySubject, names, type Delivery } from "../nats/index.ts";
import { IMAGE_VARIANTS, imageBlobKey, isImageId } from "./images.ts";

export interface OrphanSweeperDeps {
  nc: NatsConnection;
  blobs: BlobStore;
  index: ImageIndex;
  log: Logger;
  metrics?: Metrics | undefined;
}

export class OrphanSweeper {
  readonly #d: OrphanSweeperDeps;
  readonly #worker: ConsumerWorker<string>;
  /** Uploads whose blobs were removed, and expired uploads kept because they were sent. */
  readonly stats = { removed: 0, kept: 0 };

  constructor(deps: OrphanSweeperDeps) {
    this.#d = deps;
    const prefix = kvKeySubject(names.uploadsBucket, "");
    this.#worker = new ConsumerWorker<string>(
      {
        name: "uploads-sweeper",
        sources: [{ stream: names.kvStream(names.uploadsBucket), consumer: names.uploadsSweeperConsumer }],
        decode: (m) => {
          // An upload (PUT) or its renewal: nothing to do yet. An expiry marker: an orphan, maybe.
          if (m.headers?.get("Nats-Marker-Reason") !== "MaxAge") return { skip: true };
          const id = m.subject.slice(prefix.length);
          return isImageId(id) ? { value: id } : { skip: true };
        },
        handle: ([d]) => this.#expired(d!),
        backoff: { baseMs: 1000, maxMs: 30_000 },
        maxInFlight: 32,
        pullAhead: 256,
      },
      { nc: deps.nc, log: deps.log, metrics: deps.metrics },
    );
  }

  async start(): Promise<void> {
    await this.#worker.start();
  }

  async #expired(d: Delivery<string>): Promise<void> {
    const id = d.value;
    if ((await this.#d.index.sharedImage(id)) !== null) {
      this.stats.kept++;
      return;
    }
    for (const v of IMAGE_VARIANTS) await this.#d.blobs.delete(imageBlobKey(id, v));
    this.stats.removed++;
    this.#d.log.debug({ image: id }, "orphan upload removed");
  }

  /** Stops pulling and waits for removals in flight. */
  async stop(): Promise<void> {
    await this.#worker.stop();
  }
}
