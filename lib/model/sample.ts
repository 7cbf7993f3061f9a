// Sampling images (DESIGN §4): every scale's tokens drawn on the GPU with guidance, temperature,
// top-k and top-p from a seeded generator (same seed, same image), then f_hat decoded to pixels
// by the tokenizer. One readback, at the end.
import { UserError } from "../errors.ts";
import { imageGrid } from "../data/png.ts";
import { sampleTokens } from "../tensor/sample.ts";
import { concat, slice } from "../tensor/ops.ts";
import { noGrad, type Tensor, tidyAsync } from "../tensor/tensor.ts";
import type { ResidualQuantizer } from "../tokenizer/quantizer.ts";
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
  /** Guidance t per scale, coarsest first, the last repeating; overrides cfg's ramp. */
  guidanceByScale?: number[];
  /**
   * Scales 2..1+N drawn token by token, each token given those before it (drawInOrder in
   * generate.ts); 0 (or absent): every scale's tokens drawn at once, as VAR.
   */
  sequential?: number;
  /** 0: off. */
  topK: number;
  /** 1: off. */
  topP: number;
  seed: number;
  /**
   * Images drawn per caption, of which the model's own likeliest (rerankScores) is kept; 1 (or
   * absent): no reranking.
   */
  candidates?: number;
}

export const DEFAULT_SAMPLING: SamplingOptions = {
  cfg: 1,
  temperature: 0.7,
  topK: 0,
  topP: 1,
  seed: 0,
};

/** Scale k's entry of a per-scale list (the last repeating), or `otherwise` without a list. */
function perScale(list: number[] | undefined, k: number, otherwise: number): number {
  return list && list.length > 0 ? list[Math.min(k, list.length - 1)] : otherwise;
}

/** The temperature scale k samples at. */
export function scaleTemperature(o: SamplingOptions, k: number): number {
  return perScale(o.temperatureByScale, k, o.temperature);
}

/** The cfg generation runs with: with a guidance list, its largest (0: no unconditional half). */
export function guidanceCfg(o: SamplingOptions): number {
  const list = o.guidanceByScale;
  return list && list.length > 0 ? Math.max(...list) : o.cfg;
}

/** The guidance scale k samples at: the list's, or t of cfg's ramp. */
export function scaleGuidance(o: SamplingOptions, k: number, t: number): number {
  return perScale(o.guidanceByScale, k, t);
}

/** The token picker of these options: sampleTokens on the GPU, scale k its own stream. */
export function samplingPicker(o: SamplingOptions): TokenPicker {
  return (k, cond, uncond, t, row) =>
    sampleTokens(cond, uncond, {
      guidance: scaleGuidance(o, k, t),
      temperature: scaleTemperature(o, k),
      topK: o.topK,
      topP: o.topP,
      seed: o.seed,
      // A token drawn alone (ar_scales) gets a stream of its own: its rows are the batch's.
      stream: row === undefined ? k : 0x10000 * (k + 1) + row,
    });
}

/**
 * Weight λ of the caption's pointwise mutual information in rerankScores: 1, or
 * VMAMBAR_RERANK_PMI's value (for tools/measure-device.sh's sampling grid).
 */
export function rerankPmi(env = Deno.env.get("VMAMBAR_RERANK_PMI")): number {
  if (env === undefined) return 1;
  const x = Number(env);
  if (env.trim() === "" || !Number.isFinite(x)) {
    throw new UserError(`VMAMBAR_RERANK_PMI must be a number, got '${env}'`);
  }
  return x;
}

/**
 * A candidate's score from its summed token NLLs: log p(x|c) + λ·(log p(x|c) − log p(x|∅)), the
 * likelihood under its caption plus how much more likely the caption makes it than the null
 * caption (CogView's self-reranking in spirit). Without the null caption's (unguided): log p(x|c).
 */
export function rerankScores(
  nllCond: ArrayLike<number>,
  nllUncond: ArrayLike<number> | null,
  lambda = rerankPmi(),
): Float64Array {
  return Float64Array.from(
    nllCond,
    (c, i) => -c + (nllUncond ? lambda * (nllUncond[i] - c) : 0),
  );
}

/** Per caption, the row of its best-scoring candidate (rows caption-major, n per caption). */
export function bestCandidates(scores: Float64Array, n: number): number[] {
  const best: number[] = [];
  for (let at = 0; at < scores.length; at += n) {
    let b = at;
    for (let r = at + 1; r < at + n; r++) if (scores[r] > scores[b]) b = r;
    best.push(b);
  }
  return best;
}

/** Each caption's ids [T] repeated n times in a row: [B·T] → [B·n·T]. */
export function repeatCaptions(textIds: Int32Array, T: number, n: number): Int32Array {
  const B = textIds.length / T;
  const out = new Int32Array(B * n * T);
  for (let b = 0; b < B; b++) {
    for (let r = 0; r < n; r++) out.set(textIds.subarray(b * T, (b + 1) * T), (b * n + r) * T);
  }
  return out;
}

/**
 * f_hat [B, C, P, P] of the text ids [B·T]: with `candidates` > 1, each caption's likeliest of that
 * many draws (one readback of the scores before decoding).
 */
export async function sampleFeatures(
  model: VMambAR,
  quantizer: ResidualQuantizer,
  textIds: Int32Array,
  o: SamplingOptions,
): Promise<Tensor> {
  const n = Math.max(1, o.candidates ?? 1);
  const ids = n > 1 ? repeatCaptions(textIds, model.cfg.text_length, n) : textIds;
  if (n > 1 && (o.sequential ?? 0) > 0) {
    throw new UserError("--candidates and --sequential do not go together");
  }
  const g = generateScales(
    model,
    quantizer,
    ids,
    guidanceCfg(o),
    samplingPicker(o),
    n > 1,
    o.sequential ?? 0,
  );
  if (n === 1) return g.fHat;
  const cond = await g.nll!.cond.read() as Float32Array;
  const uncond = g.nll!.uncond ? await g.nll!.uncond.read() as Float32Array : null;
  const rows = bestCandidates(rerankScores(cond, uncond), n);
  return concat(rows.map((r) => slice(g.fHat, 0, r, r + 1)), 0);
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
    const fHat = await sampleFeatures(model, vq.quantize, textIds, o);
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
