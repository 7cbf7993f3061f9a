// Sampling images (DESIGN §4): every scale's tokens drawn on the GPU with guidance, temperature,
// top-k and top-p from a seeded generator (same seed, same image), then f_hat decoded to pixels
// by the tokenizer. One readback, at the end.
import { UserError } from "../errors.ts";
import { imageGrid } from "../data/png.ts";
import { gpu } from "../gpu/mod.ts";
import { bestRows, sampleTokens } from "../tensor/sample.ts";
import { noGrad, type Tensor, tidyAsync } from "../tensor/tensor.ts";
import type { ResidualQuantizer } from "../tokenizer/quantizer.ts";
import { floatNCHWToPixels } from "../tokenizer/reconstruct.ts";
import type { VQVAE } from "../tokenizer/vqvae.ts";
import { type Generated, generateScales, type TokenPicker } from "./generate.ts";
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
   * Images drawn per caption, of which the best by the model's own likelihood (rerankScores) is
   * kept; 1: no reranking; absent: candidateCount's choice for the adapter.
   */
  candidates?: number;
}

/**
 * Candidates drawn when `--candidates` is left at auto: on a GPU a batch of four costs far less
 * than four images (generation is bound by its dispatches, not by arithmetic), and the best of
 * four gets far more scenes right; on a CPU adapter each candidate costs a whole image's arithmetic.
 */
export const AUTO_CANDIDATES = { gpu: 4, cpu: 1 } as const;

/** The candidates these options draw per caption: theirs, or AUTO_CANDIDATES for this adapter. */
export function candidateCount(o: SamplingOptions): number {
  if (o.candidates !== undefined) return Math.max(1, o.candidates);
  if ((o.sequential ?? 0) > 0) return 1;
  return gpu().isCpu ? AUTO_CANDIDATES.cpu : AUTO_CANDIDATES.gpu;
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

/**
 * The cfg generation runs with: with a guidance list, its entry farthest from 0 (0: every entry
 * 0, so no unconditional half).
 */
export function guidanceCfg(o: SamplingOptions): number {
  const list = o.guidanceByScale;
  if (!list || list.length === 0) return o.cfg;
  return list.reduce((far, g) => (Math.abs(g) > Math.abs(far) ? g : far), 0);
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
 * Weight λ of the caption's pointwise mutual information in rerankScores. The default −½ scores a
 * candidate by ½·log p(x|c) + ½·log p(x|∅): likely under its caption and plain enough to be
 * likely without it, which turns away the extra copy of an object that a caption's words invite
 * (tools/BENCHMARKS.md, "Best of four by the model's own likelihood"). VMAMBAR_RERANK_PMI sets
 * another, for experiments.
 */
export const RERANK_PMI = -0.5;

export function rerankPmi(env = Deno.env.get("VMAMBAR_RERANK_PMI")): number {
  if (env === undefined) return RERANK_PMI;
  const x = Number(env);
  if (env.trim() === "" || !Number.isFinite(x)) {
    throw new UserError(`VMAMBAR_RERANK_PMI must be a number, got '${env}'`);
  }
  return x;
}

/**
 * How many scales, coarsest first, a candidate's score sums over: every scale (true), or
 * VMAMBAR_RERANK_SCALES's count (the coarse scales that settle the layout; for experiments).
 */
export function rerankScales(env = Deno.env.get("VMAMBAR_RERANK_SCALES")): true | number {
  if (env === undefined) return true;
  const x = Number(env);
  if (env.trim() === "" || !Number.isInteger(x) || x < 1) {
    throw new UserError(`VMAMBAR_RERANK_SCALES must be a whole number above 0, got '${env}'`);
  }
  return x;
}

/**
 * A candidate's score from its summed token NLLs: log p(x|c) + λ·(log p(x|c) − log p(x|∅)), the
 * likelihood under its caption plus λ times how much more likely the caption makes it than the
 * null caption (RERANK_PMI). Without the null caption's (unguided): log p(x|c).
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

/**
 * Per caption, the row of its best-scoring candidate (rows caption-major, n per caption): with
 * rerankScores, the float64 reference of the GPU's choice (bestRows), which generation uses.
 */
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
 * The generation these options run for text ids [B·T]: each caption's ids repeated for its
 * candidates, and how many there are (n).
 */
export function candidateBatch(model: VMambAR, textIds: Int32Array, o: SamplingOptions) {
  const n = candidateCount(o);
  if (n > 1 && (o.sequential ?? 0) > 0) {
    throw new UserError("--candidates and --sequential do not go together");
  }
  const ids = n > 1 ? repeatCaptions(textIds, model.cfg.text_length, n) : textIds;
  return { ids, n, score: n > 1 ? rerankScales() : false as const };
}

/**
 * Each caption's best of its n candidates, chosen on the GPU (bestRows): no readback before
 * decoding. n = 1: the generation's f_hat itself.
 */
export function bestCandidate(g: Generated, n: number): Tensor {
  if (n === 1) return g.fHat;
  return bestRows(g.fHat, n, g.nll!.cond, g.nll!.uncond, rerankPmi());
}

/**
 * f_hat [B, C, P, P] of the text ids [B·T]: with more than one candidate, each caption's best
 * of them by rerankScores.
 */
export function sampleFeatures(
  model: VMambAR,
  quantizer: ResidualQuantizer,
  textIds: Int32Array,
  o: SamplingOptions,
): Tensor {
  const { ids, n, score } = candidateBatch(model, textIds, o);
  const g = generateScales(
    model,
    quantizer,
    ids,
    guidanceCfg(o),
    samplingPicker(o),
    score,
    o.sequential ?? 0,
  );
  return bestCandidate(g, n);
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
    const fHat = sampleFeatures(model, vq.quantize, textIds, o);
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
