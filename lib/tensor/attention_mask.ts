// Attention masks as levels (DESIGN.md §4): every position has a level, shared across the batch,
// and a key is visible to a query iff level[key] <= level[query] and the key is not PAD. Text is
// level 0 and scale k's tokens level k, which gives the text prefix + block-causal mask; all
// levels 0 give a bidirectional mask (the text encoder), level = position a causal one.
import { ShapeError } from "../errors.ts";
import { type Tensor, tensor } from "./tensor.ts";

/** The level of a PAD key: never visible, whatever the query's level. */
export const PAD_LEVEL = 0xffffffff;
const MAX_LEVEL = 0x7fffffff;

export interface AttentionMask {
  /**
   * [3, S] u32 by position: level; keyEnd (one past the last position any query of that level
   * may see); queryBegin (the first position whose level admits a key at this position). The
   * kernels skip tiles outside those bounds.
   */
  readonly positions: Tensor;
  /** [B, S] u32: each key's level, or PAD_LEVEL where it is padding. */
  readonly keys: Tensor;
  readonly batch: number;
  readonly length: number;
  /** Host copies (levels [S], keyLevels [B·S]) for references and tests. */
  readonly levels: Uint32Array;
  readonly keyLevels: Uint32Array;
}

type Flags = ArrayLike<boolean | number>;

/**
 * The general mask: `levels` per position, `keyValid[b][s]` false (or 0) where batch row b has
 * PAD at position s. Uploads two small u32 tables.
 */
export function attentionMask(levels: ArrayLike<number>, keyValid: Flags[]): AttentionMask {
  const S = levels.length;
  const B = keyValid.length;
  if (S === 0) throw new ShapeError("attentionMask: no positions");
  if (B === 0) throw new ShapeError("attentionMask: no batch rows in keyValid");
  for (let s = 0; s < S; s++) {
    const l = levels[s];
    if (!Number.isInteger(l) || l < 0 || l >= MAX_LEVEL) {
      throw new ShapeError(
        `attentionMask: level ${l} at position ${s} is not an integer in [0, 2³¹-1)`,
      );
    }
  }
  keyValid.forEach((row, b) => {
    if (row.length !== S) {
      throw new ShapeError(
        `attentionMask: keyValid[${b}] has ${row.length} entries for ${S} positions`,
      );
    }
  });
  const lv = Uint32Array.from(levels);
  const keyLevels = new Uint32Array(B * S);
  for (let b = 0; b < B; b++) {
    for (let s = 0; s < S; s++) keyLevels[b * S + s] = keyValid[b][s] ? lv[s] : PAD_LEVEL;
  }
  // keyEnd[s] = 1 + the last position whose level ≤ level[s]; queryBegin[s] = the first position
  // whose level ≥ level[s]: a prefix max and a suffix min over the sorted distinct levels.
  const distinct = [...new Set(lv)].sort((a, b) => a - b);
  const rank = new Map(distinct.map((l, i) => [l, i]));
  const last = new Array(distinct.length).fill(-1);
  const first = new Array(distinct.length).fill(S);
  lv.forEach((l, s) => {
    const r = rank.get(l)!;
    last[r] = Math.max(last[r], s);
    first[r] = Math.min(first[r], s);
  });
  for (let r = 1; r < distinct.length; r++) last[r] = Math.max(last[r], last[r - 1]);
  for (let r = distinct.length - 2; r >= 0; r--) first[r] = Math.min(first[r], first[r + 1]);
  const table = new Uint32Array(3 * S);
  lv.forEach((l, s) => {
    const r = rank.get(l)!;
    table[s] = l;
    table[S + s] = last[r] + 1;
    table[2 * S + s] = first[r];
  });
  return {
    positions: tensor(table, [3, S], "u32"),
    keys: tensor(keyLevels, [B, S], "u32"),
    batch: B,
    length: S,
    levels: lv,
    keyLevels,
  };
}

/**
 * Level of each position: 0 for a text prefix of `textLength`, then one level per scale's pn²
 * tokens, except that scales 2..ar+1 give each token a level of its own (causal within them).
 */
export function scaleLevels(scales: readonly number[], textLength: number, ar = 0): number[] {
  const levels: number[] = new Array(textLength).fill(0);
  let level = 0;
  scales.forEach((pn, k) => {
    const own = k >= 1 && k <= ar;
    if (!own) level++;
    for (let i = 0; i < pn * pn; i++) levels.push(own ? ++level : level);
  });
  return levels;
}

/**
 * DESIGN.md §4's mask over [text prefix (T) ; image tokens of `scales`]: text queries see
 * non-PAD text keys, an image query of scale k sees non-PAD text and every image key of scales
 * ≤ k. `textValid[b]` has T entries, false at PAD. With `ar`, a query of scales 2..ar+1 sees its
 * own scale's keys only up to itself (ModelConfig.ar_scales).
 */
export function blockCausalMask(
  scales: readonly number[],
  textValid: Flags[],
  ar = 0,
): AttentionMask {
  if (textValid.length === 0) throw new ShapeError("blockCausalMask: no batch rows in textValid");
  const T = textValid[0].length;
  const levels = scaleLevels(scales, T, ar);
  const image = levels.length - T;
  const valid = textValid.map((row) => {
    if (row.length !== T) {
      throw new ShapeError(`blockCausalMask: text rows of ${row.length} and ${T} entries`);
    }
    return [...Array.from(row, Boolean), ...new Array(image).fill(true)];
  });
  return attentionMask(levels, valid);
}

/** Bidirectional attention over non-PAD keys (the text encoder): every level 0. */
export function paddingMask(valid: Flags[]): AttentionMask {
  if (valid.length === 0) throw new ShapeError("paddingMask: no batch rows");
  return attentionMask(new Array(valid[0].length).fill(0), valid);
}

/** Causal attention (the LLaMA-style teacher): level = position; PAD keys where valid is false. */
export function causalMask(length: number, batch: number, valid?: Flags[]): AttentionMask {
  const rows = valid ?? Array.from({ length: batch }, () => new Array(length).fill(true));
  if (rows.length !== batch) {
    throw new ShapeError(`causalMask: ${rows.length} validity rows for batch ${batch}`);
  }
  return attentionMask(Array.from({ length }, (_, i) => i), rows);
}

/** Frees the mask's GPU tables. */
export function disposeMask(mask: AttentionMask): void {
  mask.positions.dispose();
  mask.keys.dispose();
}
