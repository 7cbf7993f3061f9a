// Attention layers (DESIGN §4): multi-head attention with RoPE and the level masks, the SwiGLU
// MLP, and the shared global self-attention block (GSA) that Zamba calls every few Mamba blocks.
import {
  attendCached,
  attention,
  type AttentionMask,
  type KVCache,
  rope,
} from "../tensor/attention.ts";
import { concat, mul, silu } from "../tensor/ops.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { Linear, RMSNorm } from "./layers.ts";
import { type Init, Module } from "./module.ts";

/** Where the rotary table rows for these positions start, and the table itself. */
export interface RopeAt {
  table: Tensor;
  start?: number;
}

/** Multi-head attention: q, k, v Linear din→H·Dh (no bias), RoPE on q and k, o_proj H·Dh→dout. */
export class Attention extends Module {
  readonly qProj: Linear;
  readonly kProj: Linear;
  readonly vProj: Linear;
  readonly oProj: Linear;
  readonly headDim: number;
  constructor(init: Init, din: number, readonly heads: number, dout = din) {
    super();
    if (din % heads !== 0) {
      throw new Error(`Attention: width ${din} does not split into ${heads} heads`);
    }
    this.headDim = din / heads;
    this.qProj = this.child("q_proj", new Linear(init, din, din));
    this.kProj = this.child("k_proj", new Linear(init, din, din));
    this.vProj = this.child("v_proj", new Linear(init, din, din));
    this.oProj = this.child("o_proj", new Linear(init, din, dout));
  }

  /**
   * x [B, S, din] → [B, S, dout]. With `cache`, the new keys and values are appended and the
   * queries attend over everything cached (generation, no gradient).
   */
  forward(x: Tensor, mask: AttentionMask, pos?: RopeAt, cache?: KVCache): Tensor {
    const [B, S] = x.shape;
    const split = (t: Tensor) => t.reshape([B, S, this.heads, this.headDim]);
    let q = split(this.qProj.forward(x));
    let k = split(this.kProj.forward(x));
    const v = split(this.vProj.forward(x));
    if (pos) {
      q = rope(q, pos.table, pos.start ?? 0);
      k = rope(k, pos.table, pos.start ?? 0);
    }
    let o: Tensor;
    if (cache) {
      cache.append(k, v);
      o = attendCached(q, cache, mask);
    } else {
      o = attention(q, k, v, mask);
    }
    return this.oProj.forward(o.reshape([B, S, this.heads * this.headDim]));
  }
}

/** SwiGLU: down(silu(gate(x)) ⊙ up(x)), hidden 4d (DESIGN §4). */
export class SwiGLU extends Module {
  readonly gateProj: Linear;
  readonly upProj: Linear;
  readonly downProj: Linear;
  constructor(init: Init, d: number, hidden = 4 * d) {
    super();
    this.gateProj = this.child("gate_proj", new Linear(init, d, hidden));
    this.upProj = this.child("up_proj", new Linear(init, d, hidden));
    this.downProj = this.child("down_proj", new Linear(init, hidden, d));
  }
  forward(x: Tensor): Tensor {
    return this.downProj.forward(mul(silu(this.gateProj.forward(x)), this.upProj.forward(x)));
  }
}

/**
 * The shared global self-attention block (DESIGN §4, Zamba2's shared layer): over concat(h, x0)
 * [2d], RMSNorm(2d) → attention (q, k, v 2d→2d, H heads, 2D RoPE, o_proj 2d→d) → RMSNorm(d) →
 * SwiGLU (hidden 4d). As in Zamba2 there is no residual inside; each call site adds its own
 * gsa_out projection of the result to the residual stream.
 */
export class GSA extends Module {
  readonly normIn: RMSNorm;
  readonly attn: Attention;
  readonly normMlp: RMSNorm;
  readonly mlp: SwiGLU;
  constructor(init: Init, d: number, heads: number) {
    super();
    this.normIn = this.child("norm_in", new RMSNorm(init, 2 * d));
    this.attn = this.child("attn", new Attention(init, 2 * d, heads, d));
    this.normMlp = this.child("norm_mlp", new RMSNorm(init, d));
    this.mlp = this.child("mlp", new SwiGLU(init, d));
  }

  /** h, x0 [B, S, d] → [B, S, d]. */
  forward(h: Tensor, x0: Tensor, mask: AttentionMask, pos: RopeAt, cache?: KVCache): Tensor {
    const z = this.normIn.forward(concat([h, x0], -1));
    const a = this.attn.forward(z, mask, pos, cache);
    return this.mlp.forward(this.normMlp.forward(a));
  }
}
