// Images: checking and re-encoding uploads (sharp), upload records with a TTL, attaching to
// messages, member-only fetches, and the orphan sweeper.
export { detectImageType, claimedImageType, processImage, IMAGE_TYPES, THUMB_TYPE, type ImageType, type ProcessedImage, type ProcessLimits } from "./process.ts";
export { ImageService, imageBlobKey, isImageId, newImageId, readCapped, IMAGE_VARIANTS, type ImageBody, type ImageServiceDeps, type ImageVariant } from "./images.ts";
export { OrphanSweeper, type OrphanSweeperDeps } from "./sweeper.ts";
export { ensureImageBuckets, imageStreams, uploadsBucketConfig, UPLOAD_MARKER_TTL_S } from "./buckets.ts";
