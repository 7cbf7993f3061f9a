// The Mamba-1 block (state-spaces/mamba's `Mamba`, DESIGN §4): names, shapes and initialisation
// as there, d_state 16, d_conv 4, expand 2, dt_rank ⌈d/16⌉. PAD positions (mask 0) have their
// inputs zeroed and Δ = 0, so the conv and SSM states pass through them unchanged.
import { causalConv1d } from "../tensor/conv1d.ts";
import { exp, mambaGate, mul, neg, silu, slice, softplus } from "../tensor/ops.ts";
import { selectiveScan } from "../tensor/scan.ts";
import { isGradEnabled, type Tensor } from "../tensor/tensor.ts";
import { Linear } from "./layers.ts";
import { type Init, Module } from "./module.ts";

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
   * A = −exp(A_log) [d_inner, d_state], carried when no gradient is recorded so that generation
   * computes it once: only valid while A_log does not change (one generation). The returned cache
   * holds the same tensor that came in (or a new one on the first pass).
   */
  A?: Tensor;
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

  /**
   * x [B, L, d] → [B, L, d]. `mask` [B, L, 1] is 1 on real tokens and 0 on PAD; `cache` carries
   * generation's state in and the returned cache carries it out.
   */
  forward(x: Tensor, mask?: Tensor, cache?: MambaCache): { y: Tensor; cache: MambaCache } {
    const di = this.dInner, n = this.dState, r = this.dtRank;
    // Without gradients (generation) fused kernels do the same arithmetic in fewer dispatches.
    const noGradient = !isGradEnabled();
    const masked = (t: Tensor) => (mask ? mul(t, mask) : t);
    const xz = this.inProj.forward(masked(x));
    const w = this.conv1dWeight.reshape([di, this.dConv]);
    // xs = xz[..., :di]: read in place by the conv, which also applies silu, when fused.
    const conv = noGradient
      ? causalConv1d(xz, w, this.conv1dBias, cache?.conv, { silu: true, prefix: true })
      : causalConv1d(slice(xz, -1, 0, di), w, this.conv1dBias, cache?.conv);
    const u = masked(noGradient ? conv.y : silu(conv.y));
    const xDbl = this.xProj.forward(u);
    const dt = slice(xDbl, -1, 0, r);
    const Bm = slice(xDbl, -1, r, r + n);
    const Cm = slice(xDbl, -1, r + n, r + 2 * n);
    const delta = masked(softplus(this.dtProj.forward(dt)));
    // With gradients, always from A_log (a carried A would cut it off from the graph).
    const A = (noGradient ? cache?.A : undefined) ?? neg(exp(this.ALog));
    const scan = selectiveScan(u, delta, A, Bm, Cm, { h0: cache?.ssm });
    // (y + u·D)·silu(z), z the second half of xz: one kernel when nothing is recorded.
    const y = mambaGate(scan.y, u, this.D, xz);
    const next: MambaCache = { conv: conv.state, ssm: scan.state };
    if (noGradient) next.A = A;
    return { y: this.outProj.forward(y), cache: next };
  }
}
