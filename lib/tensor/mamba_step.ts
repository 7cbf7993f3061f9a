// Generation's one-token Mamba block in two dispatches (kernels/mamba_step.ts): RMSNorm, in_proj,
// the conv step, x_proj, dt_proj, the scan step, the gate, out_proj and the residual add, where
// the training path (lib/nn/mamba.ts) takes about ten. No backward: refused where one would be
// recorded.
import { ShapeError } from "../errors.ts";
import { dispatch, f32bits, generated, pipeline } from "../gpu/mod.ts";
import { mambaStepWgsl, STEP_MAX_WIDTH, STEP_TILE, STEP_WG } from "../../kernels/mamba_step.ts";
import { concat, transpose } from "./ops.ts";
import { isGradEnabled, Tensor } from "./tensor.ts";

/** A Mamba block's sizes: d_model, d_inner, d_conv, d_state, dt_rank. */
export interface StepSizes {
  d: number;
  di: number;
  K: number;
  n: number;
  r: number;
}

/** The packed weights' parts, in order (the projections transposed: [in, out]). */
const PARTS = ["norm", "in", "cw", "cb", "x", "dtw", "dtb", "a", "d", "out"] as const;
type Part = typeof PARTS[number];

function partSizes(s: StepSizes): Record<Part, number> {
  const { d, di, K, n, r } = s;
  return {
    norm: d,
    in: d * 2 * di,
    cw: di * K,
    cb: di,
    x: di * (r + 2 * n),
    dtw: di * r,
    dtb: di,
    a: di * n,
    d: di,
    out: di * d,
  };
}

/** Each part's offset in the packed buffer (floats), and the total. */
export function stepLayout(s: StepSizes): { offsets: Record<Part, number>; size: number } {
  const sizes = partSizes(s);
  const offsets = {} as Record<Part, number>;
  let at = 0;
  for (const k of PARTS) (offsets[k] = at), (at += sizes[k]);
  return { offsets, size: at };
}

/** Whether the step kernels hold a block of these sizes (else the caller takes the long way). */
export function stepSupported(s: StepSizes): boolean {
  return s.d <= STEP_MAX_WIDTH && s.di <= STEP_MAX_WIDTH && s.r + 2 * s.n <= STEP_WG && s.K >= 2;
}

/** A Mamba block's weights for `mambaStep`, in the layout of stepLayout. */
export interface StepWeights {
  norm: Tensor; // RMSNorm weight [d]
  inProj: Tensor; // [2·di, d]
  convW: Tensor; // [di, K]
  convB: Tensor; // [di]
  xProj: Tensor; // [r + 2n, di]
  dtW: Tensor; // [di, r]
  dtB: Tensor; // [di]
  A: Tensor; // −exp(A_log) [di, n]
  D: Tensor; // [di]
  outProj: Tensor; // [d, di]
}

/** Packs a block's weights into one buffer (a few dispatches; once per generation). */
export function packStepWeights(w: StepWeights, s: StepSizes): Tensor {
  const flat = (t: Tensor) => t.reshape([t.size]);
  const parts = [
    w.norm,
    transpose(w.inProj, 0, 1),
    w.convW,
    w.convB,
    transpose(w.xProj, 0, 1),
    w.dtW,
    w.dtB,
    w.A,
    w.D,
    transpose(w.outProj, 0, 1),
  ];
  const sizes = partSizes(s);
  PARTS.forEach((k, i) => {
    if (parts[i].size !== sizes[k] || parts[i].dtype !== "f32") {
      throw new ShapeError(`packStepWeights: ${k} is [${parts[i].shape}] ${parts[i].dtype}`);
    }
  });
  return concat(parts.map(flat), 0);
}

export interface StepResult {
  /** h + Mamba(RMSNorm(u)) [R, 1, d]. */
  h: Tensor;
  /** The next conv state [R, K-1, di] and SSM state [R, di, n]. */
  conv: Tensor;
  ssm: Tensor;
}

/**
 * One position per row through a Mamba block: u [R, 1, d] (the norm's input), h [R, 1, d] (the
 * residual), the packed weights, and the carried conv [R, K-1, di] and SSM [R, di, n] states.
 */
export function mambaStep(
  u: Tensor,
  h: Tensor,
  packed: Tensor,
  s: StepSizes,
  conv: Tensor,
  ssm: Tensor,
  eps: number,
): StepResult {
  const { d, di, K, n, r } = s;
  const R = u.shape[0];
  const same = (t: Tensor, shape: number[]) => t.shape.join() === shape.join() && t.dtype === "f32";
  const { offsets, size } = stepLayout(s);
  if (
    !stepSupported(s) || !same(u, [R, 1, d]) || !same(h, [R, 1, d]) || !same(packed, [size]) ||
    !same(conv, [R, K - 1, di]) || !same(ssm, [R, di, n])
  ) {
    throw new ShapeError(
      `mambaStep: u [${u.shape}], h [${h.shape}], packed [${packed.shape}], conv [${conv.shape}], ` +
        `ssm [${ssm.shape}] for d ${d}, d_inner ${di}, d_conv ${K}, d_state ${n}, dt_rank ${r}`,
    );
  }
  if (isGradEnabled() && [u, h, packed].some((t) => t.requiresGrad)) {
    throw new ShapeError("mambaStep has no backward; run it without gradients");
  }
  const o = offsets;
  const uni = [
    R,
    d,
    di,
    K,
    n,
    r,
    f32bits(eps),
    o.norm,
    o.in,
    o.cw,
    o.cb,
    o.x,
    o.dtw,
    o.dtb,
    o.a,
    o.d,
    o.out,
  ];
  const code = generated("mambaStep", mambaStepWgsl);
  const xs = new Tensor([R, 1, di], "f32", undefined, "mambaStep");
  const z = new Tensor([R, 1, di], "f32", undefined, "mambaStep");
  const nextConv = new Tensor([R, K - 1, di], "f32", undefined, "mambaStep");
  const out = new Tensor([R, 1, d], "f32", undefined, "mambaStep");
  const nextSsm = new Tensor([R, di, n], "f32", undefined, "mambaStep");
  if (R > 0) {
    dispatch(
      pipeline(code, "step_in"),
      [u.buffer, packed.buffer, conv.buffer, xs.buffer, z.buffer, nextConv.buffer],
      uni,
      [Math.ceil((2 * di) / STEP_TILE), R, 1],
    );
    dispatch(
      pipeline(code, "step_out"),
      [xs.buffer, packed.buffer, z.buffer, h.buffer, ssm.buffer, out.buffer, nextSsm.buffer],
      uni,
      [Math.ceil(d / STEP_TILE), R, 1],
    );
  }
  xs.dispose();
  z.dispose();
  return { h: out, conv: nextConv, ssm: nextSsm };
}
