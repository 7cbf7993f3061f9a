// AdamW with decoupled weight decay and global gradient-norm clipping, all on the GPU: the clip
// scale is computed into a buffer that the update reads, so a step needs no readback.
import { ShapeError } from "../errors.ts";
import { dispatch, f32bits, generated, gpu, grid, pipeline } from "../gpu/mod.ts";
import optimWgsl from "../../kernels/optim.wgsl" with { type: "text" };
import { adamwMultiWgsl, emaMultiWgsl, sumSquaresMultiWgsl } from "../../kernels/optim.ts";
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
  /**
   * Most tensors one dispatch updates (default: as many as the device's storage-buffer limit
   * allows, up to 16; 1 on a device with WebGPU's default limits).
   */
  tensorsPerDispatch?: number;
}

export interface ParamGroupEntry {
  param: Tensor;
  /** Overrides the optimizer's weight decay (e.g. 0 for norms, biases and embeddings). */
  weightDecay?: number;
}

const MAX_PARTIALS_PER_TENSOR = 64;

/** Consecutive runs of at most `k` items. */
function chunks<T>(items: T[], k: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += k) out.push(items.slice(i, i + k));
  return out;
}

export class AdamW {
  readonly entries: ParamGroupEntry[];
  readonly m: Tensor[];
  readonly v: Tensor[];
  opts: Required<Omit<AdamWOptions, "tensorsPerDispatch">>;
  step = 0;
  /** [global grad norm, clip scale] of the last step, on the GPU (read it only when logging). */
  readonly stats: Tensor;
  #partials: Tensor;
  /** Tensors per dispatch of the sum of squares and of the update. */
  #kSquares: number;
  #kAdam: number;

  constructor(params: (Tensor | ParamGroupEntry)[], opts: AdamWOptions = {}) {
    this.entries = params.map((p) => (p instanceof Tensor ? { param: p } : p));
    for (const { param } of this.entries) {
      if (param.dtype !== "f32" || !param.requiresGrad) {
        throw new ShapeError(`AdamW: parameters must be f32 and require grad (${param})`);
      }
    }
    const { tensorsPerDispatch, ...rest } = opts;
    this.opts = {
      lr: 1e-3,
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
      weightDecay: 0.01,
      maxGradNorm: 0,
      ...rest,
    };
    // One binding is the partials (or the clip scale); the update binds 4 buffers per tensor.
    const buffers = gpu().limits.maxStorageBuffersPerShaderStage;
    const most = Math.max(1, Math.min(16, tensorsPerDispatch ?? 16));
    this.#kSquares = Math.max(1, Math.min(most, buffers - 1));
    this.#kAdam = Math.max(1, Math.min(most, Math.floor((buffers - 1) / 4)));
    this.m = this.entries.map(({ param }) => keep(zeros(param.shape)));
    this.v = this.entries.map(({ param }) => keep(zeros(param.shape)));
    const total = this.entries.reduce((a, { param }) => a + partialCount(param.size), 0);
    this.#partials = keep(zeros([Math.max(1, total)]));
    this.stats = keep(fill([2], 1));
  }

  /** The entries that have a gradient this step, with their moments. */
  #live(): { param: Tensor; grad: Tensor; m: Tensor; v: Tensor; wd: number }[] {
    const live = [];
    for (let k = 0; k < this.entries.length; k++) {
      const { param, weightDecay } = this.entries[k];
      if (!param.grad || param.size === 0) continue;
      const wd = weightDecay ?? this.opts.weightDecay;
      live.push({ param, grad: param.grad, m: this.m[k], v: this.v[k], wd });
    }
    return live;
  }

  /** Computes the global gradient norm and clip scale into `stats` (no readback). */
  #clip(live: { grad: Tensor }[]): void {
    let offset = 0;
    for (const group of chunks(live, this.#kSquares)) {
      const code = generated(
        `sum-squares:${group.length}`,
        () => sumSquaresMultiWgsl(group.length),
      );
      const uniforms: number[] = [];
      let workgroups = 0;
      for (const { grad } of group) {
        workgroups += partialCount(grad.size);
        uniforms.push(grad.size, workgroups);
      }
      uniforms.push(offset);
      dispatch(
        pipeline(code),
        [...group.map(({ grad }) => grad.buffer), this.#partials.buffer],
        uniforms,
        [workgroups],
      );
      offset += workgroups;
    }
    dispatch(
      pipeline(optimWgsl, "clip_scale"),
      [this.#partials.buffer, this.stats.buffer],
      [offset, f32bits(this.opts.maxGradNorm)],
      [1],
    );
  }

  /** One update of every parameter that has a gradient; `lr` overrides the base rate (schedules). */
  update(lr = this.opts.lr): void {
    this.step++;
    const live = this.#live();
    this.#clip(live);
    const { beta1, beta2, eps } = this.opts;
    const bc1 = 1 - beta1 ** this.step;
    const bc2 = 1 - beta2 ** this.step;
    for (const group of chunks(live, this.#kAdam)) {
      const code = generated(`adamw:${group.length}`, () => adamwMultiWgsl(group.length));
      const uniforms: number[] = [];
      let end = 0;
      for (const { param, wd } of group) {
        end += param.size;
        uniforms.push(end, f32bits(wd));
      }
      uniforms.push(...[lr, beta1, beta2, eps, bc1, bc2].map(f32bits));
      dispatch(
        pipeline(code),
        [
          ...group.flatMap((e) => [e.param.buffer, e.grad.buffer, e.m.buffer, e.v.buffer]),
          this.stats.buffer,
        ],
        uniforms,
        grid(Math.ceil(end / 256)),
      );
    }
  }

  dispose(): void {
    for (const t of [...this.m, ...this.v, this.#partials, this.stats]) t.dispose();
  }
}

/** Workgroups (so partial sums) given to one tensor's sum of squares. */
function partialCount(size: number): number {
  return Math.max(1, Math.min(MAX_PARTIALS_PER_TENSOR, Math.ceil(size / 256)));
}

/**
 * ema ← ema + (1 − decay)·(param − ema) for each pair (the weights' moving average), up to 16
 * tensors a dispatch.
 */
export function emaUpdate(ema: Tensor[], params: Tensor[], decay: number): void {
  const k = Math.max(1, Math.min(16, Math.floor(gpu().limits.maxStorageBuffersPerShaderStage / 2)));
  const pairs = ema.map((e, i) => ({ e, p: params[i] })).filter(({ e }) => e.size > 0);
  for (const group of chunks(pairs, k)) {
    const code = generated(`ema:${group.length}`, () => emaMultiWgsl(group.length));
    const uniforms: number[] = [];
    let end = 0;
    for (const { e, p } of group) {
      if (e.shape.join() !== p.shape.join()) {
        throw new ShapeError(`emaUpdate: ${e} and ${p} differ in shape`);
      }
      end += e.size;
      uniforms.push(end);
    }
    uniforms.push(f32bits(1 - decay));
    dispatch(
      pipeline(code),
      group.flatMap(({ e, p }) => [e.buffer, p.buffer]),
      uniforms,
      grid(Math.ceil(end / 256)),
    );
  }
}
