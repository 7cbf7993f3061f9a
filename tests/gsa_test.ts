// The GSA block (DESIGN §4) as a whole: generation's KV-cache path equals the full pass, PAD text
// changes nothing, and every parameter's gradient agrees with a directional difference.
import { GSA } from "../lib/nn/attention.ts";
import { Init } from "../lib/nn/module.ts";
import { blockCausalMask, disposeMask, KVCache, rope2dTable } from "../lib/tensor/attention.ts";
import { mul, slice, sumAll } from "../lib/tensor/ops.ts";
import { noGrad, tensor, tidyAsync } from "../lib/tensor/tensor.ts";
import { assertClose, assertDirectionalGrads, f32, gpuReady, randn } from "./helpers.ts";

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
