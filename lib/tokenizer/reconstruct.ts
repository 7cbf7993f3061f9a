// Images through the tokenizer and back: pixels → f → indices per scale → f_hat → pixels
// (DESIGN §3), batched on the GPU. Pixels are HWC uint8 on the host; the VQVAE sees NCHW in [-1, 1].
import { pixelsToFloatNCHW } from "../data/images.ts";
import { codeUsage } from "../tensor/vq.ts";
import { noGrad, type Tensor, tensor, tidyAsync } from "../tensor/tensor.ts";
import type { VQVAE } from "./vqvae.ts";

/** NCHW floats in [-1, 1] → HWC uint8 (the inverse of p/255·2 − 1, rounded and clamped). */
export function floatNCHWToPixels(x: ArrayLike<number>, n: number, size: number): Uint8Array {
  const hw = size * size;
  const out = new Uint8Array(n * hw * 3);
  for (let b = 0; b < n; b++) {
    for (let c = 0; c < 3; c++) {
      const src = (b * 3 + c) * hw;
      for (let p = 0; p < hw; p++) {
        const v = Math.round((x[src + p] + 1) * 127.5);
        out[(b * hw + p) * 3 + c] = v < 0 ? 0 : v > 255 ? 255 : v;
      }
    }
  }
  return out;
}

/** Pixels in [-1, 1] → indices per scale, i32 [B, pn, pn] each (what `tokenize` stores). */
export function encodeImages(vq: VQVAE, x: Tensor): Tensor[] {
  return noGrad(() => vq.quantize.encode(vq.encodeMap(x)));
}

/** Indices per scale → pixels in about [-1, 1]. */
export function decodeIndices(vq: VQVAE, indices: Tensor[]): Tensor {
  return noGrad(() => vq.decodeMap(vq.quantize.decode(indices, vq.cfg.scales.at(-1)!)));
}

export interface Reconstruction {
  /** HWC uint8, as the input. */
  pixels: Uint8Array;
  /** Code-usage counts over these images at the last scale and at any scale. */
  usageLast: Uint32Array;
  usageAll: Uint32Array;
}

/**
 * Encodes and decodes n images of side `size` (HWC uint8), `batchSize` at a time; one readback
 * per batch.
 */
export async function reconstructImages(
  vq: VQVAE,
  pixels: Uint8Array,
  n: number,
  batchSize = 32,
): Promise<Reconstruction> {
  const { image: size, vocab, scales } = vq.cfg;
  const per = size * size * 3;
  const out = new Uint8Array(n * per);
  const usageLast = new Uint32Array(vocab), usageAll = new Uint32Array(vocab);
  for (let start = 0; start < n; start += batchSize) {
    const b = Math.min(batchSize, n - start);
    const chunk = pixels.subarray(start * per, (start + b) * per);
    const [rec, last, all] = await tidyAsync(async () => {
      const x = tensor(pixelsToFloatNCHW(chunk, b, size), [b, 3, size, size]);
      const indices = encodeImages(vq, x);
      const y = decodeIndices(vq, indices);
      const last = codeUsage(indices[scales.length - 1], vocab);
      const all = codeUsage(indices[0], vocab);
      for (let k = 1; k < indices.length; k++) codeUsage(indices[k], vocab, all);
      return await Promise.all([y.read(), last.read(), all.read()]);
    });
    out.set(floatNCHWToPixels(rec as Float32Array, b, size), start * per);
    (last as Uint32Array).forEach((c, v) => (usageLast[v] += c));
    (all as Uint32Array).forEach((c, v) => (usageAll[v] += c));
  }
  return { pixels: out, usageLast, usageAll };
}

/** Fraction of codes with a non-zero count. */
export function usedFraction(counts: ArrayLike<number>): number {
  let used = 0;
  for (let i = 0; i < counts.length; i++) if (counts[i] > 0) used++;
  return used / counts.length;
}
