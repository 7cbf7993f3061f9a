// AdamW with decoupled weight decay and global gradient-norm clipping, all on the GPU: the clip
// scale is computed into a buffer that the update reads, so a step needs no readback.
import { ShapeError } from "../errors.ts";
import { dispatch, f32bits, grid, pipeline } from "../gpu/mod.ts";
import optimWgsl from "../../kernels/optim.wgsl" with { type: "text" };
import { keep, Tensor } from "../tensor/tensor.ts";
import { fill, zeros } from "../tensor/ops.ts";

export interface AdamWOptions {
  lr?: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** Clip the global gradient norm to this (≤ 0: no clipping). */
  maxGradNorm?: number;
}

export interface ParamGroupEntry {
  param: Tensor;
  /** Overrides the optimizer's weight decay (e.g. 0 for norms, biases and embeddings). */
  weightDecay?: number;
}

const MAX_PARTIALS_PER_TENSOR = 64;

export class AdamW {
  readonly entries: ParamGroupEntry[];
  readonly m: Tensor[];
  readonly v: Tensor[];
  opts: Required<AdamWOptions>;
  step = 0;
  /** [global grad norm, clip scale] of the last step, on the GPU (read it only when logging). */
  readonly stats: Tensor;
  #partials: Tensor;
  #offsets: number[] = [];
  #counts: number[] = [];

  constructor(params: (Tensor | ParamGroupEntry)[], opts: AdamWOptions = {}) {
    this.entries = params.map((p) => (p instanceof Tensor ? { param: p } : p));
    for (const { param } of this.entries) {
      if (param.dtype !== "f32" || !param.requiresGrad) {
        throw new ShapeError(`AdamW: parameters must be f32 and require grad (${param})`);
      }
    }
    this.opts = {
      lr: 1e-3,
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
      weightDecay: 0.01,
      maxGradNorm: 0,
      ...opts,
    };
    this.m = this.entries.map(({ param }) => keep(zeros(param.shape)));
    this.v = this.entries.map(({ param }) => keep(zeros(param.shape)));
    let total = 0;
    for (const { param } of this.entries) {
      const count = Math.max(1, Math.min(MAX_PARTIALS_PER_TENSOR, Math.ceil(param.size / 256)));
      this.#offsets.push(total);
      this.#counts.push(count);
      total += count;
    }
    this.#partials = keep(zeros([Math.max(1, total)]));
    this.stats = keep(fill([2], 1));
  }

  /** Computes the global gradient norm and clip scale into `stats` (no readback). */
  #clip(): void {
    const sumSquares = pipeline(optimWgsl, "sum_squares");
    this.entries.forEach(({ param }, k) => {
      // A parameter without a gradient contributes zeros (n = 0 over a placeholder buffer).
      dispatch(
        sumSquares,
        [param.grad?.buffer ?? this.stats.buffer, this.#partials.buffer],
        [param.grad ? param.size : 0, this.#offsets[k]],
        [this.#counts[k]],
      );
    });
    dispatch(
      pipeline(optimWgsl, "clip_scale"),
      [this.#partials.buffer, this.stats.buffer],
      [this.#partials.size, f32bits(this.opts.maxGradNorm)],
      [1],
    );
  }

  /** One update of every parameter that has a gradient; `lr` overrides the base rate (schedules). */
  update(lr = this.opts.lr): void {
    this.step++;
    this.#clip();
    const { beta1, beta2, eps, weightDecay } = this.opts;
    const bc1 = 1 - beta1 ** this.step;
    const bc2 = 1 - beta2 ** this.step;
    const adamw = pipeline(optimWgsl, "adamw");
    this.entries.forEach(({ param, weightDecay: wd }, k) => {
      if (!param.grad || param.size === 0) return;
      dispatch(
        adamw,
        [param.buffer, param.grad.buffer, this.m[k].buffer, this.v[k].buffer, this.stats.buffer],
        [param.size, ...[lr, beta1, beta2, eps, wd ?? weightDecay, bc1, bc2].map(f32bits)],
        grid(Math.ceil(param.size / 256)),
      );
    });
  }

  dispose(): void {
    for (const t of [...this.m, ...this.v, this.#partials, this.stats]) t.dispose();
  }
}
