// The Mamba-1 block (state-spaces/mamba's `Mamba`, DESIGN §4): names, shapes and initialisation
// as there, d_state 16, d_conv 4, expand 2, dt_rank ⌈d/16⌉. PAD positions (mask 0) have their
// inputs zeroed and Δ = 0, so the conv and SSM states pass through them unchanged.
import { causalConv1d } from "../tensor/conv1d.ts";
import { add, exp, mambaGate, mul, neg, silu, slice, softplus } from "../tensor/ops.ts";
import { linear, matmul } from "../tensor/matmul.ts";
import { selectiveScan } from "../tensor/scan.ts";
import { mambaStep, packStepWeights, type StepSizes, stepSupported } from "../tensor/mamba_step.ts";
import { NORM_EPS } from "../tensor/nn_ops.ts";
import { isGradEnabled, type Tensor } from "../tensor/tensor.ts";
import { Linear } from "./layers.ts";
import { type Init, Module } from "./module.ts";

const UNFUSED = Deno.env.get("VMAMBAR_UNFUSED") === "1";
// VMAMBAR_NO_STEP=1 keeps one-token passes on the ~10-dispatch path of forward (for timing).
const NO_STEP = Deno.env.get("VMAMBAR_NO_STEP") === "1";

/**
 * Whether this pass may use the fused kernels that have no backward: only without gradients, and
 * not under VMAMBAR_UNFUSED=1 (which keeps the training path's ops, to time the difference).
 */
export function fusedPass(): boolean {
  return !isGradEnabled() && !UNFUSED;
}

/**
 * Whether a one-position pass may run its blocks as the one-token kernels (Mamba.step, the GSA's
 * step): as fusedPass, and not under VMAMBAR_NO_STEP=1 (to time the difference).
 */
export function stepPass(): boolean {
  return fusedPass() && !NO_STEP;
}

// Up to this many rows (B·L) a pass without gradients computes Δ, B and C with the folded weights
// of MambaConstants: 3 dispatches in place of 5, for ~7× the arithmetic of that step, which only
// pays where the pass is bound by its dispatches (generation's one-token passes and small scales).
const FOLD_ROWS = 32;

export interface MambaConfig {
  dModel: number;
  dState?: number;
  dConv?: number;
  expand?: number;
  dtMin?: number;
  dtMax?: number;
  dtInitFloor?: number;
}

/** The carried state of generation: the conv's last d_conv-1 inputs and the SSM state. */
export interface MambaCache {
  conv: Tensor; // [B, d_conv - 1, d_inner]
  ssm: Tensor; // [B, d_inner, d_state]
  /**
   * What generation derives from the weights once (made by the first pass without gradients,
   * then passed on): only valid while the weights do not change (one generation). The returned
   * cache holds the same object that came in.
   */
  consts?: MambaConstants;
}

/** Tensors derived from a Mamba block's weights for passes without gradients. */
export interface MambaConstants {
  /** −exp(A_log) [d_inner, d_state]. */
  A: Tensor;
  /** dt_proj.weight · x_proj.weight[:dt_rank] [d_inner, d_inner]: Δ's pre-activation in one matmul. */
  wDelta: Tensor;
  /** x_proj.weight's B and C rows, each [d_state, d_inner]. */
  wB: Tensor;
  wC: Tensor;
  /** The block's weights packed for mambaStep (with its RMSNorm's), made by the first step. */
  packed?: Tensor;
}

/** Every tensor of a MambaConstants, e.g. to keep or dispose them. */
export function constantTensors(k: MambaConstants): Tensor[] {
  return k.packed ? [k.A, k.wDelta, k.wB, k.wC, k.packed] : [k.A, k.wDelta, k.wB, k.wC];
}

export class Mamba extends Module {
  readonly dInner: number;
  readonly dState: number;
  readonly dtRank: number;
  readonly dConv: number;
  readonly inProj: Linear;
  readonly conv1dWeight: Tensor;
  readonly conv1dBias: Tensor;
  readonly xProj: Linear;
  readonly dtProj: Linear;
  readonly ALog: Tensor;
  readonly D: Tensor;
  readonly outProj: Linear;

  constructor(init: Init, cfg: MambaConfig) {
    super();
    const d = cfg.dModel;
    const n = this.dState = cfg.dState ?? 16;
    const k = this.dConv = cfg.dConv ?? 4;
    const di = this.dInner = (cfg.expand ?? 2) * d;
    const r = this.dtRank = Math.ceil(d / 16);
    this.inProj = this.child("in_proj", new Linear(init, d, 2 * di));
    // nn.Conv1d(di, di, k, groups=di): fan_in = k, so U(±1/√k) for weight and bias.
    const conv = this.child("conv1d", new Module());
    this.conv1dWeight = conv.param("weight", init.uniform([di, 1, k], 1 / Math.sqrt(k)));
    this.conv1dBias = conv.param("bias", init.uniform([di], 1 / Math.sqrt(k)));
    this.xProj = this.child("x_proj", new Linear(init, di, r + 2 * n));
    // dt_proj: weight U(±dt_rank^-0.5); bias = softplus⁻¹(dt), dt log-uniform in [dt_min, dt_max].
    const dtMin = cfg.dtMin ?? 1e-3, dtMax = cfg.dtMax ?? 0.1, floor = cfg.dtInitFloor ?? 1e-4;
    const dtBias = init.from([di], () => {
      const logDt = init.rng() * (Math.log(dtMax) - Math.log(dtMin)) + Math.log(dtMin);
      const dt = Math.max(floor, Math.exp(logDt));
      return dt + Math.log(-Math.expm1(-dt));
    });
    this.dtProj = this.child(
      "dt_proj",
      new Linear(init, r, di, { bias: dtBias, bound: r ** -0.5 }),
    );
    this.ALog = this.param("A_log", init.from([di, n], (i) => Math.log((i % n) + 1)));
    this.D = this.param("D", init.constant([di], 1));
    this.outProj = this.child("out_proj", new Linear(init, di, d));
  }

  /** MambaConstants from the current weights (no gradients recorded). */
  #constants(): MambaConstants {
    const r = this.dtRank, n = this.dState, w = this.xProj.weight;
    return {
      A: neg(exp(this.ALog)),
      wDelta: matmul(this.dtProj.weight, slice(w, 0, 0, r)),
      wB: slice(w, 0, r, r + n),
      wC: slice(w, 0, r + n, r + 2 * n),
    };
  }

  /** This block's sizes, as mambaStep takes them. */
  get stepSizes(): StepSizes {
    return {
      d: this.inProj.weight.shape[1],
      di: this.dInner,
      K: this.dConv,
      n: this.dState,
      r: this.dtRank,
    };
  }

  /**
   * Whether `step` can run a pass: without gradients (and not under VMAMBAR_UNFUSED or
   * VMAMBAR_NO_STEP), one position per row, with carried state, and sizes the kernels hold.
   */
  canStep(x: Tensor, cache?: MambaCache): boolean {
    return stepPass() && x.shape.length === 3 && x.shape[1] === 1 &&
      cache !== undefined && stepSupported(this.stepSizes);
  }

  /**
   * h + forward(RMSNorm(u)·norm, cache) for one position per row (canStep), in two dispatches:
   * u, h [B, 1, d] → [B, 1, d] and the next cache. `norm` is the block's RMSNorm weight.
   */
  step(u: Tensor, h: Tensor, norm: Tensor, cache: MambaCache): { h: Tensor; cache: MambaCache } {
    const s = this.stepSizes;
    const k = cache.consts ?? this.#constants();
    k.packed ??= packStepWeights({
      norm,
      inProj: this.inProj.weight,
      convW: this.conv1dWeight.reshape([s.di, s.K]),
      convB: this.conv1dBias,
      xProj: this.xProj.weight,
      dtW: this.dtProj.weight,
      dtB: this.dtProj.bias!,
      A: k.A,
      D: this.D,
      outProj: this.outProj.weight,
    }, s);
    const r = mambaStep(u, h, k.packed, s, cache.conv, cache.ssm, NORM_EPS);
    return { h: r.h, cache: { conv: r.conv, ssm: r.ssm, consts: k } };
  }

  /**
   * x [B, L, d] → [B, L, d]. `mask` [B, L, 1] is 1 on real tokens and 0 on PAD; `cache` carries
   * generation's state in and the returned cache carries it out.
   */
  forward(x: Tensor, mask?: Tensor, cache?: MambaCache): { y: Tensor; cache: MambaCache } {
    const di = this.dInner, n = this.dState, r = this.dtRank;
    // Without gradients (generation) fused kernels do the same arithmetic in fewer dispatches
    // (see fusedPass).
    const noGradient = fusedPass();
    const masked = (t: Tensor) => (mask ? mul(t, mask) : t);
    const xz = this.inProj.forward(masked(x));
    const w = this.conv1dWeight.reshape([di, this.dConv]);
    // xs = xz[..., :di]: read in place by the conv, which also applies silu, when fused.
    const conv = noGradient
      ? causalConv1d(xz, w, this.conv1dBias, cache?.conv, { silu: true, prefix: true })
      : causalConv1d(slice(xz, -1, 0, di), w, this.conv1dBias, cache?.conv);
    const u = masked(noGradient ? conv.y : silu(conv.y));
    // With gradients, always from the weights (carried constants would cut them off the graph).
    const k = noGradient ? cache?.consts ?? this.#constants() : null;
    let delta: Tensor, Bm: Tensor, Cm: Tensor;
    if (k && x.shape[0] * x.shape[1] <= FOLD_ROWS) {
      // Three matmuls in place of x_proj, its three slices and dt_proj.
      delta = masked(softplus(linear(u, k.wDelta, this.dtProj.bias)));
      Bm = linear(u, k.wB);
      Cm = linear(u, k.wC);
    } else {
      const xDbl = this.xProj.forward(u);
      const dt = slice(xDbl, -1, 0, r);
      Bm = slice(xDbl, -1, r, r + n);
      Cm = slice(xDbl, -1, r + n, r + 2 * n);
      delta = masked(softplus(this.dtProj.forward(dt)));
    }
    const A = k ? k.A : neg(exp(this.ALog));
    const scan = selectiveScan(u, delta, A, Bm, Cm, { h0: cache?.ssm });
    // (y + u·D)·silu(z), z the second half of xz: one kernel when nothing is recorded.
    const y = noGradient
      ? mambaGate(scan.y, u, this.D, xz)
      : mul(add(scan.y, mul(u, this.D)), silu(slice(xz, -1, di, 2 * di)));
    const next: MambaCache = { conv: conv.state, ssm: scan.state };
    if (k) next.consts = k;
    return { y: this.outProj.forward(y), cache: next };
  }
}
