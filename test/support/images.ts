// Test images, made with sharp itself: no binary fixtures. Valid images of the four accepted
// types (optionally with EXIF GPS), and the refused kinds: SVG, a file whose bytes contradict its
// claimed type, a truncated file, and a tiny PNG that declares a huge bitmap (decompression bomb).
import { randomBytes } from "node:crypto";
import zlib from "node:zlib";
import sharp from "sharp";

export type TestImageType = "image/jpeg" | "image/png" | "image/webp" | "image/gif";

/** A gradient with some noise (so encoders have real work), `width`×`height`. */
export async function makeImage(
  type: TestImageType,
  opts: { width?: number; height?: number; gps?: boolean; noise?: number; quality?: number } = {},
): Promise<Buffer> {
  const width = opts.width ?? 120;
  const height = opts.height ?? 80;
  const raw = Buffer.alloc(width * height * 3);
  const noise = opts.noise ?? 16;
  const rnd = randomBytes(raw.length);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      raw[i] = Math.min(255, Math.floor((x / width) * 200) + (rnd[i]! % (noise + 1)));
      raw[i + 1] = Math.min(255, Math.floor((y / height) * 200) + (rnd[i + 1]! % (noise + 1)));
      raw[i + 2] = Math.min(255, 90 + (rnd[i + 2]! % (noise + 1)));
    }
  }
  let img = sharp(raw, { raw: { width, height, channels: 3 } });
  if (opts.gps) {
    // IFD3 is the GPS IFD: a position in Paris.
    img = img.withExif({
      IFD0: { Make: "natter-test", Model: "gps-camera" },
      IFD3: { GPSLatitudeRef: "N", GPSLatitude: "48/1 51/1 2400/100", GPSLongitudeRef: "E", GPSLongitude: "2/1 21/1 300/100" },
    });
  }
  switch (type) {
    case "image/jpeg":
      return img.jpeg({ quality: opts.quality ?? 90 }).toBuffer();
    case "image/png":
      return img.png().toBuffer();
    case "image/webp":
      return img.webp({ quality: opts.quality ?? 90 }).toBuffer();
    case "image/gif":
      return img.gif().toBuffer();
  }
}

export const SVG = Buffer.from(
  '<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="100" height="100"><script>alert(1)</script><rect width="100" height="100" fill="red"/></svg>',
);

/** The first `fraction` of a file. */
export function truncated(data: Buffer, fraction = 0.5): Buffer {
  return data.subarray(0, Math.floor(data.length * fraction));
}

function pngChunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, "latin1"), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(zlib.crc32(body) >>> 0);
  return Buffer.concat([len, body, crc]);
}

/** A few KB of valid PNG that declares `width`×`height` RGB pixels (2.7 GB decoded at 30000²). */
export function pngBomb(width = 30_000, height = 30_000): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  const rows = zlib.deflateSync(Buffer.alloc((1 + width * 3) * 64), { level: 9 });
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk("IHDR", ihdr),
    pngChunk("IDAT", rows),
    pngChunk("IEND", Buffer.alloc(0)),
  ]);
}

/** Whether an EXIF block (as sharp's metadata().exif gives it) has a GPS IFD (tag 0x8825 in IFD0). */
export function exifHasGps(exif: Buffer | undefined): boolean {
  if (exif === undefined || exif.length < 14) return false;
  // "Exif\0\0" then a TIFF header.
  const tiff = exif.subarray(0, 6).toString("latin1") === "Exif\0\0" ? exif.subarray(6) : exif;
  const le = tiff.subarray(0, 2).toString("latin1") === "II";
  const u16 = (o: number) => (le ? tiff.readUInt16LE(o) : tiff.readUInt16BE(o));
  const u32 = (o: number) => (le ? tiff.readUInt32LE(o) : tiff.readUInt32BE(o));
  const ifd0 = u32(4);
  const count = u16(ifd0);
  for (let i = 0; i < count; i++) if (u16(ifd0 + 2 + i * 12) === 0x8825) return true;
  return false;
}

/** Whether the image's metadata carries an EXIF GPS position. */
export async function hasGps(image: Buffer): Promise<boolean> {
  return exifHasGps((await sharp(image).metadata()).exif);
}
