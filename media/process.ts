// Image processing: the bytes decide the type (JPEG, PNG, WebP, GIF; nothing else, SVG included),
// the header's dimensions are checked against a pixel limit before anything is decoded
// (decompression bombs), then the image is decoded, turned upright, stripped of every piece of
// metadata (EXIF with its GPS position, XMP, comments), re-encoded in its own format, and a
// thumbnail is made. Nothing here stores anything: a failure leaves nothing behind.
import sharp, { type FormatEnum, type Metadata, type Sharp, type SharpOptions } from "sharp";
import { NatterError } from "../core/index.ts";

const IMAGE_TYPES = ["image/jpeg", "image/png", "image/webp", "image/gif"] as const;
export type ImageType = (typeof IMAGE_TYPES)[number];
/** Thumbnails are WebP: small, with alpha, shown by every current browser. */
const THUMB_TYPE = "image/webp";

const FORMAT: Record<ImageType, keyof FormatEnum> = {
  "image/jpeg": "jpeg",
  "image/png": "png",
  "image/webp": "webp",
  "image/gif": "gif",
};

/** Spellings of the four types that clients send (lower-cased, parameters dropped first). */
const ALIASES: Record<string, ImageType> = { "image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg" };

export interface ProcessLimits {
  /** Largest width × height × frames accepted, read from the header before decoding. */
  maxPixels: number;
  /** Longest side of the thumbnail. */
  thumbSize: number;
}

interface EncodedImage {
  data: Buffer;
  type: string;
  width: number;
  height: number;
}

export interface ProcessedImage {
  full: EncodedImage;
  thumb: EncodedImage;
  /** Milliseconds spent re-encoding the full image and making the thumbnail. */
  ms: { full: number; thumb: number };
}

/**
 * libvips keeps recent operations in a cache (up to 50 MB by default); every upload here is new,
 * so it only holds memory. Called once by the image service.
 */
export function disableImageCache(): void {
  sharp.cache(false);
}

/** The type the bytes are, by their signature, or undefined when they are none of the four. */
export function detectImageType(b: Uint8Array): ImageType | undefined {
  const at = (i: number, ascii: string) => ascii.split("").every((c, k) => b[i + k] === c.charCodeAt(0));
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return "image/jpeg";
  if (b.length >= 8 && b[0] === 0x89 && at(1, "PNG\r\n\x1a\n")) return "image/png";
  if (b.length >= 6 && (at(0, "GIF87a") || at(0, "GIF89a"))) return "image/gif";
  if (b.length >= 12 && at(0, "RIFF") && at(8, "WEBP")) return "image/webp";
  return undefined;
}

/** The claimed content type as one of the four, undefined when none was given; refuses others. */
export function claimedImageType(contentType: string | undefined): ImageType | undefined {
  if (contentType === undefined || contentType.trim() === "" || contentType === "application/octet-stream") return undefined;
  const t = contentType.split(";")[0]!.trim().toLowerCase();
  const type = ALIASES[t] ?? t;
  if (!(IMAGE_TYPES as readonly string[]).includes(type)) {
    throw new NatterError("IMAGE_TYPE_REFUSED", `${t.slice(0, 60)} is not accepted: send JPEG, PNG, WebP or GIF`);
  }
  return type as ImageType;
}

/** A sharp failure as a typed error: the pixel limit, or an image that cannot be decoded. */
function decodeFailure(err: unknown): NatterError {
  const message = String((err as Error)?.message ?? err);
  if (/pixel limit/i.test(message)) return new NatterError("IMAGE_DIMENSIONS", undefined, { cause: err });
  return new NatterError("IMAGE_CORRUPT", undefined, { cause: err });
}

/**
 * Checks and re-encodes one uploaded image. `contentType` is what the uploader claimed (may be
 * absent); the bytes must agree with it. Throws IMAGE_TYPE_REFUSED, IMAGE_TYPE_MISMATCH,
 * IMAGE_DIMENSIONS or IMAGE_CORRUPT.
 */
export async function processImage(bytes: Buffer, contentType: string | undefined, limits: ProcessLimits): Promise<ProcessedImage> {
  const claimed = claimedImageType(contentType);
  const type = detectImageType(bytes);
  if (type === undefined) throw new NatterError("IMAGE_TYPE_REFUSED", "the file is not a JPEG, PNG, WebP or GIF image");
  if (claimed !== undefined && claimed !== type) {
    throw new NatterError("IMAGE_TYPE_MISMATCH", `declared ${claimed}, but the bytes are ${type}`);
  }
  // failOn "error" refuses truncated and damaged pixel data but not mere warnings (common in
  // photos from real cameras); the pixel limit is checked by libvips on every decode as well.
  const input: SharpOptions = { limitInputPixels: limits.maxPixels, failOn: "error", sequentialRead: true };
  const animatable = type === "image/gif" || type === "image/webp";

  let meta: Metadata;
  try {
    meta = await sharp(bytes, { ...input, animated: animatable }).metadata();
  } catch (err) {
    throw decodeFailure(err);
  }
  if (meta.format !== FORMAT[type]) throw new NatterError("IMAGE_CORRUPT", `the bytes start like ${type} but do not decode as one`);
  const pages = animatable ? Math.max(1, meta.pages ?? 1) : 1;
  const width = meta.width;
  const frameHeight = pages > 1 ? (meta.pageHeight ?? 0) : meta.height;
  if (!(width > 0 && frameHeight > 0)) throw new NatterError("IMAGE_CORRUPT", "the image has no dimensions");
  if (width * frameHeight * pages > limits.maxPixels) {
    throw new NatterError("IMAGE_DIMENSIONS", `${width}×${frameHeight}${pages > 1 ? ` × ${pages} frames` : ""} is over ${limits.maxPixels} pixels`);
  }
  // EXIF orientation is applied to the pixels, since the EXIF block itself is dropped.
  const upright = (img: Sharp) => ((meta.orientation ?? 1) > 1 && pages === 1 ? img.rotate() : img);

  const t0 = performance.now();
  let full: EncodedImage;
  try {
    let img = upright(sharp(bytes, { ...input, animated: pages > 1 }));
    img =
      type === "image/jpeg"
        ? img.jpeg({ quality: 85 })
        : type === "image/png"
          ? img.png()
          : type === "image/webp"
            ? img.webp({ quality: 85 })
            : img.gif();
    const { data, info } = await img.toBuffer({ resolveWithObject: true });
    full = { data, type, width: info.width, height: pages > 1 ? Math.round(info.height / pages) : info.height };
  } catch (err) {
    throw decodeFailure(err);
  }
  const t1 = performance.now();
  let thumb: EncodedImage;
  try {
    const { data, info } = await upright(sharp(bytes, { ...input, pages: 1 }))
      .resize(limits.thumbSize, limits.thumbSize, { fit: "inside", withoutEnlargement: true })
      .webp({ quality: 75 })
      .toBuffer({ resolveWithObject: true });
    thumb = { data, type: THUMB_TYPE, width: info.width, height: info.height };
  } catch (err) {
    throw decodeFailure(err);
  }
  return { full, thumb, ms: { full: t1 - t0, thumb: performance.now() - t1 } };
}
