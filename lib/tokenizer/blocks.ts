// VQGAN's convolutional building blocks as VAR writes them (models/basic_vae.py), with its
// parameter names: Conv2d, GroupNorm (Normalize), ResnetBlock, AttnBlock, Downsample2x,
// Upsample2x. Tensors are NCHW.
import { conv2d, type Padding } from "../tensor/conv2d.ts";
import { groupCount, groupNorm } from "../tensor/group_norm.ts";
import { upsampleNearest2x } from "../tensor/resize.ts";
import { matmul } from "../tensor/matmul.ts";
import { softmax } from "../tensor/nn_ops.ts";
import { add, scale, slice } from "../tensor/ops.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { type Init, Module } from "../nn/module.ts";

/** nn.Conv2d: weight [out, in, k, k] and bias ~ U(±1/√(in·k²)). */
export class Conv2d extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;
  constructor(
    init: Init,
    cin: number,
    cout: number,
    readonly k: number,
    readonly stride = 1,
    readonly padding: Padding = Math.floor(k / 2),
  ) {
    super();
    const bound = 1 / Math.sqrt(cin * k * k);
    this.weight = this.param("weight", init.uniform([cout, cin, k, k], bound));
    this.bias = this.param("bias", init.uniform([cout], bound));
  }
  forward(x: Tensor): Tensor {
    return conv2d(x, this.weight, this.bias, { stride: this.stride, padding: this.padding });
  }
}

/**
 * VAR's Normalize: GroupNorm(32 groups, or the largest divisor below 32; eps 1e-6; affine).
 * `maxGroups` replaces the 32 (the config's normGroups).
 */
export class GroupNorm extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;
  readonly groups: number;
  constructor(init: Init, channels: number, maxGroups = 32) {
    super();
    this.groups = groupCount(channels, maxGroups);
    this.weight = this.param("weight", init.constant([channels], 1));
    this.bias = this.param("bias", init.constant([channels], 0));
  }
  /** GroupNorm, or SiLU(GroupNorm) fused in one op when `silu` (VQGAN's norm → nonlinearity). */
  forward(x: Tensor, silu = false): Tensor {
    return groupNorm(x, this.weight, this.bias, this.groups, { silu });
  }
}

export class ResnetBlock extends Module {
  readonly norm1: GroupNorm;
  readonly conv1: Conv2d;
  readonly norm2: GroupNorm;
  readonly conv2: Conv2d;
  readonly ninShortcut?: Conv2d;
  constructor(init: Init, cin: number, cout: number, maxGroups = 32) {
    super();
    this.norm1 = this.child("norm1", new GroupNorm(init, cin, maxGroups));
    this.conv1 = this.child("conv1", new Conv2d(init, cin, cout, 3));
    this.norm2 = this.child("norm2", new GroupNorm(init, cout, maxGroups));
    this.conv2 = this.child("conv2", new Conv2d(init, cout, cout, 3));
    if (cin !== cout) this.ninShortcut = this.child("nin_shortcut", new Conv2d(init, cin, cout, 1));
  }
  forward(x: Tensor): Tensor {
    const h = this.conv2.forward(
      this.norm2.forward(this.conv1.forward(this.norm1.forward(x, true)), true),
    );
    return add(this.ninShortcut ? this.ninShortcut.forward(x) : x, h);
  }
}

/** Single-head self-attention over the H·W positions, with a fused 1×1 qkv conv (VAR's). */
export class AttnBlock extends Module {
  readonly norm: GroupNorm;
  readonly qkv: Conv2d;
  readonly projOut: Conv2d;
  constructor(init: Init, readonly channels: number, maxGroups = 32) {
    super();
    this.norm = this.child("norm", new GroupNorm(init, channels, maxGroups));
    this.qkv = this.child("qkv", new Conv2d(init, channels, 3 * channels, 1));
    this.projOut = this.child("proj_out", new Conv2d(init, channels, channels, 1));
  }
  forward(x: Tensor): Tensor {
    const [B, C, H, W] = x.shape;
    const qkv = this.qkv.forward(this.norm.forward(x)).reshape([B, 3 * C, H * W]);
    const q = slice(qkv, 1, 0, C); // [B, C, HW]
    const k = slice(qkv, 1, C, 2 * C);
    const v = slice(qkv, 1, 2 * C, 3 * C);
    // w[b, i, j] = q_i · k_j / √C over positions; h = v · wᵀ.
    const w = softmax(scale(matmul(q, k, { transA: true }), C ** -0.5));
    const h = matmul(v, w, { transB: true }).reshape([B, C, H, W]);
    return add(x, this.projOut.forward(h));
  }
}

/** VQGAN's downsample: pad (0, 1, 0, 1) with zeros, then a 3×3 conv of stride 2. */
export class Downsample2x extends Module {
  readonly conv: Conv2d;
  constructor(init: Init, channels: number) {
    super();
    this.conv = this.child("conv", new Conv2d(init, channels, channels, 3, 2, [0, 1, 0, 1]));
  }
  forward(x: Tensor): Tensor {
    return this.conv.forward(x);
  }
}

/** Nearest ×2, then a 3×3 conv. */
export class Upsample2x extends Module {
  readonly conv: Conv2d;
  constructor(init: Init, channels: number) {
    super();
    this.conv = this.child("conv", new Conv2d(init, channels, channels, 3));
  }
  forward(x: Tensor): Tensor {
    return this.conv.forward(upsampleNearest2x(x));
  }
}
