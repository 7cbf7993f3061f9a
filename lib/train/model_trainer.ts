// Training VMambAR (DESIGN §4): cross-entropy over the image tokens with teacher forcing through
// the frozen tokenizer's quantizer, optionally distilled from a teacher; AdamW (β 0.9/0.95,
// weight decay on matrices only) on a warmup + cosine schedule with global-norm clipping; gradient
// accumulation over micro-batches; caption dropout for guidance; an EMA of the weights. A step
// reads nothing back: losses accumulate on the GPU until readStats().
import { UserError } from "../errors.ts";
import { flush, upload } from "../gpu/mod.ts";
import { deriveSeed, mulberry32 } from "../data/random.ts";
import { batchCaptionIds } from "../data/text.ts";
import type { TokenBatch } from "../data/token_set.ts";
import { type StTensor, toFloat32 } from "../io/safetensors.ts";
import { arScales, type ModelConfig } from "../model/config.ts";
import { previousCodes, teacherFeatures } from "../model/inputs.ts";
import { Sequence, VMambAR } from "../model/vmambar.ts";
import { backward, zeroGrad } from "../tensor/autograd.ts";
import { logSoftmax, softmax } from "../tensor/nn_ops.ts";
import { add, addInPlace, concat, mul, scale, sub, sumAll, zeros } from "../tensor/ops.ts";
import { keep, noGrad, type Tensor, tidy } from "../tensor/tensor.ts";
import type { ResidualQuantizer } from "../tokenizer/quantizer.ts";
import { AdamW, emaUpdate } from "./optim.ts";
import { learningRate } from "./schedule.ts";
import { type Collective, SingleProcess } from "../dist/collective.ts";
import { allReduceTensors, broadcastTensors } from "../dist/tensors.ts";

export interface ModelTrainingSettings {
  /** Samples per optimizer step, and per forward/backward (the batch is their multiple). */
  batchSize: number;
  microBatch: number;
  lr: number;
  warmup: number;
  steps: number;
  minLrRatio: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  gradClip: number;
  /** EMA decay of the weights (warmed up as min(decay, (1 + step)/(10 + step))). */
  emaDecay: number;
  /** Probability that a caption is replaced by the null caption (guidance). */
  captionDropout: number;
  seed: number;
  /** Distillation: loss = (1 − α)·CE + α·τ²·KL(teacher_τ ‖ student_τ); α 0 is off. */
  kdAlpha: number;
  kdTemp: number;
  /**
   * Loss weight of each scale's tokens, coarsest first, the last repeating
   * (VMambAR.scaleWeightedLoss); absent: every token alike. The metrics' `ce` stays unweighted.
   */
  scaleWeights?: number[];
}

export const DEFAULT_MODEL_SETTINGS: ModelTrainingSettings = {
  batchSize: 64,
  microBatch: 64,
  lr: 5e-4,
  warmup: 200,
  steps: 5000,
  minLrRatio: 0.1,
  weightDecay: 0.05,
  beta1: 0.9,
  beta2: 0.95,
  gradClip: 1,
  emaDecay: 0.999,
  captionDropout: 0.1,
  seed: 0,
  kdAlpha: 0,
  kdTemp: 1,
};

/** τ²·KL(softmax(t/τ) ‖ softmax(s/τ)), mean over rows of logits [..., V]; t gets no gradient. */
export function distillationLoss(teacher: Tensor, student: Tensor, tau: number): Tensor {
  const V = student.shape.at(-1)!;
  const rows = student.size / V;
  const s = student.reshape([rows, V]);
  const [pt, logPt] = noGrad(() => {
    const t = scale(teacher.reshape([rows, V]), 1 / tau);
    return [softmax(t), logSoftmax(t)];
  });
  const kl = sumAll(mul(pt, sub(logPt, logSoftmax(scale(s, 1 / tau)))));
  return scale(kl, (tau * tau) / rows);
}

export interface ModelTrainingStats {
  steps: number;
  loss: number;
  ce: number;
  kd: number;
  gradNorm: number;
}

export class ModelTrainer {
  readonly model: VMambAR;
  /** The moving average of the weights (what generation uses). */
  readonly ema: VMambAR;
  readonly opt: AdamW;
  step = 0;
  /** Sums of [loss, ce, kd] over `#statSteps` steps. */
  readonly #sums: Tensor;
  #statSteps = 0;
  /** Data parallel: the ranks this trainer's gradients and stats are summed over. */
  collective: Collective = new SingleProcess();
  /** Seconds spent staging and all-reducing gradients (data parallel only). */
  reduceSeconds = 0;

  constructor(
    readonly cfg: ModelConfig,
    readonly settings: ModelTrainingSettings,
    readonly quantizer: ResidualQuantizer,
    readonly teacher: VMambAR | null = null,
  ) {
    if (settings.batchSize % settings.microBatch !== 0) {
      throw new UserError(
        `--batch ${settings.batchSize} is not a multiple of --micro-batch ${settings.microBatch}`,
      );
    }
    this.model = new VMambAR(cfg, settings.seed);
    this.ema = new VMambAR(cfg, settings.seed);
    // Weight decay on matrices only: not norms, biases, D, nor A_log (mamba's _no_weight_decay).
    const entries = this.model.namedParameters().map(([name, p]) => ({
      param: p,
      weightDecay: p.shape.length >= 2 && !name.endsWith("A_log") ? settings.weightDecay : 0,
    }));
    this.opt = new AdamW(entries, {
      lr: settings.lr,
      beta1: settings.beta1,
      beta2: settings.beta2,
      maxGradNorm: settings.gradClip,
    });
    this.#sums = keep(zeros([3]));
  }

  get learningRate(): number {
    const s = this.settings;
    return learningRate(this.step, {
      lr: s.lr,
      warmup: s.warmup,
      total: s.steps,
      minRatio: s.minLrRatio,
    });
  }

  /** Captions replaced by the null caption with probability p, drawn from (seed, step, micro). */
  dropCaptions(textIds: Int32Array, micro: number): Int32Array {
    const p = this.settings.captionDropout;
    if (p <= 0) return textIds;
    const T = this.cfg.text_length;
    const out = Int32Array.from(textIds);
    const empty = batchCaptionIds([""], T);
    const rng = mulberry32(deriveSeed(this.settings.seed, "dropout", this.step, micro));
    for (let b = 0; b < textIds.length / T; b++) if (rng() < p) out.set(empty, b * T);
    return out;
  }

  /**
   * One micro-batch's forward and backward, its gradient scaled by its share of the batch.
   * Returns the logits (kept) when `keepLogits` is set, for token accuracy.
   */
  #microStep(batch: TokenBatch, micro: number, keepLogits: boolean): Tensor | null {
    const { kdAlpha: alpha, kdTemp: tau, batchSize } = this.settings;
    return tidy(() => {
      const ids = this.dropCaptions(batch.textIds, micro);
      const seq = new Sequence(this.cfg, ids);
      const features = teacherFeatures(this.quantizer, batch.indices, batch.size);
      const prev = (c: ModelConfig) =>
        previousCodes(this.quantizer, batch.indices, batch.size, arScales(c));
      const logits = this.model.forward(seq, features, prev(this.cfg));
      const ce = VMambAR.loss(logits, batch.indices);
      const sw = this.settings.scaleWeights;
      const fit = sw ? VMambAR.scaleWeightedLoss(logits, batch.indices, this.cfg.scales, sw) : ce;
      let loss = fit, kd = zeros([1]);
      if (this.teacher && alpha > 0) {
        const tc = this.teacher.cfg;
        const tseq = arScales(tc) === arScales(this.cfg) ? seq : new Sequence(tc, ids);
        const t = noGrad(() => this.teacher!.forward(tseq, features, prev(tc)));
        kd = distillationLoss(t, logits, tau);
        loss = add(scale(fit, 1 - alpha), scale(kd, alpha));
      }
      const share = batch.size / batchSize;
      backward(scale(loss, share));
      noGrad(() => addInPlace(this.#sums, scale(concat([loss, ce, kd], 0), share)));
      return keepLogits ? keep(noGrad(() => scale(logits, 1))) : null;
    });
  }

  /**
   * One optimizer step over the micro-batches of one batch. With `keepLogits`, returns the first
   * micro-batch's logits [b, L, V] (the caller reads and frees them).
   */
  trainStep(micro: TokenBatch[], keepLogits = false): Tensor | null {
    const lr = this.learningRate;
    const logits = this.#backwardAll(micro, keepLogits, 0);
    this.#apply(lr);
    return logits;
  }

  /**
   * Data parallel: one optimizer step of which this rank holds the micro-batches `micro`, the
   * batch's `firstMicro`-th onward (for caption dropout). Each micro-batch's gradient is scaled by
   * its share of the whole batch, so their sum over the ranks (staged through host memory) is the
   * batch's gradient; every rank then takes the same step.
   */
  async trainStepAllReduced(
    micro: TokenBatch[],
    firstMicro: number,
    keepLogits = false,
  ): Promise<Tensor | null> {
    const lr = this.learningRate;
    const logits = this.#backwardAll(micro, keepLogits, firstMicro);
    const t0 = performance.now();
    const grads = this.model.parameters().flatMap((p) => p.grad ? [p.grad] : []);
    await allReduceTensors(grads, this.collective);
    this.reduceSeconds += (performance.now() - t0) / 1000;
    this.#apply(lr);
    return logits;
  }

  /** Data parallel: gives every rank rank 0's weights, EMA and moments (once, at the start). */
  async broadcastState(): Promise<void> {
    await broadcastTensors(this.stateTensors().map(([, t]) => t), this.collective, 0);
    // The stats window is summed over the ranks: rank 0 alone keeps a resumed one.
    if (this.collective.rank !== 0) upload(this.#sums.buffer, new Float32Array(3));
  }

  #backwardAll(micro: TokenBatch[], keepLogits: boolean, firstMicro: number): Tensor | null {
    zeroGrad(this.model.parameters());
    let logits: Tensor | null = null;
    micro.forEach((b, i) => {
      const l = this.#microStep(b, firstMicro + i, keepLogits && i === 0);
      logits ??= l;
    });
    return logits;
  }

  #apply(lr: number): void {
    const params = this.model.parameters();
    this.opt.update(lr);
    zeroGrad(params);
    const s = this.step;
    emaUpdate(this.ema.parameters(), params, Math.min(this.settings.emaDecay, (1 + s) / (10 + s)));
    this.#statSteps++;
    this.step++;
    flush();
  }

  /** Means since the last call (one readback), then starts a new window. */
  async readStats(): Promise<ModelTrainingStats> {
    const [sums, clip] = await Promise.all([this.#sums.read(), this.opt.stats.read()]);
    await this.collective.allReduceSum(sums as Float32Array);
    const n = Math.max(1, this.#statSteps);
    const [loss, ce, kd] = Array.from(sums as Float32Array, (v) => v / n);
    const stats = { steps: this.#statSteps, loss, ce, kd, gradNorm: (clip as Float32Array)[0] };
    upload(this.#sums.buffer, new Float32Array(3));
    this.#statSteps = 0;
    return stats;
  }

  /** The loss summed since the last readStats() plus the last gradient norm (NaN shows in it). */
  async peekLoss(): Promise<number> {
    const [sums, clip] = await Promise.all([this.#sums.read(), this.opt.stats.read()]);
    await this.collective.allReduceSum(sums as Float32Array);
    return (sums as Float32Array)[0] + 0 * (clip as Float32Array)[0];
  }

  /** Everything a resume needs, by name: weights, EMA, AdamW moments, the stats window. */
  stateTensors(): [string, Tensor][] {
    const named = this.model.namedParameters();
    return [
      ...named.map(([n, t]): [string, Tensor] => [`model.${n}`, t]),
      ...this.ema.namedParameters().map(([n, t]): [string, Tensor] => [`ema.${n}`, t]),
      ...named.map(([n], i): [string, Tensor] => [`optimizer.m.${n}`, this.opt.m[i]]),
      ...named.map(([n], i): [string, Tensor] => [`optimizer.v.${n}`, this.opt.v[i]]),
      ["stats.sums", this.#sums],
    ];
  }

  stateMetadata(): Record<string, string> {
    return {
      step: String(this.step),
      optimizer_step: String(this.opt.step),
      stat_steps: String(this.#statSteps),
      settings: JSON.stringify(this.settings),
    };
  }

  /** Restores what stateTensors() and stateMetadata() saved. */
  loadState(tensors: Map<string, StTensor>, metadata: Record<string, string>, source: string) {
    for (const [name, t] of this.stateTensors()) {
      const st = tensors.get(name);
      if (!st || st.shape.join() !== t.shape.join()) {
        throw new UserError(`${source}: ${name} is missing or has another shape than this model's`);
      }
      upload(t.buffer, toFloat32(st));
    }
    this.step = Number(metadata.step);
    this.opt.step = Number(metadata.optimizer_step);
    this.#statSteps = Number(metadata.stat_steps);
  }

  dispose(): void {
    this.opt.dispose();
    this.model.dispose();
    this.ema.dispose();
    this.#sums.dispose();
  }
}
