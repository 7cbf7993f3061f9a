// VMambAR as a whole (DESIGN §4): generation's scale-by-scale pass equals the full sequence,
// PAD text is invisible, no image position sees its own scale's ground truth, and every
// parameter's gradient agrees with a directional difference.
import { generateScales, type TokenPicker, trimmedText } from "../lib/model/generate.ts";
import {
  addScale,
  featureTokens,
  previousCodes,
  scaleIndices,
  teacherFeatures,
} from "../lib/model/inputs.ts";
import { add, concat, mul } from "../lib/tensor/ops.ts";
import { Sequence, VMambAR } from "../lib/model/vmambar.ts";
import { batchCaptionIds, PAD } from "../lib/data/text.ts";
import { arScales, type ModelConfig, validateModelConfig } from "../lib/model/config.ts";
import { keep, noGrad, type Tensor, tensor, tidy, tidyAsync } from "../lib/tensor/tensor.ts";
import { assert, assertClose, assertDirectionalGrads, gpuReady, randn } from "./helpers.ts";
import { recorderStats, upload } from "../lib/gpu/mod.ts";
import { randomBatch, tinyModelConfig, tinyQuantizer } from "./model_fixtures.ts";
import { grownTensors } from "../lib/train/model_run.ts";
import { loadParameters } from "../lib/io/checkpoint.ts";
import type { StTensor } from "../lib/io/safetensors.ts";

/** Logits of the full pass; `junk` fills the PAD positions' ids after the mask is made. */
async function fullLogits(
  model: VMambAR,
  textIds: Int32Array,
  indices: Int32Array,
  q = tinyQuantizer(),
  junk?: number,
) {
  const seq = new Sequence(model.cfg, Int32Array.from(textIds));
  if (junk !== undefined) {
    seq.textIds.forEach((id, i) => {
      if (id === PAD) seq.textIds[i] = (junk + i) % 256;
    });
  }
  try {
    return await tidyAsync(async () =>
      await noGrad(() => {
        const prev = previousCodes(q, indices, seq.B, arScales(model.cfg));
        return model.forward(seq, teacherFeatures(q, indices, seq.B), prev);
      }).toArray()
    );
  } finally {
    seq.dispose();
    q.dispose();
  }
}

/** A picker that chooses the true indices [B·L]: a scale's, or one token's for ar_scales. */
function truthPicker(c: ModelConfig, indices: Int32Array, B: number): TokenPicker {
  const L = indices.length / B;
  const truth = scaleIndices(indices, B, c.scales);
  return (k, _c, _u, _t, row) => {
    if (row === undefined) return truth[k].reshape([-1]);
    const at = c.scales.slice(0, k).reduce((a, p) => a + p * p, 0);
    return tensor(Int32Array.from({ length: B }, (_, b) => indices[b * L + at + row]), [B], "i32");
  };
}

/** Gives prev_embed (zero at init) random weights, so that a wrong previous code shows. */
async function randomPrevEmbed(model: VMambAR, seed: number) {
  const w = model.prevEmbed!.weight;
  upload(w.buffer, Float32Array.from(randn(w.size, seed, 0.5)));
  await w.toArray();
}

for (
  const [arch, ar] of [["hybrid", 0], ["transformer", 0], ["hybrid", 1], ["transformer", 1], [
    "hybrid",
    2,
  ]] as const
) {
  for (const short of [false, true]) {
    Deno.test(`VMambAR ${arch}, ar_scales ${ar}: scale-by-scale generation logits equal the full pass${short ? " (short captions: leading PADs trimmed)" : ""}`, async () => {
      await gpuReady;
      const c = validateModelConfig(tinyModelConfig({ arch, ar_scales: ar }), "test");
      const model = new VMambAR(c, 1);
      if (ar > 0) await randomPrevEmbed(model, 4);
      const q = tinyQuantizer();
      const B = 3, V = c.vocab, L = c.scales.reduce((a, p) => a + p * p, 0);
      const batch = randomBatch(c, B, 11), indices = batch.indices;
      // Short captions: the longest is 5 ids of 8, so generation runs 3 positions fewer.
      const textIds = short ? batchCaptionIds(["a", "", "red"], c.text_length) : batch.textIds;
      assert(trimmedText(textIds, c.text_length).T === (short ? 5 : c.text_length), "trimmed");
      const full = await fullLogits(model, textIds, indices);
      // Logits [B·n, V] per scale, or [B, V] per token of the autoregressive scales.
      const got: { k: number; row?: number; logits: number[] }[] = [];
      await tidyAsync(async () => {
        const truth = truthPicker(c, indices, B);
        const seen: { k: number; row?: number; t: Tensor }[] = [];
        generateScales(model, q, textIds, 0, (k, cond, u, t, row) => {
          seen.push({ k, row, t: keep(cond) });
          return truth(k, cond, u, t, row);
        });
        for (const s of seen) {
          got.push({ k: s.k, row: s.row, logits: await s.t.toArray() }), s.t.dispose();
        }
      });
      const calls = c.scales.map((pn, k) => (k >= 1 && k <= ar ? pn * pn : 1));
      assert(got.length === calls.reduce((a, b) => a + b), `${got.length} picks`);
      // Reassemble [B, L, V].
      const inc = new Float64Array(full.length);
      const offsets = c.scales.map((_, k) => c.scales.slice(0, k).reduce((a, p) => a + p * p, 0));
      for (const { k, row, logits } of got) {
        const n = c.scales[k] ** 2;
        for (let b = 0; b < B; b++) {
          if (row === undefined) {
            inc.set(logits.slice(b * n * V, (b + 1) * n * V), (b * L + offsets[k]) * V);
          } else inc.set(logits.slice(b * V, (b + 1) * V), (b * L + offsets[k] + row) * V);
        }
      }
      assertClose(inc, full, 1e-4, `${arch}, ar_scales ${ar}: incremental vs full logits`);
      model.dispose();
      q.dispose();
    });
  }
}

Deno.test("trimmedText drops the leading positions that are PAD in every row, keeping one", () => {
  const P = PAD;
  const ids = Int32Array.of(P, P, 5, 6, P, P, P, 7, P, 1, 2, 3);
  const t = trimmedText(ids, 4);
  assert(t.T === 3 && t.ids.join() === [P, 5, 6, P, P, 7, 1, 2, 3].join(), `${t.T}: ${t.ids}`);
  const none = Int32Array.of(1, P, P, P);
  assert(trimmedText(none, 4).T === 4 && trimmedText(none, 4).ids === none, "nothing to trim");
  const allPad = Int32Array.of(P, P, P, P, P, P);
  assert(trimmedText(allPad, 3).T === 1, "all PAD: one position kept");
});

for (const ar of [0, 2]) {
  Deno.test(`generation's scores are −log p of the chosen tokens, summed per caption, under each caption and the null one (ar_scales ${ar})`, async () => {
    await gpuReady;
    const c = validateModelConfig(tinyModelConfig({ ar_scales: ar }), "test");
    const model = new VMambAR(c, 2);
    if (ar > 0) await randomPrevEmbed(model, 8);
    const B = 3, V = c.vocab, L = c.scales.reduce((a, p) => a + p * p, 0);
    const { textIds, indices } = randomBatch(c, B, 12);
    const nullIds = batchCaptionIds(new Array(B).fill(""), c.text_length);
    // float64: Σ over the image positions (the first `upto`) of −log softmax(full-pass
    // logits)[the chosen index]
    const refNll = (logits: Float64Array, upto = L) =>
      Float64Array.from({ length: B }, (_, b) => {
        let total = 0;
        for (let i = 0; i < upto; i++) {
          const row = logits.subarray((b * L + i) * V, (b * L + i + 1) * V);
          const m = row.reduce((a, x) => Math.max(a, x), -Infinity);
          const lse = m + Math.log(row.reduce((a, x) => a + Math.exp(x - m), 0));
          total += lse - row[indices[b * L + i]];
        }
        return total;
      });
    const condLogits = Float64Array.from(await fullLogits(model, textIds, indices));
    const wantCond = refNll(condLogits);
    const wantUncond = refNll(Float64Array.from(await fullLogits(model, nullIds, indices)));
    for (const cfg of [0, 1.5]) {
      const q = tinyQuantizer();
      const got = await tidyAsync(async () => {
        const g = generateScales(model, q, textIds, cfg, truthPicker(c, indices, B), true);
        return {
          cond: await g.nll!.cond.toArray(),
          uncond: g.nll!.uncond ? await g.nll!.uncond.toArray() : null,
        };
      });
      q.dispose();
      assertClose(got.cond, wantCond, 1e-4, `cfg ${cfg}: −log p(x|c)`);
      if (cfg === 0) assert(got.uncond === null, "unguided: no null-caption score");
      else assertClose(got.uncond!, wantUncond, 1e-4, `cfg ${cfg}: −log p(x|∅)`);
    }
    // A number of scales to score: the first ones only (scale 2 is token by token with ar > 0).
    const q = tinyQuantizer();
    const prefix = await tidyAsync(async () => {
      const g = generateScales(model, q, textIds, 0, truthPicker(c, indices, B), 2);
      return await g.nll!.cond.toArray();
    });
    const none = tidy(() =>
      generateScales(model, q, textIds, 0, truthPicker(c, indices, B), 0).nll
    );
    q.dispose();
    const upto = c.scales[0] ** 2 + c.scales[1] ** 2;
    assertClose(prefix, refNll(condLogits, upto), 1e-4, "the first 2 scales' −log p(x|c)");
    assert(none === undefined, "score 0: no scores");
    model.dispose();
  });
}

Deno.test("VMambAR: PAD text ids are invisible; a scale's logits ignore its own and later indices", async () => {
  await gpuReady;
  const c = tinyModelConfig();
  const model = new VMambAR(c, 2);
  const B = 2;
  const { textIds, indices } = randomBatch(c, B, 7);
  const base = await fullLogits(model, textIds, indices);
  // PAD positions holding other ids (their embeddings junk, still masked as PAD) change nothing.
  const seq = new Sequence(c, textIds);
  assert(seq.valid[0].some((v) => !v), "the fixture has PAD");
  seq.dispose();
  assertClose(await fullLogits(model, textIds, indices, undefined, 97), base, 0, "junk at PAD");
  // Change the last scale's indices: they feed no input, so no logit may change.
  const L = indices.length / B, last = c.scales.at(-1)! ** 2;
  const changed = Int32Array.from(indices);
  for (let b = 0; b < B; b++) {
    for (let i = L - last; i < L; i++) changed[b * L + i] = (changed[b * L + i] + 1) % c.vocab;
  }
  assertClose(await fullLogits(model, textIds, changed), base, 0, "last scale's indices");
  // Change scale 2's indices: scales 1 and 2 must keep their logits, scale 3's must change.
  const c2 = Int32Array.from(indices);
  for (let b = 0; b < B; b++) {
    for (let i = 1; i < 5; i++) c2[b * L + i] = (c2[b * L + i] + 3) % c.vocab;
  }
  const other = await fullLogits(model, textIds, c2);
  const V = c.vocab;
  for (let b = 0; b < B; b++) {
    const upTo2 = (x: ArrayLike<number>) => Array.from(x).slice(b * L * V, (b * L + 5) * V);
    assertClose(upTo2(other), upTo2(base), 0, "scales 1–2 ignore scale 2's indices");
  }
  assert(Math.max(...other.map((v, i) => Math.abs(v - base[i]))) > 1e-4, "scale 3 sees scale 2");
  model.dispose();
});

// Without gradients each Mamba block's residual add is one dispatch with the RMSNorm after it (the
// next block's where no GSA call comes between, or the final one): the logits must not change.
Deno.test("VMambAR hybrid: logits without gradients (adds fused into the norms) equal the training path's", async () => {
  await gpuReady;
  // [4, 2]: GSA before block 2, so 3 fused adds; [5, 3] with ar_scales 1: GSA before block 3, 4.
  for (const [n_layers, gsa_every, ar, fused] of [[4, 2, 0, 3], [5, 3, 1, 4]]) {
    const c = validateModelConfig(tinyModelConfig({ n_layers, gsa_every, ar_scales: ar }), "test");
    const model = new VMambAR(c, 8);
    if (ar > 0) await randomPrevEmbed(model, 9);
    // Norm weights other than 1, so that a norm applied with another block's weight shows.
    let seed = 20;
    for (const [name, w] of model.namedParameters()) {
      if (name.endsWith("norm.weight")) {
        upload(w.buffer, Float32Array.from(randn(w.size, seed++), (v) => 1 + v / 2));
        await w.toArray();
      }
    }
    const q = tinyQuantizer();
    const B = 2;
    const { textIds, indices } = randomBatch(c, B, 13);
    const seq = new Sequence(c, textIds);
    const features = keep(teacherFeatures(q, indices, B)!);
    const prev = ar > 0 ? keep(previousCodes(q, indices, B, ar)!) : null;
    const counted = async (grad: boolean) => {
      recorderStats.byLabel = new Map();
      try {
        const logits = await tidyAsync(() => {
          const run = () => model.forward(seq, features, prev);
          const out = grad ? run() : noGrad(run);
          assert(out.requiresGrad === grad, `requiresGrad ${out.requiresGrad}`);
          return out.toArray();
        });
        let adds = 0;
        for (const [label, n] of recorderStats.byLabel) {
          if (label.includes(":add_forward")) adds += n;
        }
        return { logits, adds };
      } finally {
        recorderStats.byLabel = null;
      }
    };
    const plain = await counted(false), graded = await counted(true);
    const where = `n_layers ${n_layers}, gsa_every ${gsa_every}`;
    assert(plain.adds === fused, `${where}: ${plain.adds} fused add + norm dispatches`);
    assert(graded.adds === 0, `${where}: the training path dispatched ${graded.adds} fused`);
    assertClose(plain.logits, graded.logits, 1e-5, `${where}: logits without vs with gradients`);
    features.dispose();
    prev?.dispose();
    seq.dispose();
    q.dispose();
    model.dispose();
  }
});

Deno.test("VMambAR: every parameter's gradient agrees with a directional difference", async () => {
  await gpuReady;
  for (const [arch, ar] of [["hybrid", 0], ["transformer", 0], ["hybrid", 1]] as const) {
    const c = tinyModelConfig({ arch, n_layers: 3, ar_scales: ar });
    const model = new VMambAR(c, 3);
    if (ar > 0) await randomPrevEmbed(model, 6);
    // VAR's small head init scales every gradient below it by ~1/250, down to the loss's f32
    // rounding: check with a head of ordinary size.
    const w = await model.head.weight.toArray();
    upload(model.head.weight.buffer, Float32Array.from(w, (x) => 50 * x));
    const q = tinyQuantizer();
    const B = 2;
    const { textIds, indices } = randomBatch(c, B, 5);
    const seq = new Sequence(c, textIds);
    const features = keep(teacherFeatures(q, indices, B)!);
    const prev = ar > 0 ? keep(previousCodes(q, indices, B, ar)!) : null;
    const loss = () => VMambAR.loss(model.forward(seq, features, prev), indices);
    // One joint direction per block (text layer, backbone block), one per GSA parameter (its
    // gradient is small beside the loss's rounding, so it moves alone), one for everything else.
    const group = (name: string) => {
      const p = name.split(".");
      if (p[0] === "blocks") return p.slice(0, 2).join(".");
      if (p[0] === "text" && p[1] === "layers") return p.slice(0, 3).join(".");
      return p[0] === "gsa" || p[0] === "gsa_out" ? name : p[0];
    };
    // floor 0.25: a direction that cancels g·v to a sixth of ‖g‖ met f32's rounding of the small
    // GSA gradients (0.4% of ‖g‖, the same at every step ε) once in many runs; a wrong gradient
    // is off by far more than 0.5% of ‖g‖ in a random direction.
    await assertDirectionalGrads(model.namedParameters(), loss, {
      eps: 1e-2,
      floor: 0.25,
      groupBy: group,
    });
    features.dispose();
    prev?.dispose();
    seq.dispose();
    q.dispose();
    model.dispose();
  }
});

for (const arch of ["hybrid", "transformer"] as const) {
  Deno.test(`VMambAR ${arch}: token-by-token scales see the tokens drawn before them, and leave the later scales as they were`, async () => {
    await gpuReady;
    const c = validateModelConfig(tinyModelConfig({ arch }), "test");
    const model = new VMambAR(c, 3);
    const q = tinyQuantizer();
    const B = 2, V = c.vocab, P = c.scales.at(-1)!, K = c.scales.length;
    const L = c.scales.reduce((a, p) => a + p * p, 0);
    const { textIds, indices } = randomBatch(c, B, 13);
    const offsets = c.scales.map((_, k) => c.scales.slice(0, k).reduce((a, p) => a + p * p, 0));
    // Every pass's conditional logits, in call order, each scale's picks forced to the truth.
    const calls: { k: number; logits: number[] }[] = [];
    await tidyAsync(async () => {
      const truth = scaleIndices(indices, B, c.scales);
      const seen: { k: number; t: Tensor }[] = [];
      generateScales(
        model,
        q,
        textIds,
        0,
        (k, cond) => {
          seen.push({ k, t: keep(cond) });
          return truth[k].reshape([-1]);
        },
        false,
        K - 1,
      );
      for (const s of seen) calls.push({ k: s.k, logits: await s.t.toArray() });
      for (const s of seen) s.t.dispose();
    });
    assert(calls.length === 1 + 4 + 9, `one pass for 1×1, then one per token: ${calls.length}`);
    // The reference: the full pass, with scale k's input f_hat_{<k} plus the φ term of its first j
    // true tokens, masked to their cells (floor(y·pn/P), floor(x·pn/P)).
    const seq = new Sequence(c, textIds);
    const rows = (logits: ArrayLike<number>, k: number) => {
      const n = c.scales[k] ** 2, out = new Float64Array(B * n * V);
      for (let b = 0; b < B; b++) {
        for (let i = 0; i < n * V; i++) out[b * n * V + i] = logits[(b * L + offsets[k]) * V + i];
      }
      return out;
    };
    let call = 0;
    for (let k = 0; k < K; k++) {
      const pn = c.scales[k], n = pn * pn;
      for (let j = 0; j < (k === 0 ? 1 : n); j++, call++) {
        const want = await tidyAsync(async () => {
          const feats = noGrad(() => {
            const truth = scaleIndices(indices, B, c.scales);
            let fHat: Tensor | null = null;
            const parts: Tensor[] = [];
            for (let s = 0; s + 1 < K; s++) {
              fHat = addScale(q, fHat, truth[s], s);
              let f = fHat;
              if (s + 1 === k && j > 0) {
                const mask = new Float32Array(P * P).map((_, at) => {
                  const y = Math.floor(at / P), x = at % P;
                  return Math.floor(y * pn / P) * pn + Math.floor(x * pn / P) < j ? 1 : 0;
                });
                f = add(fHat, mul(q.scaleTerm(truth[k], k, P), tensor(mask, [1, 1, P, P])));
              }
              parts.push(featureTokens(f, c.scales[s + 1]));
            }
            return concat(parts, 1);
          });
          return rows(await noGrad(() => model.forward(seq, feats)).toArray(), k);
        });
        assert(calls[call].k === k, `call ${call} is scale ${k}`);
        assertClose(calls[call].logits, want, 1e-4, `${arch}: scale ${k}, token ${j}`);
      }
    }
    // The passes after the first do see the tokens before them.
    assert(
      calls[2].logits.some((x, i) => Math.abs(x - calls[1].logits[i]) > 1e-6),
      "token 1's pass differs from token 0's",
    );
    seq.dispose();
    model.dispose();
    q.dispose();
  });
}

Deno.test("VMambAR hybrid: a model grown deeper from a checkpoint computes what it did, and can learn", async () => {
  await gpuReady;
  // 4 layers with GSA every 2 (one call, before block 2) grown to 7 (calls before 2, 4 and 6).
  const small = validateModelConfig(tinyModelConfig({ n_layers: 4, gsa_every: 2 }), "test");
  const deep = validateModelConfig({ ...small, n_layers: 7 }, "test");
  const a = new VMambAR(small, 3), b = new VMambAR(deep, 4);
  const tensors = new Map<string, StTensor>();
  for (const [name, p] of a.namedParameters()) {
    const data = new Uint8Array(Float32Array.from(await p.toArray()).buffer);
    tensors.set(name, { dtype: "F32", shape: [...p.shape], data });
  }
  const { tensors: grown, fresh } = grownTensors(b, tensors);
  assert(grown.has("blocks.6.mamba.out_proj.weight") && grown.has("gsa_out.2.weight"), "zeros");
  assert(fresh.includes("blocks.4.mamba.in_proj.weight"), `fresh: ${fresh.slice(0, 4)}`);
  assert(!fresh.some((n) => /^blocks\.[0-3]\.|out_proj|^gsa_out/.test(n)), `fresh: ${fresh}`);
  loadParameters(b, grown, "test", fresh);
  const { textIds, indices } = randomBatch(small, 2, 17);
  const before = await fullLogits(a, textIds, indices);
  assertClose(await fullLogits(b, textIds, indices), before, 1e-5, "grown vs original logits");
  // The new blocks are not dead: give one out_proj weights and the logits move.
  const w = b.namedParameters().find(([n]) => n === "blocks.5.mamba.out_proj.weight")![1];
  upload(w.buffer, Float32Array.from(randn(w.size, 31, 0.5)));
  const moved = await fullLogits(b, textIds, indices);
  const diff = moved.reduce((m, v, i) => Math.max(m, Math.abs(v - before[i])), 0);
  assert(diff > 1e-3, `a new block's out_proj changed the logits by only ${diff}`);
  a.dispose();
  b.dispose();
});
