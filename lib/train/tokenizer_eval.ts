// Tokenizer quality on held-out images: mean per-image PSNR and SSIM of the reconstructions
// (pixels in [0, 255], as VQ-VAE papers report them) and the share of the codebook in use,
// plus the originals-over-reconstructions grid that training writes now and then.
import { openLoader } from "../data/loader.ts";
import { encodePng } from "../data/png.ts";
import { reconstructImages, usedFraction } from "../tokenizer/reconstruct.ts";
import type { VQVAE } from "../tokenizer/vqvae.ts";
import { psnr, ssim } from "./metrics.ts";

export interface ImageSet {
  count: number;
  /** HWC uint8, `count` images of side `size`. */
  pixels: Uint8Array;
  keys: string[];
  captions: string[];
}

/** The first `limit` images of a source in stored order (a validation set, held in memory). */
export async function readImageSet(source: string, size: number, limit: number): Promise<ImageSet> {
  const loader = openLoader({
    source,
    batchSize: 64,
    imageSize: size,
    textLength: 2,
    shuffleBuffer: 0,
    epochs: 1,
  });
  const parts: Uint8Array[] = [], keys: string[] = [], captions: string[] = [];
  for await (const b of loader) {
    const take = Math.min(b.size, limit - keys.length);
    parts.push((b.pixels as Uint8Array).subarray(0, take * size * size * 3));
    keys.push(...b.keys.slice(0, take));
    captions.push(...b.captions.slice(0, take));
    if (keys.length >= limit) break;
  }
  const pixels = new Uint8Array(keys.length * size * size * 3);
  let at = 0;
  for (const p of parts) {
    pixels.set(p, at);
    at += p.length;
  }
  return { count: keys.length, pixels, keys, captions };
}

export interface ReconstructionQuality {
  images: number;
  /** Mean over images, in dB. */
  psnr: number;
  ssim: number;
  /** Fraction of the V codes used at the last scale, and at any scale, over these images. */
  usageLast: number;
  usageAll: number;
  /** The reconstructions, HWC uint8. */
  recon: Uint8Array;
}

export async function evaluateReconstruction(
  vq: VQVAE,
  pixels: Uint8Array,
  n: number,
  batchSize = 32,
): Promise<ReconstructionQuality> {
  const size = vq.cfg.image;
  const per = size * size * 3;
  const r = await reconstructImages(vq, pixels, n, batchSize);
  let p = 0, s = 0;
  for (let i = 0; i < n; i++) {
    const a = pixels.subarray(i * per, (i + 1) * per),
      b = r.pixels.subarray(i * per, (i + 1) * per);
    // A perfect image has infinite PSNR; cap it at 100 dB so one does not swamp the mean.
    p += Math.min(100, psnr(a, b));
    s += ssim(a, b, size, size, 3);
  }
  return {
    images: n,
    psnr: p / n,
    ssim: s / n,
    usageLast: usedFraction(r.usageLast),
    usageAll: usedFraction(r.usageAll),
    recon: r.pixels,
  };
}

/** A PNG of up to `columns` images: originals in the top row, reconstructions below. */
export function reconstructionGrid(
  originals: Uint8Array,
  recon: Uint8Array,
  n: number,
  size: number,
  columns = 8,
): Uint8Array {
  const cols = Math.min(columns, n);
  const gap = 2, width = cols * (size + gap) - gap, height = 2 * size + gap;
  const rgb = new Uint8Array(width * height * 3).fill(255);
  for (let i = 0; i < cols; i++) {
    [originals, recon].forEach((src, row) => {
      for (let y = 0; y < size; y++) {
        const from = (i * size * size + y * size) * 3;
        const to = ((row * (size + gap) + y) * width + i * (size + gap)) * 3;
        rgb.set(src.subarray(from, from + size * 3), to);
      }
    });
  }
  return encodePng(rgb, width, height);
}
