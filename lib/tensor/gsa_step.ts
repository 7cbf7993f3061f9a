// Generation's one-token call of the shared attention block (kernels/gsa_step.ts): RMSNorm, q/k/v,
// RoPE and the KV-cache append in one kernel; the cached attention; W_o, RMSNorm and SwiGLU's
// gate and up in one; its down projection folded with the call site's gsa_out and the residual
// add in one. The training path (lib/nn/attention.ts) takes about twenty dispatches. No backward.
import { ShapeError } from "../errors.ts";
import { dispatch, f32bits, generated, pipeline } from "../gpu/mod.ts";
import { STEP_TILE } from "../../kernels/mamba_step.ts";
import { GSA_STEP_MAX_D, gsaStepWgsl } from "../../kernels/gsa_step.ts";
import type { KVCache } from "./attention.ts";
import { matmul } from "./matmul.ts";
import { concat, transpose } from "./ops.ts";
import { isGradEnabled, Tensor } from "./tensor.ts";

/** The block's sizes: d (its input is 2d wide), heads H of Dh = 2d/H, SwiGLU hidden F. */
export interface GsaSizes {
  d: number;
  H: number;
  dh: number;
  F: number;
}

export function gsaStepSupported(s: GsaSizes): boolean {
  return s.d <= GSA_STEP_MAX_D && s.F <= 4 * GSA_STEP_MAX_D && s.H * s.dh === 2 * s.d &&
    s.dh % 2 === 0;
}

const PARTS = ["nin", "qkv", "o", "nmlp", "gu"] as const;
type Part = typeof PARTS[number];

function layout(s: GsaSizes): { offsets: Record<Part, number>; size: number } {
  const W = 2 * s.d;
  const sizes: Record<Part, number> = {
    nin: W,
    qkv: W * 3 * W,
    o: W * s.d,
    nmlp: s.d,
    gu: s.d * 2 * s.F,
  };
  const offsets = {} as Record<Part, number>;
  let at = 0;
  for (const k of PARTS) (offsets[k] = at), (at += sizes[k]);
  return { offsets, size: at };
}

/** The block's weights (each Linear's [out, in]) and each call site's gsa_out weight [d, d]. */
export interface GsaWeights {
  normIn: Tensor;
  q: Tensor;
  k: Tensor;
  v: Tensor;
  o: Tensor;
  normMlp: Tensor;
  gate: Tensor;
  up: Tensor;
  down: Tensor;
  outs: Tensor[];
}

/** The packed weights (`shared`) and each call site's gsa_out·W_down, transposed [F, d]. */
export interface GsaPacked {
  shared: Tensor;
  out: Tensor[];
}

/** Packs and folds the weights (a few dispatches; once per generation). */
export function packGsaWeights(w: GsaWeights, s: GsaSizes): GsaPacked {
  const flat = (t: Tensor) => t.reshape([t.size]);
  const parts = [
    w.normIn,
    transpose(concat([w.q, w.k, w.v], 0), 0, 1),
    transpose(w.o, 0, 1),
    w.normMlp,
    transpose(concat([w.gate, w.up], 0), 0, 1),
  ];
  const { offsets, size } = layout(s);
  const shared = concat(parts.map(flat), 0);
  if (shared.size !== size || offsets.gu + parts[4].size !== size) {
    throw new ShapeError(`packGsaWeights: the weights do not fit d ${s.d}, F ${s.F}`);
  }
  // (gsa_out·W_down)ᵀ = W_downᵀ·gsa_outᵀ [F, d].
  const out = w.outs.map((g) => matmul(transpose(w.down, 0, 1), transpose(g, 0, 1)));
  return { shared, out };
}

function uniforms(s: GsaSizes, R: number, eps: number, at = { pos: 0, cap: 0, rpos: 0 }) {
  const o = layout(s).offsets;
  const { pos, cap, rpos } = at;
  return [R, s.d, s.H, s.dh, s.F, pos, cap, f32bits(eps), rpos, o.nin, o.qkv, o.o, o.nmlp, o.gu];
}

function check(op: string, ok: boolean, what: () => string): void {
  if (!ok) throw new ShapeError(`${op}: ${what()}`);
  if (isGradEnabled()) throw new ShapeError(`${op} has no backward; run it without gradients`);
}

/**
 * h, x0 [R, 1, d] → q [R, 1, H, Dh], turned by RoPE at table row `pos`, and k, v written into
 * the cache at its next row (the cache's length grows by one). `rope` is the [S, Dh/2, 2] table.
 */
export function gsaStepIn(
  h: Tensor,
  x0: Tensor,
  packed: GsaPacked,
  s: GsaSizes,
  rope: Tensor,
  pos: number,
  cache: KVCache,
  eps: number,
): Tensor {
  const R = h.shape[0];
  const [B, cap, H, dh] = cache.k.shape;
  check(
    "gsaStepIn",
    gsaStepSupported(s) && h.shape.join() === `${R},1,${s.d}` &&
      x0.shape.join() === h.shape.join() &&
      B === R && H === s.H && dh === s.dh && cache.length < cap && rope.shape.join() ===
        `${rope.shape[0]},${dh / 2},2` &&
      pos >= 0 && pos < rope.shape[0] &&
      packed.shared.size === layout(s).size,
    () =>
      `h [${h.shape}], x0 [${x0.shape}], cache [${cache.k.shape}] at ${cache.length}, rope ` +
      `[${rope.shape}] at ${pos}, for d ${s.d}, ${s.H} heads of ${s.dh}`,
  );
  const q = new Tensor([R, 1, s.H, s.dh], "f32", undefined, "gsaStepIn");
  if (R > 0) {
    dispatch(
      pipeline(generated("gsaStep", gsaStepWgsl), "gsa_in"),
      [
        h.buffer,
        x0.buffer,
        packed.shared.buffer,
        rope.buffer,
        q.buffer,
        cache.k.buffer,
        cache.v
          .buffer,
      ],
      uniforms(s, R, eps, { pos: cache.length, cap, rpos: pos }),
      [Math.ceil((6 * s.d) / STEP_TILE), R, 1],
    );
  }
  cache.length += 1;
  return q;
}

/**
 * The attention's output a [R, 1, H, Dh] → h + gsa_out_j(SwiGLU(RMSNorm(W_o·a))) [R, 1, d] for
 * call site j (packed.out[j]), with h [R, 1, d] the residual.
 */
export function gsaStepOut(
  a: Tensor,
  h: Tensor,
  packed: GsaPacked,
  j: number,
  s: GsaSizes,
  eps: number,
): Tensor {
  const R = h.shape[0];
  check(
    "gsaStepOut",
    gsaStepSupported(s) && a.shape.join() === `${R},1,${s.H},${s.dh}` &&
      h.shape.join() === `${R},1,${s.d}` && j >= 0 && j < packed.out.length,
    () => `a [${a.shape}], h [${h.shape}], call site ${j} of ${packed.out.length}, d ${s.d}`,
  );
  const uni = uniforms(s, R, eps);
  const code = generated("gsaStep", gsaStepWgsl);
  const m = new Tensor([R, 1, s.F], "f32", undefined, "gsaStepOut");
  const u = new Tensor([R, 1, s.d], "f32", undefined, "gsaStepOut");
  if (R > 0) {
    dispatch(
      pipeline(code, "gsa_mid"),
      [a.buffer, packed.shared.buffer, m.buffer],
      uni,
      [Math.ceil(s.F / STEP_TILE), R, 1],
    );
    dispatch(
      pipeline(code, "gsa_out"),
      [m.buffer, packed.out[j].buffer, h.buffer, u.buffer],
      uni,
      [Math.ceil(s.d / STEP_TILE), R, 1],
    );
  }
  m.dispose();
  return u;
}
