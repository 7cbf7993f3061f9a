// Sampling images (DESIGN §4): every scale's tokens drawn on the GPU with guidance, temperature,
// top-k and top-p from a seeded generator (same seed, same image), then f_hat decoded to pixels
// by the tokenizer. One readback, at the end.
import { imageGrid } from "../data/png.ts";
import { sampleTokens } from "../tensor/sample.ts";
import { noGrad, tidyAsync } from "../tensor/tensor.ts";
import { floatNCHWToPixels } from "../tokenizer/reconstruct.ts";
import type { VQVAE } from "../tokenizer/vqvae.ts";
import { generateScales, type TokenPicker } from "./generate.ts";
import type { VMambAR } from "./vmambar.ts";

export interface SamplingOptions {
  /** Guidance scale (t grows linearly to it over the scales); 0 is unguided. */
  cfg: number;
  temperature: number;
  /** Per scale, coarsest first, the last repeating for the rest; overrides `temperature`. */
  temperatureByScale?: number[];
  /** 0: off. */
  topK: number;
  /** 1: off. */
  topP: number;
  seed: number;
}

export const DEFAULT_SAMPLING: SamplingOptions = {
  cfg: 1,
  temperature: 0.7,
  topK: 0,
  topP: 1,
  seed: 0,
};

/** The temperature scale k samples at. */
export function scaleTemperature(o: SamplingOptions, k: number): number {
  const list = o.temperatureByScale;
  return list && list.length > 0 ? list[Math.min(k, list.length - 1)] : o.temperature;
}

/** The token picker of these options: sampleTokens on the GPU, scale k its own stream. */
export function samplingPicker(o: SamplingOptions): TokenPicker {
  return (k, cond, uncond, t) =>
    sampleTokens(cond, uncond, {
      guidance: t,
      temperature: scaleTemperature(o, k),
      topK: o.topK,
      topP: o.topP,
      seed: o.seed,
      stream: k,
    });
}

/** Images for text ids [B·T] as HWC uint8 pixels [B, size, size, 3]. */
export async function sampleImages(
  model: VMambAR,
  vq: VQVAE,
  textIds: Int32Array,
  o: SamplingOptions,
): Promise<Uint8Array> {
  const B = textIds.length / model.cfg.text_length;
  return await tidyAsync(async () => {
    const { fHat } = generateScales(model, vq.quantize, textIds, o.cfg, samplingPicker(o));
    const x = noGrad(() => vq.decodeMap(fHat));
    return floatNCHWToPixels(await x.toArray(), B, vq.cfg.image);
  });
}

/** The trainer's sample grid: fixed prompts through the EMA weights, written as one PNG. */
export function sampleGridWriter(vq: VQVAE, textIds: Int32Array, o = DEFAULT_SAMPLING) {
  return async (model: VMambAR, path: string) => {
    if (textIds.length === 0) return;
    const pixels = await sampleImages(model, vq, textIds, o);
    const n = textIds.length / model.cfg.text_length;
    await Deno.writeFile(path, imageGrid(pixels, n, vq.cfg.image));
  };
}
