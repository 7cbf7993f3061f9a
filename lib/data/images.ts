// Image decode, resize and encode through sharp (libvips). sharp is imported on first use, so
// commands that never touch encoded images (`data shapes`, `--help`) do not load it.
//
// Two faults look alike and must not be confused: sharp (or its prebuilt libvips) failing to load
// is one fault of the machine, a UserError that stops the command; one image that fails to decode
// is a CorruptImage, and only that is skipped as a bad sample.
import type { default as SharpFn, Sharp } from "sharp";
import { UserError } from "../errors.ts";
import { decodeSimplePng } from "./png.ts";

/** One image that sharp could not decode: that sample is bad, the others may be fine. */
export class CorruptImage extends Error {
  override name = "CorruptImage";
}

let sharpPromise: Promise<typeof SharpFn> | null = null;

/** sharp, loaded once; a machine where it cannot load gets one error naming the cause. */
export function loadSharp(): Promise<typeof SharpFn> {
  sharpPromise ??= import("sharp").then((m) => {
    const sharp = m.default;
    // Many small images decode faster side by side, one libvips thread each, than one at a
    // time on all cores; the loader keeps several in flight.
    sharp.concurrency(1);
    sharp.cache(false);
    return sharp;
  }, (e) => {
    const cause = String((e as Error)?.message ?? e).split("\n")[0].trim();
    throw new UserError(
      `the image decoder (npm:sharp) cannot load, so no image can be read: ${cause} ` +
        "(reinstall the npm packages: deno install, in the repository)",
    );
  });
  return sharpPromise;
}

/** Runs a sharp pipeline on one image: sharp's own failure to load is not the image's fault. */
async function withSharp<T>(run: (sharp: typeof SharpFn) => Promise<T>): Promise<T> {
  const sharp = await loadSharp();
  try {
    return await run(sharp);
  } catch (e) {
    throw new CorruptImage((e as Error).message);
  }
}

export const IMAGE_EXTENSIONS = ["jpg", "jpeg", "png", "webp"] as const;

export function isImageExtension(ext: string): boolean {
  return (IMAGE_EXTENSIONS as readonly string[]).includes(ext.toLowerCase());
}

/**
 * The pipeline every image goes through: EXIF orientation applied, the shorter side resized to
 * `size` and the centre cropped to size × size, transparency flattened onto white (emoji are
 * drawn on transparency), and any colour space converted to sRGB.
 */
function squareRgb(sharp: typeof SharpFn, bytes: Uint8Array, size: number): Sharp {
  // failOn "truncated" turns a cut-off JPEG or PNG into an error instead of grey filler.
  return sharp(bytes, { failOn: "truncated" })
    .rotate()
    .resize(size, size, { fit: "cover", position: "centre", kernel: "lanczos3" })
    .flatten({ background: { r: 255, g: 255, b: 255 } })
    .toColourspace("srgb");
}

/** Decodes JPEG, PNG or WebP bytes to size × size HWC RGB pixels; a corrupt image rejects. */
export function decodeImage(bytes: Uint8Array, size: number): Promise<Uint8Array> {
  // A plain 8-bit RGB PNG already at size × size (what `data shapes` writes) needs no resize or
  // conversion: decoded here, it gives sharp's bytes without its per-image cost.
  const simple = decodeSimplePng(bytes, size);
  return simple !== null ? Promise.resolve(simple) : decodeWithSharp(bytes, size);
}

/** decodeImage through sharp alone, whatever the image. */
export function decodeWithSharp(bytes: Uint8Array, size: number): Promise<Uint8Array> {
  return withSharp(async (sharp) => {
    const { data, info } = await squareRgb(sharp, bytes, size)
      .removeAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.width !== size || info.height !== size || info.channels !== 3) {
      throw new Error(
        `decoded to ${info.width}×${info.height}×${info.channels}, not ${size}×${size}×3`,
      );
    }
    return new Uint8Array(data.buffer, data.byteOffset, data.length);
  });
}

/** Re-encodes an image at size × size (as `decodeImage` crops it) in a shard format. */
export function reencodeImage(
  bytes: Uint8Array,
  size: number,
  format: "jpg" | "png" | "webp",
  quality = 95,
): Promise<Uint8Array> {
  return withSharp(async (sharp) => {
    const img = squareRgb(sharp, bytes, size).removeAlpha();
    const out = format === "jpg"
      ? img.jpeg({ quality, mozjpeg: false })
      : format === "png"
      ? img.png()
      : img.webp({ quality });
    const buf = await out.toBuffer();
    return new Uint8Array(buf.buffer, buf.byteOffset, buf.length);
  });
}

/** Encodes HWC RGB pixels (for fixtures and benchmarks). */
export async function encodeRgb(
  rgb: Uint8Array,
  width: number,
  height: number,
  format: "jpg" | "png" | "webp",
  quality = 90,
): Promise<Uint8Array> {
  const sharp = await loadSharp();
  const img = sharp(rgb, { raw: { width, height, channels: 3 } });
  const out = format === "jpg"
    ? img.jpeg({ quality })
    : format === "png"
    ? img.png()
    : img.webp({ quality });
  const buf = await out.toBuffer();
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.length);
}

/**
 * HWC uint8 pixels of n images → NCHW float32 in [-1, 1] (p/255·2 − 1, DESIGN.md §3), the
 * layout the tokenizer's convolutions read.
 */
export function pixelsToFloatNCHW(pixels: Uint8Array, n: number, size: number): Float32Array {
  const hw = size * size;
  const out = new Float32Array(n * 3 * hw);
  for (let b = 0; b < n; b++) {
    const src = b * hw * 3, dst = b * hw * 3;
    for (let p = 0; p < hw; p++) {
      out[dst + p] = pixels[src + 3 * p] / 127.5 - 1;
      out[dst + hw + p] = pixels[src + 3 * p + 1] / 127.5 - 1;
      out[dst + 2 * hw + p] = pixels[src + 3 * p + 2] / 127.5 - 1;
    }
  }
  return out;
}
