// Basic layers with PyTorch's parameter names, shapes and default initialisation.
import { linear } from "../tensor/matmul.ts";
import { embedding, type HostIds, rmsNorm } from "../tensor/nn_ops.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { type Init, Module } from "./module.ts";

export interface LinearOptions {
  /** true for a default-initialised bias, or the bias tensor itself. */
  bias?: boolean | Tensor;
  /** Bound of the weight's uniform init (default 1/√in). */
  bound?: number;
}

/** nn.Linear: weight [out, in] ~ U(±1/√in) (kaiming_uniform with a = √5), bias likewise. */
export class Linear extends Module {
  readonly weight: Tensor;
  readonly bias?: Tensor;
  constructor(init: Init, inFeatures: number, outFeatures: number, opts: LinearOptions = {}) {
    super();
    const bound = 1 / Math.sqrt(inFeatures);
    this.weight = this.param(
      "weight",
      init.uniform([outFeatures, inFeatures], opts.bound ?? bound),
    );
    if (opts.bias === true) this.bias = this.param("bias", init.uniform([outFeatures], bound));
    else if (opts.bias) this.bias = this.param("bias", opts.bias);
  }
  forward(x: Tensor): Tensor {
    return linear(x, this.weight, this.bias);
  }
}

/** nn.Embedding: weight [V, d] ~ N(0, 1). */
export class Embedding extends Module {
  readonly weight: Tensor;
  constructor(init: Init, vocab: number, dim: number, std = 1) {
    super();
    this.weight = this.param("weight", init.normal([vocab, dim], std));
  }
  forward(ids: Tensor | HostIds): Tensor {
    return embedding(this.weight, ids);
  }
}

/** RMSNorm over the last dim, weight initialised to 1 (DESIGN §4: eps 1e-6). */
export class RMSNorm extends Module {
  readonly weight: Tensor;
  constructor(init: Init, dim: number) {
    super();
    this.weight = this.param("weight", init.constant([dim], 1));
  }
  forward(x: Tensor): Tensor {
    return rmsNorm(x, this.weight);
  }
}
