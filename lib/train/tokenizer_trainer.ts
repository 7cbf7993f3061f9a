// Training the multi-scale VQ-VAE (DESIGN §3): loss = L2 + L1 reconstruction of pixels in
// [-1, 1] + the quantizer's VQ loss; AdamW on a warmup + cosine schedule; dead codes restarted
// from recent quantizer inputs. Losses and code usage accumulate on the GPU and are read back
// only when asked (readStats), so a step costs no round trip except every `restartEvery` steps.
import { UserError } from "../errors.ts";
import { flush, upload } from "../gpu/mod.ts";
import { deriveSeed, mulberry32 } from "../data/random.ts";
import { backward, zeroGrad } from "../tensor/autograd.ts";
import { abs, add, addInPlace, concat, mean, square, sub, zeros } from "../tensor/ops.ts";
import { keep, noGrad, type Tensor, tidyAsync } from "../tensor/tensor.ts";
import { codeUsage } from "../tensor/vq.ts";
import type { TokenizerConfig } from "../tokenizer/config.ts";
import { VQVAE } from "../tokenizer/vqvae.ts";
import { AdamW } from "./optim.ts";
import { type StTensor, toFloat32, writeSafetensors } from "../io/safetensors.ts";
import { learningRate } from "./schedule.ts";
import { tensorsToHost } from "../io/checkpoint.ts";

export interface TokenizerTrainingSettings {
  batchSize: number;
  /** Peak learning rate, reached after `warmup` steps, then cosine to lr·minLrRatio at `steps`. */
  lr: number;
  warmup: number;
  steps: number;
  minLrRatio: number;
  /** Decoupled weight decay of conv weights (biases, norms and the codebook get none). */
  weightDecay: number;
  beta1: number;
  beta2: number;
  /** Global gradient-norm clip (≤ 0: none). */
  gradClip: number;
  /** Every this many steps, codes unused since the last restart get new vectors (0: never). */
  restartEvery: number;
  /** Seeds the initial weights, the data order and the restarts. */
  seed: number;
}

export const DEFAULT_TOKENIZER_SETTINGS: TokenizerTrainingSettings = {
  batchSize: 32,
  lr: 1e-3,
  warmup: 200,
  steps: 6000,
  minLrRatio: 0.05,
  weightDecay: 1e-4,
  beta1: 0.9,
  beta2: 0.95,
  gradClip: 1,
  restartEvery: 100,
  seed: 0,
};

/** Means over the steps since the last readStats(), and code usage over the same steps. */
export interface TrainingStats {
  steps: number;
  loss: number;
  mse: number;
  l1: number;
  vqLoss: number;
  /** PSNR in dB of the (unclamped) reconstructions, from the mean MSE over a range of 2. */
  psnr: number;
  /** Fraction of codes used at the last scale, and at any scale. */
  usageLast: number;
  usageAll: number;
  gradNorm: number;
}

const meanAll = (x: Tensor) => mean(x.reshape([x.size]), 0, true);

/**
 * The training loss of DESIGN §3 on pixels x [B, 3, H, W] in [-1, 1]: L2 + L1 of the
 * reconstruction plus the quantizer's VQ loss, through the straight-through f_hat.
 */
export function tokenizerLoss(vq: VQVAE, x: Tensor) {
  const q = vq.quantize.forward(vq.encodeMap(x));
  const diff = sub(vq.decodeMap(q.fHat), x);
  const mse = meanAll(square(diff)), l1 = meanAll(abs(diff));
  return { loss: add(add(mse, l1), q.vqLoss), mse, l1, q };
}

function usedFraction(counts: Uint32Array): number {
  return counts.reduce((n, c) => n + (c > 0 ? 1 : 0), 0) / counts.length;
}

export class TokenizerTrainer {
  readonly vq: VQVAE;
  readonly opt: AdamW;
  /** Steps taken (the next step's index). */
  step = 0;
  /** Codes restarted so far, and at the last restart. */
  restarts = { total: 0, last: 0 };
  /** Sums of [loss, mse, l1, vqLoss] over `#statSteps` steps. */
  readonly #sums: Tensor;
  #statSteps = 0;
  /** Code counts since the last restart (any scale), and since the last readStats(). */
  readonly #usageWindow: Tensor;
  readonly #usageLast: Tensor;
  readonly #usageAll: Tensor;
  readonly #codebookEntry: number;

  constructor(readonly cfg: TokenizerConfig, readonly settings: TokenizerTrainingSettings) {
    this.vq = new VQVAE(cfg, settings.seed);
    const codebook = this.vq.quantize.codebook;
    const entries = this.vq.namedParameters().map(([, p]) => ({
      param: p,
      weightDecay: p.shape.length >= 2 && p !== codebook ? settings.weightDecay : 0,
    }));
    this.#codebookEntry = entries.findIndex((e) => e.param === codebook);
    this.opt = new AdamW(entries, {
      lr: settings.lr,
      beta1: settings.beta1,
      beta2: settings.beta2,
      maxGradNorm: settings.gradClip,
    });
    this.#sums = keep(zeros([4]));
    this.#usageWindow = keep(zeros([cfg.vocab], "u32"));
    this.#usageLast = keep(zeros([cfg.vocab], "u32"));
    this.#usageAll = keep(zeros([cfg.vocab], "u32"));
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

  /** One optimizer step on a batch of pixels x [B, 3, H, W] in [-1, 1]. */
  async trainStep(x: Tensor): Promise<void> {
    const { vocab, scales } = this.cfg;
    const params = this.vq.parameters();
    const lr = this.learningRate;
    await tidyAsync(async () => {
      zeroGrad(params);
      const { loss, mse, l1, q } = tokenizerLoss(this.vq, x);
      backward(loss);
      this.opt.update(lr);
      noGrad(() => addInPlace(this.#sums, concat([loss, mse, l1, q.vqLoss], 0)));
      codeUsage(q.indices[scales.length - 1], vocab, this.#usageLast);
      for (const idx of q.indices) {
        codeUsage(idx, vocab, this.#usageAll);
        codeUsage(idx, vocab, this.#usageWindow);
      }
      this.#statSteps++;
      this.step++;
      const every = this.settings.restartEvery;
      if (every > 0 && this.step % every === 0) await this.#restartDeadCodes(q.inputs);
    });
    zeroGrad(params);
    // Submit the step: the GPU starts on it while the next one is recorded, and every step's
    // batch starts at uniform slot 0, so the recorder's cached bind groups match step to step.
    flush();
  }

  /**
   * Codes unused at every scale since the last restart take the vectors of randomly chosen
   * quantizer inputs of this step (so they sit where the encoder's outputs are), and their
   * optimizer moments start again from zero. One readback.
   */
  async #restartDeadCodes(inputs: Tensor[]): Promise<void> {
    const { vocab: V, cvae: C } = this.cfg;
    const k = this.#codebookEntry;
    const codebook = this.vq.quantize.codebook;
    const [counts, book, m, v, ...maps] = await Promise.all(
      [this.#usageWindow, codebook, this.opt.m[k], this.opt.v[k], ...inputs].map((t) => t.read()),
    );
    const dead: number[] = [];
    (counts as Uint32Array).forEach((c, code) => c === 0 && dead.push(code));
    upload(this.#usageWindow.buffer, new Uint32Array(V));
    this.restarts.last = dead.length;
    if (dead.length === 0) return;
    // Every quantizer input vector, addressed as (map, batch·pixel); maps are [B, C, pn, pn].
    const rows: [number, number][] = [];
    inputs.forEach((t, i) => {
      const n = t.shape[0] * t.shape[2] * t.shape[3];
      for (let r = 0; r < n; r++) rows.push([i, r]);
    });
    // The restart's draws depend only on (seed, step), so a resumed run draws the same.
    const rng = mulberry32(deriveSeed(this.settings.seed, "restart", this.step));
    const cb = book as Float32Array, mm = m as Float32Array, vv = v as Float32Array;
    // Distinct rows (a partial Fisher–Yates shuffle) while there are enough of them.
    const distinct = dead.length <= rows.length;
    dead.forEach((code, j) => {
      let row = rows[Math.floor(rng() * rows.length)];
      if (distinct) {
        const at = j + Math.floor(rng() * (rows.length - j));
        [rows[j], rows[at]] = [rows[at], rows[j]];
        row = rows[j];
      }
      const [map, r] = row;
      const t = inputs[map], hw = t.shape[2] * t.shape[3];
      const b = Math.floor(r / hw), p = r % hw;
      const data = maps[map] as Float32Array;
      for (let c = 0; c < C; c++) {
        cb[code * C + c] = data[(b * C + c) * hw + p];
        mm[code * C + c] = 0;
        vv[code * C + c] = 0;
      }
    });
    upload(codebook.buffer, cb);
    upload(this.opt.m[k].buffer, mm);
    upload(this.opt.v[k].buffer, vv);
    this.restarts.total += dead.length;
  }

  /** Means and usage since the last call (one readback), then starts a new window. */
  async readStats(): Promise<TrainingStats> {
    const [sums, last, all, clip] = await Promise.all(
      [this.#sums, this.#usageLast, this.#usageAll, this.opt.stats].map((t) => t.read()),
    );
    const n = Math.max(1, this.#statSteps);
    const [loss, mse, l1, vqLoss] = Array.from(sums as Float32Array, (s) => s / n);
    const stats: TrainingStats = {
      steps: this.#statSteps,
      loss,
      mse,
      l1,
      vqLoss,
      psnr: 10 * Math.log10(4 / mse),
      usageLast: usedFraction(last as Uint32Array),
      usageAll: usedFraction(all as Uint32Array),
      gradNorm: (clip as Float32Array)[0],
    };
    upload(this.#sums.buffer, new Float32Array(4));
    upload(this.#usageLast.buffer, new Uint32Array(this.cfg.vocab));
    upload(this.#usageAll.buffer, new Uint32Array(this.cfg.vocab));
    this.#statSteps = 0;
    return stats;
  }

  /**
   * The train-state tensors: the parameters under their own names, AdamW moments by parameter
   * name, and the GPU accumulators. With the parameters in it, the train-state alone resumes a
   * run, so a crash between writing it and the tokenizer checkpoint loses nothing.
   */
  #stateTensors(): [string, Tensor][] {
    const named = this.vq.namedParameters();
    const names = named.map(([n]) => n);
    return [
      ...named,
      ...names.map((n, i): [string, Tensor] => [`optimizer.m.${n}`, this.opt.m[i]]),
      ...names.map((n, i): [string, Tensor] => [`optimizer.v.${n}`, this.opt.v[i]]),
      ["stats.sums", this.#sums],
      ["usage.window", this.#usageWindow],
      ["usage.last", this.#usageLast],
      ["usage.all", this.#usageAll],
    ];
  }

  /** Writes the train-state file (DESIGN §5 kind train-state); `extra` joins its metadata. */
  async saveState(path: string, extra: Record<string, string>): Promise<void> {
    const tensors = await tensorsToHost(this.#stateTensors());
    await writeSafetensors(path, tensors, {
      format: "vmambar",
      kind: "train-state",
      config: JSON.stringify(this.cfg),
      settings: JSON.stringify(this.settings),
      step: String(this.step),
      optimizer_step: String(this.opt.step),
      stat_steps: String(this.#statSteps),
      restarts: JSON.stringify(this.restarts),
      ...extra,
    });
  }

  /** Restores what saveState wrote, parameters included. */
  loadState(tensors: Map<string, StTensor>, metadata: Record<string, string>, source: string) {
    if (!tensors.has(this.vq.namedParameters()[0][0])) {
      throw new UserError(
        `${source} holds no parameters (an older vmambar wrote it): it cannot resume; ` +
          "start over with --force",
      );
    }
    for (const [name, t] of this.#stateTensors()) {
      const st = tensors.get(name);
      if (!st || st.shape.join() !== t.shape.join()) {
        throw new UserError(`${source}: ${name} is missing or has another shape than this model's`);
      }
      upload(t.buffer, t.dtype === "u32" ? st.data : toFloat32(st));
    }
    this.step = Number(metadata.step);
    this.opt.step = Number(metadata.optimizer_step);
    this.#statSteps = Number(metadata.stat_steps);
    this.restarts = JSON.parse(metadata.restarts);
  }

  dispose(): void {
    this.opt.dispose();
    this.vq.dispose();
    for (const t of [this.#sums, this.#usageWindow, this.#usageLast, this.#usageAll]) t.dispose();
  }
}
