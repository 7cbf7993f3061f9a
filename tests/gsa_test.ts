// The GSA block (DESIGN §4) as a whole: generation's KV-cache path equals the full pass, PAD text
// changes nothing, and every parameter's gradient agrees with a directional difference.
import { GSA } from "../lib/nn/attention.ts";
import { Init } from "../lib/nn/module.ts";
import {
  attendCached,
  type AttentionMask,
  blockCausalMask,
  disposeMask,
  KVCache,
  rope2dTable,
} from "../lib/tensor/attention.ts";
import { recorderStats, upload } from "../lib/gpu/mod.ts";
import { gsaStepIn, gsaStepOut, packGsaWeights } from "../lib/tensor/gsa_step.ts";
import { designCoords, refAttention, refRope } from "./attention_ref.ts";
import { mul, slice, sumAll } from "../lib/tensor/ops.ts";
import { noGrad, tensor, tidyAsync } from "../lib/tensor/tensor.ts";
import { assert, assertClose, assertDirectionalGrads, f32, gpuReady, randn } from "./helpers.ts";

const scales = [1, 2, 3];
const T = 5;
const S = T + scales.reduce((a, p) => a + p * p, 0);

Deno.test("GSA: scale-by-scale generation with the KV cache equals the full pass", async () => {
  await gpuReady;
  const [B, d, H] = [2, 16, 2];
  const gsa = new GSA(new Init(1), d, H);
  const h = f32(randn(B * S * d));
  const x0 = f32(randn(B * S * d));
  const mask = blockCausalMask(scales, [[0, 1, 1, 1, 1], [0, 0, 0, 1, 1]]);
  const table = rope2dTable(scales, T, (2 * d) / H);
  await tidyAsync(async () => {
    const full = await noGrad(() =>
      gsa.forward(tensor(h, [B, S, d]), tensor(x0, [B, S, d]), mask, { table })
    ).toArray();
    const cache = new KVCache(B, S, H, (2 * d) / H);
    const got = new Float64Array(full.length);
    const bounds = [0, T + 1, T + 1 + 4, S]; // text + scale 1, then scale 2, then scale 3
    for (let i = 0; i + 1 < bounds.length; i++) {
      const [s, e] = [bounds[i], bounds[i + 1]];
      const piece = (v: Float64Array) => {
        const out: number[] = [];
        for (let b = 0; b < B; b++) out.push(...v.slice((b * S + s) * d, (b * S + e) * d));
        return out;
      };
      const y = await noGrad(() =>
        gsa.forward(tensor(piece(h), [B, e - s, d]), tensor(piece(x0), [B, e - s, d]), mask, {
          table,
          start: s,
        }, cache)
      ).toArray();
      for (let b = 0; b < B; b++) {
        got.set(y.slice(b * (e - s) * d, (b + 1) * (e - s) * d), (b * S + s) * d);
      }
    }
    cache.dispose();
    // PAD text queries see no keys and output the MLP of zeros: compare every position anyway.
    assertClose(got, full, 1e-5, "GSA cached vs full");
  });
  disposeMask(mask);
  table.dispose();
  gsa.dispose();
});

Deno.test("GSA: PAD text positions do not change the image outputs", async () => {
  await gpuReady;
  const [d, H] = [16, 2];
  const gsa = new GSA(new Init(2), d, H);
  const h = f32(randn(S * d));
  const x0 = f32(randn(S * d));
  const junk = f32(randn(2 * d, undefined, 10));
  const valid = [0, 0, 1, 1, 1];
  const mask = blockCausalMask(scales, [valid]);
  const table = rope2dTable(scales, T, (2 * d) / H);
  await tidyAsync(async () => {
    const a = await noGrad(() =>
      slice(gsa.forward(tensor(h, [1, S, d]), tensor(x0, [1, S, d]), mask, { table }), 1, T, S)
    )
      .toArray();
    const h2 = Float64Array.from(h);
    h2.set(junk, 0);
    const b = await noGrad(() =>
      slice(gsa.forward(tensor(h2, [1, S, d]), tensor(x0, [1, S, d]), mask, { table }), 1, T, S)
    )
      .toArray();
    assertClose(b, a, 1e-6, "image outputs with different PAD contents");
  });
  disposeMask(mask);
  table.dispose();
  gsa.dispose();
});

Deno.test("GSA: every parameter's gradient agrees with a directional difference", async () => {
  await gpuReady;
  const [B, d, H] = [2, 16, 2];
  const gsa = new GSA(new Init(3), d, H);
  const mask = blockCausalMask(scales, [[1, 1, 1, 1, 1], [0, 1, 1, 1, 1]]);
  const table = rope2dTable(scales, T, (2 * d) / H);
  const h = tensor(f32(randn(B * S * d)), [B, S, d]);
  const x0 = tensor(f32(randn(B * S * d)), [B, S, d]);
  const r = tensor(f32(randn(B * S * d)), [B, S, d]);
  const loss = () => sumAll(mul(gsa.forward(h, x0, mask, { table }), r));
  await assertDirectionalGrads(gsa.namedParameters(), loss);
  for (const t of [h, x0, r, table]) t.dispose();
  disposeMask(mask);
  gsa.dispose();
});

/**
 * DESIGN §4's GSA in float64 on the block's weights: RMSNorm(concat(h, x0)) → q, k, v (2d → 2d),
 * H heads, 2D RoPE on q and k (text unrotated), attention under the level mask, o_proj 2d → d →
 * RMSNorm(d) → SwiGLU (down(silu(gate·x) ⊙ up·x)).
 */
async function gsaRef(
  gsa: GSA,
  h: Float64Array,
  x0: Float64Array,
  mask: AttentionMask,
  dims: { B: number; S: number; d: number; H: number },
) {
  const { B, S, d, H } = dims;
  const p = new Map<string, number[]>();
  for (const [name, t] of gsa.namedParameters()) p.set(name, await t.toArray());
  const w = (name: string) => p.get(name)!;
  const D = 2 * d, Dh = D / H;
  const linear = (wt: number[], rows: number, cols: number, v: ArrayLike<number>) =>
    Array.from({ length: rows }, (_, i) => {
      let s = 0;
      for (let j = 0; j < cols; j++) s += wt[i * cols + j] * v[j];
      return s;
    });
  const rms = (v: number[], weight: number[]) => {
    const r = 1 / Math.sqrt(v.reduce((a, x) => a + x * x, 0) / v.length + 1e-6);
    return v.map((x, i) => x * r * weight[i]);
  };
  const q = new Float64Array(B * S * D), k = new Float64Array(B * S * D);
  const v = new Float64Array(B * S * D);
  for (let b = 0; b < B; b++) {
    for (let s = 0; s < S; s++) {
      const at = (b * S + s) * d;
      const z = rms([...h.slice(at, at + d), ...x0.slice(at, at + d)], w("norm_in.weight"));
      q.set(linear(w("attn.q_proj.weight"), D, D, z), (b * S + s) * D);
      k.set(linear(w("attn.k_proj.weight"), D, D, z), (b * S + s) * D);
      v.set(linear(w("attn.v_proj.weight"), D, D, z), (b * S + s) * D);
    }
  }
  const coords = designCoords(scales, T);
  const shape = [B, S, H, Dh];
  const g = {
    B,
    sq: S,
    sk: S,
    H,
    Dh,
    qStart: 0,
    mask: { levels: mask.levels, keyLevels: mask.keyLevels, length: S },
  };
  const o = refAttention(g, [refRope(q, shape, coords), refRope(k, shape, coords), v]);
  const out = new Float64Array(B * S * d);
  for (let t = 0; t < B * S; t++) {
    const a = rms(linear(w("attn.o_proj.weight"), d, D, o.slice(t * D, (t + 1) * D)), [
      ...w("norm_mlp.weight"),
    ]);
    const gate = linear(w("mlp.gate_proj.weight"), 4 * d, d, a);
    const up = linear(w("mlp.up_proj.weight"), 4 * d, d, a);
    const hidden = gate.map((x, i) => (x / (1 + Math.exp(-x))) * up[i]);
    out.set(linear(w("mlp.down_proj.weight"), d, 4 * d, hidden), t * d);
  }
  return out;
}

Deno.test("GSA equals DESIGN §4's block in float64 (2D RoPE, level mask, PAD text)", async () => {
  await gpuReady;
  const [B, d, H] = [2, 16, 2];
  const gsa = new GSA(new Init(3), d, H);
  // RMSNorm weights start at 1: make them random so a skipped or misplaced norm shows.
  for (const norm of [gsa.normIn, gsa.normMlp]) {
    upload(norm.weight.buffer, Float32Array.from(randn(norm.weight.size), (x) => 1 + 0.3 * x));
  }
  const h = f32(randn(B * S * d)), x0 = f32(randn(B * S * d));
  const mask = blockCausalMask(scales, [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]);
  const table = rope2dTable(scales, T, (2 * d) / H);
  const got = await tidyAsync(async () =>
    await noGrad(() => gsa.forward(tensor(h, [B, S, d]), tensor(x0, [B, S, d]), mask, { table }))
      .toArray()
  );
  assertClose(got, await gsaRef(gsa, h, x0, mask, { B, S, d, H }), 1e-5, "GSA vs DESIGN §4");
  disposeMask(mask);
  table.dispose();
  gsa.dispose();
});

Deno.test("GSA: generation's one-token kernels equal DESIGN §4's block in float64, with gsa_out and the residual", async () => {
  await gpuReady;
  // Awkward sizes: d 40, 4 heads of 20, F 160 (gsa_in's 240 columns and gsa_mid's 160 end in
  // partial tiles). Scales 2 and 3 drawn token by token (ar 2); positions 0..15 by the cached
  // forward pass, then 16, 17, 18 (the last three of scale 3) one at a time, through call site 1.
  const [B, d, H, first] = [2, 40, 4, 16];
  const gsa = new GSA(new Init(7), d, H);
  for (const norm of [gsa.normIn, gsa.normMlp]) {
    upload(norm.weight.buffer, Float32Array.from(randn(norm.weight.size), (x) => 1 + 0.3 * x));
  }
  const h = f32(randn(B * S * d)), x0 = f32(randn(B * S * d));
  const outW = [0, 1].map(() => f32(randn(d * d).map((v) => v / Math.sqrt(d))));
  const mask = blockCausalMask(scales, [[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]], 2);
  const table = rope2dTable(scales, T, (2 * d) / H);
  const ref = await gsaRef(gsa, h, x0, mask, { B, S, d, H });
  const rows = (v: Float64Array, s: number, e: number) => {
    const out: number[] = [];
    for (let b = 0; b < B; b++) out.push(...v.slice((b * S + s) * d, (b * S + e) * d));
    return out;
  };
  const s = { d, H, dh: (2 * d) / H, F: 4 * d };
  const got: number[] = [], want: number[] = [];
  await tidyAsync(async () => {
    const cache = new KVCache(B, S, H, (2 * d) / H);
    noGrad(() =>
      gsa.forward(
        tensor(rows(h, 0, first), [B, first, d]),
        tensor(rows(x0, 0, first), [B, first, d]),
        mask,
        { table },
        cache,
      )
    );
    const packed = noGrad(() =>
      packGsaWeights({
        normIn: gsa.normIn.weight,
        q: gsa.attn.qProj.weight,
        k: gsa.attn.kProj.weight,
        v: gsa.attn.vProj.weight,
        o: gsa.attn.oProj.weight,
        normMlp: gsa.normMlp.weight,
        gate: gsa.mlp.gateProj.weight,
        up: gsa.mlp.upProj.weight,
        down: gsa.mlp.downProj.weight,
        outs: outW.map((w) => tensor(w, [d, d])),
      }, s)
    );
    for (let t = first; t < S; t++) {
      const ht = tensor(rows(h, t, t + 1), [B, 1, d]);
      const before = recorderStats.dispatches;
      const u = noGrad(() => {
        const q = gsaStepIn(
          ht,
          tensor(rows(x0, t, t + 1), [B, 1, d]),
          packed,
          s,
          table,
          t,
          cache,
          1e-6,
        );
        return gsaStepOut(attendCached(q, cache, mask), ht, packed, 1, s, 1e-6);
      });
      // gsa_in, the attention and gsa_mid + gsa_out: the attention's own count aside, 3 kernels.
      const n = recorderStats.dispatches - before;
      assert(n <= 5, `position ${t}: ${n} dispatches`);
      got.push(...await u.toArray());
      const hr = rows(h, t, t + 1), g = rows(ref, t, t + 1);
      for (let b = 0; b < B; b++) {
        for (let i = 0; i < d; i++) {
          let acc = hr[b * d + i];
          for (let k = 0; k < d; k++) acc += outW[1][i * d + k] * g[b * d + k];
          want.push(acc);
        }
      }
    }
    assert(cache.length === S, `cache length ${cache.length}, want ${S}`);
    cache.dispose();
  });
  assertClose(got, want, 1e-5, "GSA one-token kernels vs DESIGN §4");
  disposeMask(mask);
  table.dispose();
  gsa.dispose();
});
