// The byte-level text encoder of DESIGN §4 and the LLaMA-style block it is made of (pre-norm
// attention with RoPE, then a SwiGLU MLP), which also makes up the `arch = "transformer"` teacher.
import { Attention, type RopeAt, SwiGLU } from "../nn/attention.ts";
import { Embedding, RMSNorm } from "../nn/layers.ts";
import { type Init, Module } from "../nn/module.ts";
import type { AttentionMask, KVCache } from "../tensor/attention.ts";
import { paddingMask, rope1dTable } from "../tensor/attention.ts";
import { add } from "../tensor/ops.ts";
import { keep, type Tensor } from "../tensor/tensor.ts";
import { ShapeError } from "../errors.ts";
import { TEXT_VOCAB } from "../data/text.ts";

/** x + attn(attn_norm(x)), then + mlp(mlp_norm(x)) (LlamaGen's block). */
export class TransformerBlock extends Module {
  readonly attnNorm: RMSNorm;
  readonly attn: Attention;
  readonly mlpNorm: RMSNorm;
  readonly mlp: SwiGLU;
  constructor(init: Init, d: number, heads: number) {
    super();
    this.attnNorm = this.child("attn_norm", new RMSNorm(init, d));
    this.attn = this.child("attn", new Attention(init, d, heads));
    this.mlpNorm = this.child("mlp_norm", new RMSNorm(init, d));
    this.mlp = this.child("mlp", new SwiGLU(init, d));
  }
  forward(x: Tensor, mask: AttentionMask, pos: RopeAt, cache?: KVCache): Tensor {
    const h = add(x, this.attn.forward(this.attnNorm.forward(x), mask, pos, cache));
    return add(h, this.mlp.forward(this.mlpNorm.forward(h)));
  }
}

/**
 * `text.embed` [259, d] → `text.layers.{i}` (bidirectional over non-PAD ids, 1D RoPE over text
 * positions) → `text.norm`. Its T output vectors are the prefix of the backbone's sequence.
 */
export class TextEncoder extends Module {
  readonly embed: Embedding;
  readonly layers: TransformerBlock[] = [];
  readonly norm: RMSNorm;
  readonly #rope: Tensor;

  constructor(init: Init, d: number, heads: number, nLayers: number, readonly T: number) {
    super();
    this.embed = this.child("embed", new Embedding(init, TEXT_VOCAB, d, Math.sqrt(1 / (3 * d))));
    const layers = this.child("layers", new Module());
    for (let i = 0; i < nLayers; i++) {
      this.layers.push(layers.child(`${i}`, new TransformerBlock(init, d, heads)));
    }
    this.norm = this.child("norm", new RMSNorm(init, d));
    this.#rope = keep(rope1dTable(T, d / heads));
  }

  /**
   * ids [B·T] (row-major, as §4 lays them out), valid[b][t] false at PAD → [B, T, d]. T may be
   * less than the model's (leading PADs trimmed: RoPE is relative, and PADs are masked).
   */
  forward(ids: Int32Array, valid: boolean[][]): Tensor {
    const B = valid.length, T = valid[0]?.length ?? this.T;
    if (T > this.T || ids.length !== B * T) {
      throw new ShapeError(
        `TextEncoder: ${ids.length} ids for ${B} rows of ${T} (at most ${this.T})`,
      );
    }
    const mask = paddingMask(valid);
    let x = this.embed.forward({ data: ids, shape: [B, T] });
    for (const layer of this.layers) x = layer.forward(x, mask, { table: this.#rope });
    return this.norm.forward(x);
  }

  override dispose(): void {
    super.dispose();
    this.#rope.dispose();
  }
}
