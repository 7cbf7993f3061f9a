// The Mamba block as a whole: carried state, PAD transparency, and gradients of every parameter.
import { Mamba, type MambaCache } from "../lib/nn/mamba.ts";
import { Init } from "../lib/nn/module.ts";
import { mul, slice, sumAll } from "../lib/tensor/ops.ts";
import { noGrad, tensor, tidyAsync } from "../lib/tensor/tensor.ts";
import { assertClose, assertDirectionalGrads, f32, gpuReady, randn } from "./helpers.ts";

Deno.test("Mamba block: running in pieces with the carried cache equals one full pass", async () => {
  await gpuReady;
  const [b, l, d] = [2, 41, 24];
  const block = new Mamba(new Init(1), { dModel: d });
  const x = f32(randn(b * l * d));
  await tidyAsync(async () => {
    const want = await noGrad(() => block.forward(tensor(x, [b, l, d])).y).toArray();
    const got = new Float64Array(want.length);
    let cache: MambaCache | undefined;
    const cuts = [0, 1, 5, 21, 41];
    for (let c = 0; c + 1 < cuts.length; c++) {
      const [s, e] = [cuts[c], cuts[c + 1]];
      const piece: number[] = [];
      for (let bi = 0; bi < b; bi++) piece.push(...x.slice((bi * l + s) * d, (bi * l + e) * d));
      const r = noGrad(() => block.forward(tensor(piece, [b, e - s, d]), undefined, cache));
      cache = r.cache;
      const ys = await r.y.toArray();
      for (let bi = 0; bi < b; bi++) {
        got.set(ys.slice(bi * (e - s) * d, (bi + 1) * (e - s) * d), (bi * l + s) * d);
      }
    }
    assertClose(got, want, 1e-5, "Mamba pieces vs full pass");
  });
  block.dispose();
});

Deno.test("Mamba block: left PAD positions change nothing at the real tokens", async () => {
  await gpuReady;
  const [l, pad, d] = [13, 5, 16];
  const block = new Mamba(new Init(2), { dModel: d });
  const real = f32(randn(l * d));
  const junk = f32(randn(pad * d, undefined, 10));
  await tidyAsync(async () => {
    const alone = await noGrad(() => block.forward(tensor(real, [1, l, d])).y).toArray();
    const mask = tensor([...new Array(pad).fill(0), ...new Array(l).fill(1)], [1, pad + l, 1]);
    const padded = noGrad(() =>
      slice(block.forward(tensor([...junk, ...real], [1, pad + l, d]), mask).y, 1, pad, pad + l)
    );
    assertClose(await padded.toArray(), alone, 1e-5, "padded vs unpadded");
  });
  block.dispose();
});

Deno.test("Mamba block: every parameter's gradient agrees with a directional difference", async () => {
  await gpuReady;
  const [b, l, d] = [2, 19, 16];
  const block = new Mamba(new Init(3), { dModel: d });
  const x = tensor(f32(randn(b * l * d)), [b, l, d]);
  const r = tensor(f32(randn(b * l * d)), [b, l, d]);
  const loss = () => sumAll(mul(block.forward(x).y, r));
  await assertDirectionalGrads(block.namedParameters(), loss, { eps: 1e-2 });
  block.dispose();
  x.dispose();
  r.dispose();
});
