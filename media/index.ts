// Images: checking and re-encoding uploads (sharp, in child processes), upload records with a TTL, attaching to
// messages, member-only fetches, and the orphan sweeper.
export { ImageService, type ImageVariant } from "./images.ts";
export { OrphanSweeper } from "./sweeper.ts";
export { ensureImageBuckets, imageStreams } from "./buckets.ts";
