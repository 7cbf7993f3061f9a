// Generation, scale by scale (DESIGN §4): the text and scale 1 first, then each scale's tokens
// alone, with the Mamba conv and SSM states and the attention keys and values carried, so each
// scale costs only its own tokens. With guidance the batch is doubled (conditional rows, then the
// null caption's) and both halves read the same sampled f_hat, as VAR. Nothing is read back: the
// caller reads the indices or decodes f_hat when every scale is done.
import { batchCaptionIds, PAD } from "../data/text.ts";
import { tokenNll } from "../tensor/nn_ops.ts";
import { add, concat, mul, slice, sum } from "../tensor/ops.ts";
import { noGrad, type Tensor, tensor, tidy } from "../tensor/tensor.ts";
import type { ResidualQuantizer } from "../tokenizer/quantizer.ts";
import { lookupCodes } from "../tensor/vq.ts";
import { arScales } from "./config.ts";
import { addScale, featureTokens } from "./inputs.ts";
import { GenerationState, Sequence, type VMambAR } from "./vmambar.ts";

/**
 * Chooses scale k's tokens from its logits: cond (and uncond with guidance) [B·pn², V] →
 * i32 [B·pn²]. `guidance` is t = cfg·(k−1)/(K−1) for this scale. For the scales of ar_scales,
 * drawn one token at a time, `row` is the token's index within the scale and cond is [B, V].
 */
export type TokenPicker = (
  k: number,
  cond: Tensor,
  uncond: Tensor | null,
  guidance: number,
  row?: number,
) => Tensor;

export interface Generated {
  /** f_hat [B, Cvae, P, P] after every scale (decode it to pixels). */
  fHat: Tensor;
  /** The chosen indices per scale, i32 [B, pn, pn]. */
  indices: Tensor[];
  /**
   * With `score`: per caption [B], −log p of every chosen token under the conditional logits, and
   * under the null caption's (null when unguided), summed over the scales scored.
   */
  nll?: { cond: Tensor; uncond: Tensor | null };
}

/** The captions encoded once, before any scale: ids (with the null captions under guidance). */
export interface EncodedText {
  /** Captions in the batch (the conditional rows). */
  B: number;
  guided: boolean;
  seq: Sequence;
  /** The text encoder's output [R, T, d], R = 2B with guidance, else B. */
  text: Tensor;
  dispose(): void;
}

/**
 * Text ids [R·T] without the leading positions that are PAD in every row (captions are
 * left-padded): those positions change nothing (PAD is masked in attention and passed through by
 * Mamba), so generation skips their work. Keeps at least one position. → { ids [R·T'], T' }.
 */
export function trimmedText(ids: Int32Array, T: number): { ids: Int32Array; T: number } {
  const R = ids.length / T;
  let lead = T - 1;
  for (let r = 0; r < R && lead > 0; r++) {
    let n = 0;
    while (n < lead && ids[r * T + n] === PAD) n++;
    lead = n;
  }
  if (lead === 0) return { ids, T };
  const Tt = T - lead, out = new Int32Array(R * Tt);
  for (let r = 0; r < R; r++) out.set(ids.subarray(r * T + lead, (r + 1) * T), r * Tt);
  return { ids: out, T: Tt };
}

/**
 * Runs the text encoder over the captions' ids [B·T] (cfg 0: no unconditional half), with the
 * positions that are PAD in every row trimmed (VMAMBAR_NO_TRIM=1 keeps them, for comparisons).
 */
export function encodeText(model: VMambAR, textIds: Int32Array, cfg: number): EncodedText {
  const T = model.cfg.text_length;
  const B = textIds.length / T;
  const guided = cfg !== 0;
  const full = guided
    ? Int32Array.from([...textIds, ...batchCaptionIds(new Array(B).fill(""), T)])
    : textIds;
  const trim = Deno.env.get("VMAMBAR_NO_TRIM") !== "1";
  const { ids, T: Tt } = trim ? trimmedText(full, T) : { ids: full, T };
  const seq = new Sequence(model.cfg, ids, Tt);
  try {
    const text = noGrad(() => tidy(() => model.text.forward(ids, seq.valid)));
    return {
      B,
      guided,
      seq,
      text,
      dispose() {
        text.dispose();
        seq.dispose();
      },
    };
  } catch (e) {
    seq.dispose();
    throw e;
  }
}

/**
 * Which scales `score` sums the chosen tokens' −log p over: true every scale, false none, a number
 * N the first N (the coarse scales that settle the layout).
 */
export type ScoreScales = boolean | number;

/**
 * Runs every scale for the captions' ids [B·T] (cfg 0: no unconditional half). The returned
 * tensors are the caller's to dispose (or to leave to an enclosing tidy scope).
 */
export function generateScales(
  model: VMambAR,
  quantizer: ResidualQuantizer,
  textIds: Int32Array,
  cfg: number,
  pick: TokenPicker,
  score: ScoreScales = false,
  sequential = 0,
): Generated {
  const encoded = encodeText(model, textIds, cfg);
  try {
    return generateFromText(model, quantizer, encoded, cfg, pick, score, sequential);
  } finally {
    encoded.dispose();
  }
}

/**
 * Every scale after the text encoder has run (encodeText; `encoded` stays the caller's). Split
 * from generateScales so that `vmambar bench generate` can time the two phases apart.
 */
export function generateFromText(
  model: VMambAR,
  quantizer: ResidualQuantizer,
  encoded: EncodedText,
  cfg: number,
  pick: TokenPicker,
  score: ScoreScales = false,
  sequential = 0,
): Generated {
  const c = model.cfg;
  const { scales } = c;
  const K = scales.length;
  const { B, guided, seq, text } = encoded;
  const T = seq.T;
  const R = seq.B;
  const scored = typeof score === "number"
    ? Math.min(K, Math.max(0, Math.floor(score)))
    : score
    ? K
    : 0;
  const state = new GenerationState(model, R, seq.S);
  // Each scale in its own scope: only f_hat, the indices and the carried state outlive it, so
  // memory is one scale's activations, not the whole image's.
  const indices: Tensor[] = [];
  let fHat: Tensor | null = null;
  let nllC: Tensor | null = null, nllU: Tensor | null = null;
  // Sums −log p of the chosen tokens per caption onto `acc` (tokenNll [B·n] → [B]).
  const accumulate = (acc: Tensor | null, logits: Tensor, idx: Tensor, n: number) => {
    const perToken = tokenNll(logits, idx).reshape([B, n]);
    const s = sum(perToken, 1);
    return acc ? add(acc, s) : s;
  };
  const disposeAll = () => {
    (fHat as Tensor | null)?.dispose();
    (nllC as Tensor | null)?.dispose();
    (nllU as Tensor | null)?.dispose();
  };
  try {
    return noGrad(() => {
      let start = 0;
      scales.forEach((pn, k) => {
        const r = tidy(() => {
          const n = pn * pn, V = c.vocab;
          const scoring = k < scored;
          const t = K > 1 ? (cfg * k) / (K - 1) : 0;
          // Logits [R, rows, V] → the conditional half and (with guidance) the null caption's,
          // each [B·rows, V].
          const halves = (logits: Tensor, rows: number) => ({
            cond: (guided ? slice(logits, 0, 0, B) : logits).reshape([B * rows, V]),
            uncond: guided ? slice(logits, 0, B, R).reshape([B * rows, V]) : null,
          });
          // One pass of scale k from f_hat (plus `extra`, the tokens of this scale already
          // drawn): the conditional and unconditional logits [B·n, V].
          const pass = (extra: Tensor | null) => {
            let x: Tensor;
            if (k === 0) {
              x = concat([text, model.imageInputs(0, null, R)], 1);
            } else {
              const f = featureTokens(extra ? add(fHat!, extra) : fHat!, pn);
              x = model.imageInputs(k, guided ? concat([f, f], 0) : f, R);
            }
            const logits = model.backboneLogits(
              x,
              seq,
              start,
              state,
              k === 0 ? [T, T + 1] : undefined,
            );
            return { ...halves(logits, n), rows: x.shape[1] };
          };
          if (k > 0 && k <= arScales(c)) {
            // Autoregressive within the scale: one token per pass, each pass's row carried on.
            const f = featureTokens(fHat!, pn);
            const rowsIn = guided ? concat([f, f], 0) : f;
            const picks: Tensor[] = [];
            let cn: Tensor | null = null, un: Tensor | null = null;
            for (let i = 0; i < n; i++) {
              let prev = null;
              if (i > 0) {
                const codes = lookupCodes(quantizer.codebook, picks[i - 1]).reshape([B, 1, -1]);
                prev = { codes: guided ? concat([codes, codes], 0) : codes, row: 0 };
              }
              const x = model.imageInputs(k, slice(rowsIn, 1, i, i + 1), R, prev);
              const { cond, uncond } = halves(
                model.backboneLogits(x, seq, start + i, state),
                1,
              );
              const flat = pick(k, cond, uncond, t, i);
              picks.push(flat);
              if (scoring) {
                cn = accumulate(cn ?? nllC, cond, flat, 1);
                if (uncond) un = accumulate(un ?? nllU, uncond, flat, 1);
              }
            }
            const idx = concat(picks.map((p) => p.reshape([B, 1])), 1).reshape([B, pn, pn]);
            return { idx, fHat: addScale(quantizer, fHat, idx, k), rows: n, cn, un };
          }
          if (k > 0 && k <= sequential && n > 1) {
            const flat = drawInOrder(quantizer, fHat!, state, k, pn, B, pass, pick, t);
            const idx = flat.reshape([B, pn, pn]);
            return { idx, fHat: addScale(quantizer, fHat, idx, k), rows: n, cn: null, un: null };
          }
          const { cond, uncond, rows } = pass(null);
          const flat = pick(k, cond, uncond, t);
          const idx = flat.reshape([B, pn, pn]);
          const cn = scoring ? accumulate(nllC, cond, flat, n) : null;
          const un = scoring && uncond ? accumulate(nllU, uncond, flat, n) : null;
          return { idx, fHat: addScale(quantizer, fHat, idx, k), rows, cn, un };
        });
        start += r.rows;
        indices.push(r.idx);
        (fHat as Tensor | null)?.dispose();
        fHat = r.fHat;
        if (r.cn) {
          (nllC as Tensor | null)?.dispose();
          nllC = r.cn;
        }
        if (r.un) {
          (nllU as Tensor | null)?.dispose();
          nllU = r.un;
        }
      });
      const out: Generated = { fHat: fHat!, indices };
      if (scored > 0) out.nll = { cond: nllC!, uncond: nllU };
      return out;
    });
  } catch (e) {
    disposeAll();
    for (const t of indices) t.dispose();
    throw e;
  } finally {
    state.dispose();
  }
}

/**
 * Scale k's tokens drawn one at a time in raster order, each given the ones before it (an
 * experiment against VAR's independent draws within a scale, `--sequential`): pass j runs scale k
 * from the state before it with f_hat plus the term of tokens 0..j−1 (their φ term, masked to
 * their cells), and keeps its draw of token j. Pass 0 is the ordinary one; after the last, the
 * ordinary pass runs again (its logits unused) so that the next scale continues from the state
 * (Mamba states, keys and values) it leaves. Returns the indices [B·n].
 */
function drawInOrder(
  quantizer: ResidualQuantizer,
  fHat: Tensor,
  state: GenerationState,
  k: number,
  pn: number,
  B: number,
  pass: (extra: Tensor | null) => { cond: Tensor; uncond: Tensor | null },
  pick: TokenPicker,
  t: number,
): Tensor {
  const n = pn * pn, P = fHat.shape[2];
  const before = state.snapshot();
  try {
    let drawn: Tensor | null = null; // [B, n]: tokens 0..j−1 final, the rest pass j−1's draws
    for (let j = 0; j < n; j++) {
      // Each pass in its own scope: only the draws outlive it.
      const next: Tensor = tidy(() => {
        let extra: Tensor | null = null;
        if (j > 0) {
          state.restore(before);
          const mask = new Float32Array(P * P);
          for (let y = 0; y < P; y++) {
            for (let x = 0; x < P; x++) {
              const cell = Math.floor((y * pn) / P) * pn + Math.floor((x * pn) / P);
              mask[y * P + x] = cell < j ? 1 : 0;
            }
          }
          const term = quantizer.scaleTerm(drawn!.reshape([B, pn, pn]), k, P);
          extra = mul(term, tensor(mask, [1, 1, P, P]));
        }
        const { cond, uncond } = pass(extra);
        const flat = pick(k, cond, uncond, t).reshape([B, n]);
        return j === 0 ? flat : concat([slice(drawn!, 1, 0, j), slice(flat, 1, j, n)], 1);
      });
      drawn?.dispose();
      drawn = next;
    }
    state.restore(before);
    tidy(() => void pass(null));
    return drawn!.reshape([B * n]);
  } finally {
    before.dispose();
  }
}
