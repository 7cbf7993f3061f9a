// VMambAR (DESIGN §4), in the spec's order: the text encoder, the image inputs, the backbone of
// Mamba blocks with one shared GSA block every `gsa_every` blocks (or, for the teacher, LLaMA
// blocks), the head and the loss. The same code runs the whole sequence (training) and one chunk
// of it at a time with carried state (generation: text + scale 1, then each scale).
import { GSA } from "../nn/attention.ts";
import { Embedding, Linear, RMSNorm } from "../nn/layers.ts";
import {
  constantTensors,
  fusedPass,
  Mamba,
  type MambaCache,
  type MambaConstants,
  stepPass,
} from "../nn/mamba.ts";
import { Init, Module } from "../nn/module.ts";
import {
  attendCached,
  type AttentionMask,
  blockCausalMask,
  KVCache,
  rope2dTable,
} from "../tensor/attention.ts";
import {
  type GsaPacked,
  type GsaSizes,
  gsaStepIn,
  gsaStepOut,
  gsaStepSupported,
  packGsaWeights,
} from "../tensor/gsa_step.ts";
import { addRmsNorm, NORM_EPS, softmaxCrossEntropy } from "../tensor/nn_ops.ts";
import { add, concat, copy, scale, slice, zeros } from "../tensor/ops.ts";
import { keep, type Tensor, tensor } from "../tensor/tensor.ts";
import { PAD } from "../data/text.ts";
import { ShapeError } from "../errors.ts";
import { arScales, gsaCalls, imageTokens, type ModelConfig } from "./config.ts";
import { TextEncoder, TransformerBlock } from "./text_encoder.ts";

/** One hybrid block: h + Mamba_i(RMSNorm_i(u)). */
export class MambaBlock extends Module {
  readonly norm: RMSNorm;
  readonly mamba: Mamba;
  constructor(init: Init, c: ModelConfig) {
    super();
    this.norm = this.child("norm", new RMSNorm(init, c.d));
    this.mamba = this.child(
      "mamba",
      new Mamba(init, { dModel: c.d, dState: c.d_state, dConv: c.d_conv, expand: c.expand }),
    );
  }
}

/** Which text ids are real (not PAD), per batch row: [B][T]. */
export function textValidity(ids: Int32Array, T: number): boolean[][] {
  const B = ids.length / T;
  return Array.from(
    { length: B },
    (_, b) => Array.from(ids.subarray(b * T, (b + 1) * T), (i) => i !== PAD),
  );
}

/**
 * What one forward pass covers: the batch's text, and the positions [start, start + n) of the
 * sequence [text (T) ; image tokens (L)]. Owns the mask tables (dispose() frees them).
 */
export class Sequence {
  readonly valid: boolean[][];
  readonly mask: AttentionMask;
  readonly B: number;
  readonly T: number;
  readonly S: number;
  /**
   * Text positions left out before this sequence's T (all PAD in every row: generation trims
   * them, trimmedText), so position p is row p + offset of the model's RoPE table.
   */
  readonly offset: number;
  constructor(readonly cfg: ModelConfig, readonly textIds: Int32Array, T = cfg.text_length) {
    if (!(Number.isInteger(T) && T >= 1 && T <= cfg.text_length)) {
      throw new ShapeError(`Sequence: text length ${T} outside 1..${cfg.text_length}`);
    }
    this.T = T;
    this.offset = cfg.text_length - T;
    this.valid = textValidity(textIds, this.T);
    this.B = this.valid.length;
    this.S = this.T + imageTokens(cfg);
    this.mask = blockCausalMask(cfg.scales, this.valid, arScales(cfg));
  }

  /** Mamba's PAD mask [B, n, 1] for positions [start, start + n); null where none is PAD. */
  padMask(start: number, n: number): Tensor | null {
    if (start >= this.T) return null;
    const out = new Float32Array(this.B * n).fill(1);
    let any = false;
    for (let b = 0; b < this.B; b++) {
      for (let s = start; s < Math.min(this.T, start + n); s++) {
        if (!this.valid[b][s]) (out[b * n + s - start] = 0), (any = true);
      }
    }
    return any ? tensor(out, [this.B, n, 1]) : null;
  }

  dispose(): void {
    this.mask.positions.dispose();
    this.mask.keys.dispose();
  }
}

const disposeConstants = (k: MambaConstants) => constantTensors(k).forEach((t) => t.dispose());

/** Generation's carried state: Mamba conv/SSM states per block, keys and values per attention. */
export class GenerationState {
  readonly mamba: (MambaCache | null)[];
  readonly kv: KVCache[];
  /** The GSA's weights packed for its one-token kernels (made by the first such call). */
  gsaPacked: GsaPacked | null = null;
  constructor(model: VMambAR, batch: number, capacity: number) {
    const c = model.cfg;
    this.mamba = new Array(c.n_layers).fill(null);
    const [heads, width] = c.arch === "hybrid" ? [c.heads, 2 * c.d] : [c.heads, c.d];
    const n = c.arch === "hybrid" ? gsaCalls(c) : c.n_layers;
    this.kv = Array.from({ length: n }, () => new KVCache(batch, capacity, heads, width / heads));
  }
  /**
   * Takes over block i's cache. Its constants (MambaConstants, carried by no-grad passes) are
   * usually the ones the last cache held: those stay, and only different ones replace (and free)
   * them.
   */
  setMamba(i: number, cache: MambaCache): void {
    const old = this.mamba[i];
    const consts = cache.consts;
    if (consts) constantTensors(consts).forEach((t) => keep(t));
    this.mamba[i] = { conv: keep(cache.conv), ssm: keep(cache.ssm), consts };
    old?.conv.dispose();
    old?.ssm.dispose();
    if (old?.consts && old.consts !== consts) disposeConstants(old.consts);
  }
  /**
   * A copy of the carried state at this point (the Mamba states, the KV caches' lengths), for
   * `restore` to go back to: the rows a later pass appends are then written over. The carried
   * constants do not change over the generation: the snapshot neither copies nor owns them.
   */
  snapshot(): GenerationSnapshot {
    const mamba = this.mamba.map((m) => m && { conv: keep(copy(m.conv)), ssm: keep(copy(m.ssm)) });
    return {
      mamba,
      kvLength: this.kv.map((kv) => kv.length),
      dispose: () => mamba.forEach((m) => (m?.conv.dispose(), m?.ssm.dispose())),
    };
  }
  /** Back to a snapshot's state (the snapshot stays valid, for another restore). */
  restore(s: GenerationSnapshot): void {
    s.mamba.forEach((m, i) => {
      const cur = this.mamba[i];
      if (m) this.setMamba(i, { conv: copy(m.conv), ssm: copy(m.ssm), consts: cur?.consts });
      else if (cur) {
        cur.conv.dispose();
        cur.ssm.dispose();
        if (cur.consts) disposeConstants(cur.consts);
        this.mamba[i] = null;
      }
    });
    s.kvLength.forEach((n, j) => (this.kv[j].length = n));
  }
  dispose(): void {
    for (const m of this.mamba) {
      m?.conv.dispose();
      m?.ssm.dispose();
      if (m?.consts) disposeConstants(m.consts);
    }
    for (const kv of this.kv) kv.dispose();
    this.gsaPacked?.shared.dispose();
    this.gsaPacked?.out.forEach((t) => t.dispose());
    this.gsaPacked = null;
  }
}

/** GenerationState.snapshot's copy; dispose it when done. */
export interface GenerationSnapshot {
  readonly mamba: (MambaCache | null)[];
  readonly kvLength: number[];
  dispose(): void;
}

export class VMambAR extends Module {
  readonly text: TextEncoder;
  readonly sos: Tensor;
  readonly wordEmbed: Linear;
  readonly lvlEmbed: Embedding;
  readonly blocks: (MambaBlock | TransformerBlock)[] = [];
  readonly gsa: GSA | null = null;
  readonly gsaOut: Linear[] = [];
  readonly norm: RMSNorm;
  readonly head: Linear;
  /** The code before each token of the autoregressive scales, into the token's input (ar_scales). */
  readonly prevEmbed: Linear | null = null;
  /** 2D RoPE over [text (unrotated) ; scales], for GSA's heads (2d/H) or the teacher's (d/H). */
  readonly #rope: Tensor;
  /** Level (scale index) of every image position, for lvl_embed. */
  readonly #levels: Int32Array;

  constructor(readonly cfg: ModelConfig, seed = 0) {
    super();
    const init = new Init(seed);
    const { d, heads, scales } = cfg;
    const std = Math.sqrt(1 / (3 * d)); // VAR's init_std for sos and lvl_embed
    this.text = this.child(
      "text",
      new TextEncoder(init, d, heads, cfg.text_layers, cfg.text_length),
    );
    this.sos = this.param("sos", init.normal([d], std));
    this.wordEmbed = this.child("word_embed", new Linear(init, cfg.cvae, d, { bias: true }));
    this.lvlEmbed = this.child("lvl_embed", new Embedding(init, scales.length, d, std));
    const blocks = this.child("blocks", new Module());
    for (let i = 0; i < cfg.n_layers; i++) {
      const block = cfg.arch === "hybrid"
        ? new MambaBlock(init, cfg)
        : new TransformerBlock(init, d, heads);
      this.blocks.push(blocks.child(`${i}`, block));
    }
    if (cfg.arch === "hybrid") {
      this.gsa = this.child("gsa", new GSA(init, d, heads));
      const outs = this.child("gsa_out", new Module());
      for (let j = 0; j < gsaCalls(cfg); j++) {
        this.gsaOut.push(outs.child(`${j}`, new Linear(init, d, d)));
      }
    }
    this.norm = this.child("norm", new RMSNorm(init, d));
    // VAR's init_head: a small head, so the first loss is about ln V.
    this.head = this.child(
      "head",
      new Linear(init, d, cfg.vocab, {
        bias: init.constant([cfg.vocab], 0),
        bound: 0.02 / Math.sqrt(d),
      }),
    );
    // Last, so that models without it draw every other weight as before. Zero: a model given
    // ar_scales by `train --init` starts out computing what it did (but for the mask).
    if (arScales(cfg) > 0) {
      this.prevEmbed = this.child("prev_embed", new Linear(init, cfg.cvae, d, { bound: 0 }));
    }
    const width = cfg.arch === "hybrid" ? 2 * d : d;
    this.#rope = keep(rope2dTable(scales, cfg.text_length, width / heads));
    this.#levels = Int32Array.from(scales.flatMap((pn, k) => new Array(pn * pn).fill(k)));
  }

  /** Image positions [from, from + n) of scale order, relative to the first image token. */
  #levelRows(from: number, n: number): Tensor {
    return this.lvlEmbed.forward({ data: this.#levels.subarray(from, from + n), shape: [1, n] });
  }

  /**
   * Image inputs of scales k0.. (DESIGN §4): `sos` for scale 1 when k0 = 0, then word_embed of
   * `features` [B, n, Cvae] (area-resized f_hat of the scales before each token's scale), every
   * row plus lvl_embed of its scale → [B, rows, d]. `prev` (ar_scales): the codes [B, m, Cvae]
   * before the tokens of rows [row, row + m), through prev_embed onto those rows.
   */
  imageInputs(
    k0: number,
    features: Tensor | null,
    B: number,
    prev?: { codes: Tensor; row: number } | null,
  ): Tensor {
    const d = this.cfg.d;
    const parts: Tensor[] = [];
    if (k0 === 0) parts.push(add(zeros([B, 1, d]), this.sos.reshape([1, 1, d])));
    if (features) parts.push(this.wordEmbed.forward(features));
    const x = parts.length === 1 ? parts[0] : concat(parts, 1);
    const from = this.cfg.scales.slice(0, k0).reduce((a, p) => a + p * p, 0);
    const withLevel = add(x, this.#levelRows(from, x.shape[1]));
    if (!prev) return withLevel;
    if (!this.prevEmbed) {
      throw new ShapeError("imageInputs: previous codes for a model without ar_scales");
    }
    const n = withLevel.shape[1], m = prev.codes.shape[1], { row } = prev;
    if (prev.codes.shape[0] !== B || row < 0 || row + m > n) {
      throw new ShapeError(
        `imageInputs: previous codes [${prev.codes.shape}] at row ${row} of ${n}`,
      );
    }
    const e = this.prevEmbed.forward(prev.codes);
    if (m === n) return add(withLevel, e);
    const pieces = [add(slice(withLevel, 1, row, row + m), e)];
    if (row > 0) pieces.unshift(slice(withLevel, 1, 0, row));
    if (row + m < n) pieces.push(slice(withLevel, 1, row + m, n));
    return concat(pieces, 1);
  }

  /**
   * The backbone over positions [start, start + n) of the sequence: x [B, n, d] (x0 for GSA).
   * With `state`, earlier positions come from its carried Mamba states and KV caches.
   */
  backbone(x: Tensor, seq: Sequence, start: number, state?: GenerationState): Tensor {
    return this.#backbone(x, seq, start, state, false).h;
  }

  /**
   * The backbone's h and, with `finalNorm` on a pass that fuses (fusedPass: no gradients), the
   * final RMSNorm(h) (else null). There each Mamba block's residual add is one dispatch with the
   * RMSNorm that reads it (the next block's, where no GSA call comes between, or the final one).
   */
  #backbone(
    x: Tensor,
    seq: Sequence,
    start: number,
    state: GenerationState | undefined,
    finalNorm: boolean,
  ): { h: Tensor; normed: Tensor | null } {
    const n = x.shape[1];
    const pos = { table: this.#rope, start: start + seq.offset };
    if (this.cfg.arch === "transformer") {
      let h = x;
      this.blocks.forEach((b, i) => {
        h = (b as TransformerBlock).forward(h, seq.mask, pos, state?.kv[i]);
      });
      return { h, normed: null };
    }
    const padMask = seq.padMask(start, n) ?? undefined;
    const fuse = fusedPass();
    const gsaAt = (i: number) => i > 0 && i % this.cfg.gsa_every === 0;
    let h = x, j = 0;
    // RMSNorm(h) by the previous block's fused add, for this block (or the final norm).
    let normed: Tensor | null = null;
    // One position per row with carried state (generation's token-by-token scales): the GSA
    // calls as three kernels around the attention.
    const gsaStep = n === 1 && !padMask && state !== undefined && stepPass() &&
      gsaStepSupported(this.#gsaSizes);
    this.blocks.forEach((b, i) => {
      let u = h;
      if (gsaAt(i)) {
        u = gsaStep
          ? this.#gsaStep(h, x, seq, start, state!, j)
          : add(h, this.gsaOut[j].forward(this.gsa!.forward(h, x, seq.mask, pos, state?.kv[j])));
        j++;
      }
      const block = b as MambaBlock;
      const carried = state?.mamba[i] ?? undefined;
      if (!padMask && block.mamba.canStep(x, carried)) {
        // One position per row (generation's token-by-token scales): the whole block, its
        // RMSNorm and residual add included, in two dispatches.
        const m = block.mamba.step(u, h, block.norm.weight, carried!);
        state!.setMamba(i, m.cache);
        h = m.h;
        normed = null;
        return;
      }
      const m = block.mamba.forward(
        normed ?? block.norm.forward(u),
        padMask,
        state?.mamba[i] ?? undefined,
      );
      if (state) state.setMamba(i, m.cache);
      const next = i + 1 < this.blocks.length
        ? (gsaAt(i + 1) ? null : (this.blocks[i + 1] as MambaBlock).norm)
        : (finalNorm ? this.norm : null);
      if (fuse && next) {
        const r = addRmsNorm(h, m.y, next.weight);
        h = r.sum;
        normed = r.y;
      } else {
        h = add(h, m.y);
        normed = null;
      }
    });
    return { h, normed };
  }

  get #gsaSizes(): GsaSizes {
    const d = this.cfg.d, H = this.cfg.heads;
    return { d, H, dh: (2 * d) / H, F: this.gsa!.mlp.upProj.weight.shape[0] };
  }

  /** h + gsa_out_j(GSA(h, x0)) for one position per row, by the GSA's one-token kernels. */
  #gsaStep(h: Tensor, x0: Tensor, seq: Sequence, start: number, state: GenerationState, j: number) {
    const s = this.#gsaSizes, g = this.gsa!;
    if (!state.gsaPacked) {
      const p = packGsaWeights({
        normIn: g.normIn.weight,
        q: g.attn.qProj.weight,
        k: g.attn.kProj.weight,
        v: g.attn.vProj.weight,
        o: g.attn.oProj.weight,
        normMlp: g.normMlp.weight,
        gate: g.mlp.gateProj.weight,
        up: g.mlp.upProj.weight,
        down: g.mlp.downProj.weight,
        outs: this.gsaOut.map((l) => l.weight),
      }, s);
      state.gsaPacked = { shared: keep(p.shared), out: p.out.map((t) => keep(t)) };
    }
    const packed = state.gsaPacked, kv = state.kv[j];
    const q = gsaStepIn(h, x0, packed, s, this.#rope, start + seq.offset, kv, NORM_EPS);
    return gsaStepOut(attendCached(q, kv, seq.mask), h, packed, j, s, NORM_EPS);
  }

  /** head(RMSNorm(h)) → logits [B, n, V]. */
  logits(h: Tensor): Tensor {
    return this.head.forward(this.norm.forward(h));
  }

  /**
   * logits(backbone(x, seq, start, state)) at the pass's positions [rows[0], rows[1]) (all of
   * them by default), the last block's add fused with the final RMSNorm where the pass fuses.
   */
  backboneLogits(
    x: Tensor,
    seq: Sequence,
    start: number,
    state?: GenerationState,
    rows?: [number, number],
  ): Tensor {
    const { h, normed } = this.#backbone(x, seq, start, state, true);
    const part = (t: Tensor) => rows ? slice(t, 1, rows[0], rows[1]) : t;
    return normed ? this.head.forward(part(normed)) : this.logits(part(h));
  }

  /**
   * The whole sequence at once (training): text ids [B·T] and the teacher-forcing features of
   * scales 2..K [B, L − 1, Cvae] (null when K = 1) → logits [B, L, V] at the image positions.
   * With ar_scales, `prev` holds the codes before the autoregressive scales' tokens
   * (previousCodes in inputs.ts), [B, n_ar, Cvae].
   */
  forward(seq: Sequence, features: Tensor | null, prev: Tensor | null = null): Tensor {
    const { B, T } = seq;
    if (!prev !== !this.prevEmbed) {
      throw new ShapeError(
        `VMambAR.forward: ar_scales ${arScales(this.cfg)} but ${prev ? "" : "no "}previous codes`,
      );
    }
    const text = this.text.forward(seq.textIds, seq.valid);
    const image = this.imageInputs(0, features, B, prev && { codes: prev, row: 1 });
    const x = concat([text, image], 1);
    return this.backboneLogits(x, seq, 0, undefined, [T, seq.S]);
  }

  /** Mean cross-entropy of logits [B, L, V] against the indices [B·L] (DESIGN §4's loss). */
  static loss(logits: Tensor, indices: Int32Array): Tensor {
    const [B, L, V] = logits.shape;
    return softmaxCrossEntropy(logits.reshape([B * L, V]), { data: indices, shape: [B * L] });
  }

  /**
   * The cross-entropy with each scale's tokens weighted: Σ_k c_k·CE_k over the scales' mean losses
   * CE_k, c_k = w_k·n_k / Σ_j w_j·n_j (n_k = pn_k² tokens; the last weight repeats). Equal weights
   * give `loss`; a weight of 0 leaves its scale out.
   */
  static scaleWeightedLoss(
    logits: Tensor,
    indices: Int32Array,
    scales: readonly number[],
    weights: readonly number[],
  ): Tensor {
    const [B, L, V] = logits.shape;
    const n = scales.map((pn) => pn * pn);
    const w = scales.map((_, k) => weights[Math.min(k, weights.length - 1)]);
    const total = n.reduce((a, nk, k) => a + w[k] * nk, 0);
    if (n.reduce((a, b) => a + b, 0) !== L || !(total > 0) || w.some((x) => !(x >= 0))) {
      throw new ShapeError(
        `scaleWeightedLoss: weights [${weights}] over scales [${scales}] for ${L} tokens`,
      );
    }
    let loss: Tensor | null = null;
    let start = 0;
    n.forEach((nk, k) => {
      if (w[k] > 0) {
        const ids = new Int32Array(B * nk);
        for (let b = 0; b < B; b++) {
          ids.set(indices.subarray(b * L + start, b * L + start + nk), b * nk);
        }
        const rows = slice(logits, 1, start, start + nk).reshape([B * nk, V]);
        const term = scale(
          softmaxCrossEntropy(rows, { data: ids, shape: [B * nk] }),
          (w[k] * nk) / total,
        );
        loss = loss ? add(loss, term) : term;
      }
      start += nk;
    });
    return loss!;
  }

  /** Parameters, excluding nothing (the count `info` and the presets quote). */
  parameterCount(): number {
    return this.parameters().reduce((a, p) => a + p.size, 0);
  }

  override dispose(): void {
    super.dispose();
    this.#rope.dispose();
  }
}
