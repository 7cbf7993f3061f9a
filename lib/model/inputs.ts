// The image inputs' features (DESIGN §4): for scale k > 1, the tokenizer's f_hat after scales
// 1..k-1, area-resized to pn_k and laid out as tokens. In training f_hat comes from the ground-truth
// indices (teacher forcing, VAR's idxBl_to_var_input); in generation from the sampled ones. The
// tokenizer is frozen: nothing here records gradients.
import { areaResize } from "../tensor/resize.ts";
import { add, concat, permute } from "../tensor/ops.ts";
import { lookupCodes } from "../tensor/vq.ts";
import { noGrad, type Tensor, tensor } from "../tensor/tensor.ts";
import type { ResidualQuantizer } from "../tokenizer/quantizer.ts";

/** Flat indices [B·L] (scales in order, raster within a scale) → i32 [B, pn, pn] per scale. */
export function scaleIndices(indices: Int32Array, B: number, scales: readonly number[]): Tensor[] {
  const L = scales.reduce((a, p) => a + p * p, 0);
  let offset = 0;
  return scales.map((pn) => {
    const n = pn * pn;
    const out = new Int32Array(B * n);
    for (let b = 0; b < B; b++) {
      out.set(indices.subarray(b * L + offset, b * L + offset + n), b * n);
    }
    offset += n;
    return tensor(out, [B, pn, pn], "i32");
  });
}

/** f_hat [B, C, P, P] area-resized to pn × pn, as tokens [B, pn², C] in raster order. */
export function featureTokens(fHat: Tensor, pn: number): Tensor {
  return noGrad(() => {
    const [B, C, P] = fHat.shape;
    const z = pn === P ? fHat : areaResize(fHat, pn, pn);
    return permute(z, [0, 2, 3, 1]).reshape([B, pn * pn, C]);
  });
}

/** f_hat + scale k's term (its codes, bicubic to P, through φ_k). */
export function addScale(
  q: ResidualQuantizer,
  fHat: Tensor | null,
  idx: Tensor,
  k: number,
): Tensor {
  return noGrad(() => {
    const term = q.scaleTerm(idx, k, q.cfg.scales.at(-1)!);
    return fHat ? add(fHat, term) : term;
  });
}

/** Teacher forcing: features of scales 2..K from ground-truth indices, [B, L − 1, C] (null if K = 1). */
export function teacherFeatures(
  q: ResidualQuantizer,
  indices: Int32Array,
  B: number,
): Tensor | null {
  const scales = q.cfg.scales;
  if (scales.length === 1) return null;
  return noGrad(() => {
    const idx = scaleIndices(indices, B, scales);
    const parts: Tensor[] = [];
    let fHat: Tensor | null = null;
    for (let k = 0; k + 1 < scales.length; k++) {
      fHat = addScale(q, fHat, idx[k], k);
      parts.push(featureTokens(fHat, scales[k + 1]));
    }
    return parts.length === 1 ? parts[0] : concat(parts, 1);
  });
}

/**
 * Teacher forcing for ar_scales (ModelConfig): for each token of scales 2..ar+1 in order, the code
 * vector of the token before it in its scale (raster order), zeros for a scale's first token →
 * [B, n_ar, Cvae], n_ar = Σ pn² over those scales. Null when ar = 0.
 */
export function previousCodes(
  q: ResidualQuantizer,
  indices: Int32Array,
  B: number,
  ar: number,
): Tensor | null {
  if (ar === 0) return null;
  const scales = q.cfg.scales;
  const L = scales.reduce((a, p) => a + p * p, 0);
  const n = scales.slice(1, ar + 1).reduce((a, p) => a + p * p, 0);
  const ids = new Int32Array(B * n).fill(-1); // lookupCodes gives zeros outside [0, V)
  let at = 0;
  for (let k = 1, offset = scales[0] ** 2; k <= ar; offset += scales[k] ** 2, k++) {
    for (let i = 0; i < scales[k] ** 2; i++, at++) {
      if (i === 0) continue;
      for (let b = 0; b < B; b++) ids[b * n + at] = indices[b * L + offset + i - 1];
    }
  }
  return noGrad(() =>
    lookupCodes(q.codebook, tensor(ids, [B * n], "i32")).reshape([B, n, q.cfg.cvae])
  );
}
