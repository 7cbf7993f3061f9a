// The residual multi-scale quantizer of DESIGN §3 (VAR's VectorQuantizer2): for each scale,
// area-resize what is left of f, take the nearest codes, bicubic-resize their vectors back, pass
// them through the nearest of the shared φ convs, and add them to f_hat.
import { areaResize, bicubicResize } from "../tensor/resize.ts";
import { codeUsage, lookupCodes, nearestCode } from "../tensor/vq.ts";
import { add, copy, mean, scale, square, sub, zeros } from "../tensor/ops.ts";
import { noGrad, type Tensor } from "../tensor/tensor.ts";
import { type Init, Module } from "../nn/module.ts";
import { Conv2d } from "./blocks.ts";
import type { TokenizerConfig } from "./config.ts";

/** φ: h·(1 − r) + conv3×3(h)·r, one of `shareQuantResi` convs shared across scales. */
class Phi extends Conv2d {
  constructor(init: Init, channels: number, readonly ratio: number) {
    super(init, channels, channels, 3);
  }
  apply(h: Tensor): Tensor {
    return add(scale(h, 1 - this.ratio), scale(this.forward(h), this.ratio));
  }
}

/**
 * Which shared φ serves scale k of K: the one whose tick is nearest to k/(K-1), as VAR's
 * PhiPartiallyShared: ticks = np.linspace(1/3/n, 1-1/3/n, n) for n = 4 shared convs, else
 * linspace(1/2/n, 1-1/2/n, n); ties go to the lower index (np.argmin). The ticks are computed as
 * numpy does (i·step + start, the last one exactly stop), since exact ties do occur, e.g. at
 * k = 7 of K = 10, where rounding picks φ 3 (VAR's base256 scales).
 */
export function phiIndex(k: number, K: number, shared: number): number {
  const at = K === 1 ? 0 : k / (K - 1);
  const start = shared === 4 ? 1 / 3 / shared : 1 / 2 / shared;
  const stop = 1 - start;
  const step = (stop - start) / (shared - 1);
  let best = 0, dist = Infinity;
  for (let i = 0; i < shared; i++) {
    const tick = i === 0 ? start : i === shared - 1 ? stop : i * step + start;
    const d = Math.abs(tick - at);
    if (d < dist) [best, dist] = [i, d];
  }
  return best;
}

export interface QuantizeResult {
  /** f_hat with the straight-through gradient: its value, f's gradient. */
  fHat: Tensor;
  /** Mean over scales of β·MSE(sg(f_hat), f) + MSE(f_hat, sg(f)). */
  vqLoss: Tensor;
  /** Code indices per scale, i32 [B, pn, pn]. */
  indices: Tensor[];
  /** Code-usage counts at each scale, u32 [V]. */
  usage: Tensor[];
  /** What each scale quantized (area-resized rest of f, no gradient): dead-code restarts draw
   * new codes from these. */
  inputs: Tensor[];
}

/** Mean squared error over every element, as a [1] tensor. */
function mse(a: Tensor, b: Tensor): Tensor {
  const d = square(sub(a, b));
  return mean(d.reshape([d.size]), 0, true);
}

export class ResidualQuantizer extends Module {
  readonly codebook: Tensor;
  readonly phis: Phi[] = [];
  constructor(init: Init, readonly cfg: TokenizerConfig) {
    super();
    const emb = this.child("embedding", new Module());
    // Small uniform codes; dead-code restarts re-seed unused ones from encoder outputs.
    this.codebook = emb.param("weight", init.uniform([cfg.vocab, cfg.cvae], 1 / cfg.vocab));
    const resi = this.child("quant_resi", new Module()).child("qresi_ls", new Module());
    for (let i = 0; i < cfg.shareQuantResi; i++) {
      this.phis.push(resi.child(`${i}`, new Phi(init, cfg.cvae, cfg.quantResi)));
    }
  }

  phi(k: number): Phi {
    return this.phis[phiIndex(k, this.cfg.scales.length, this.cfg.shareQuantResi)];
  }

  /** Code vectors of indices [B, pn, pn] as a map [B, C, H, W] after φ (scale k's term of f_hat). */
  scaleTerm(idx: Tensor, k: number, side: number): Tensor {
    const pn = idx.shape[1];
    let h = lookupCodes(this.codebook, idx);
    if (pn !== side) h = bicubicResize(h, side, side);
    return this.phi(k).apply(h);
  }

  /** Training pass over an encoder map f [B, C, H, W] (the §3 loop, with VAR's losses). */
  forward(f: Tensor): QuantizeResult {
    const [B, C, H, W] = f.shape;
    const K = this.cfg.scales.length;
    const fNoGrad = noGrad(() => copy(f));
    let fRest = noGrad(() => copy(f));
    let fHat = zeros([B, C, H, W]);
    let vqLoss: Tensor | null = null;
    const indices: Tensor[] = [];
    const usage: Tensor[] = [];
    const inputs: Tensor[] = [];
    this.cfg.scales.forEach((pn, k) => {
      const rest = noGrad(() => k === K - 1 ? fRest : areaResize(fRest, pn, pn));
      const idx = nearestCode(rest, this.codebook);
      inputs.push(rest);
      indices.push(idx);
      usage.push(codeUsage(idx, this.cfg.vocab));
      const h = this.scaleTerm(idx, k, H);
      fHat = add(fHat, h);
      fRest = noGrad(() => sub(fRest, h));
      const fHatData = noGrad(() => copy(fHat));
      const term = add(scale(mse(fHatData, f), this.cfg.beta), mse(fHat, fNoGrad));
      vqLoss = vqLoss ? add(vqLoss, term) : term;
    });
    // Straight-through: the value of f_hat, the gradient of f.
    const fHatST = add(noGrad(() => sub(fHat, fNoGrad)), f);
    return { fHat: fHatST, vqLoss: scale(vqLoss!, 1 / K), indices, usage, inputs };
  }

  /** Indices per scale for an encoder map, without gradients (tokenize). */
  encode(f: Tensor): Tensor[] {
    return noGrad(() => {
      const [, , H] = f.shape;
      const K = this.cfg.scales.length;
      let fRest = f;
      return this.cfg.scales.map((pn, k) => {
        const rest = k === K - 1 ? fRest : areaResize(fRest, pn, pn);
        const idx = nearestCode(rest, this.codebook);
        fRest = sub(fRest, this.scaleTerm(idx, k, H));
        return idx;
      });
    });
  }

  /** f_hat from the indices of every scale (decode). */
  decode(indices: Tensor[], side: number): Tensor {
    let fHat: Tensor | null = null;
    indices.forEach((idx, k) => {
      const h = this.scaleTerm(idx, k, side);
      fHat = fHat ? add(fHat, h) : h;
    });
    return fHat!;
  }
}
