import { causalConv1d } from "../lib/tensor/conv1d.ts";
import { silu } from "../lib/tensor/ops.ts";
import { noGrad, parameter, tensor, tidyAsync } from "../lib/tensor/tensor.ts";
import {
  assertClose,
  assertCloseToMass,
  assertThrows,
  f32,
  gpuReady,
  numericGrads,
  randn,
  runWithGrads,
} from "./helpers.ts";

/** Sequential float64 reference over x [B, L, D], w [D, K], with an optional state [B, K-1, D]. */
function convRef(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  bias: ArrayLike<number>,
  dims: { b: number; l: number; d: number; k: number },
  state?: ArrayLike<number>,
) {
  const { b, l, d, k } = dims;
  const y = new Float64Array(b * l * d);
  const at = (bi: number, t: number, di: number) =>
    t >= 0 ? x[(bi * l + t) * d + di] : state ? state[(bi * (k - 1) + k - 1 + t) * d + di] : 0;
  for (let bi = 0; bi < b; bi++) {
    for (let t = 0; t < l; t++) {
      for (let di = 0; di < d; di++) {
        let s = bias[di];
        for (let j = 0; j < k; j++) s += w[di * k + j] * at(bi, t - (k - 1) + j, di);
        y[(bi * l + t) * d + di] = s;
      }
    }
  }
  return y;
}

Deno.test("causal conv1d forward and every gradient match float64 references", async () => {
  await gpuReady;
  for (const [b, l, d] of [[1, 1, 3], [2, 7, 5], [1, 130, 9], [1, 808, 2], [1, 2100, 1]]) {
    const k = 4;
    const dims = { b, l, d, k };
    const x = f32(randn(b * l * d));
    const w = f32(randn(d * k));
    const bias = f32(randn(d));
    const r = f32(randn(b * l * d));
    const { out, grads } = await runWithGrads(
      ([xt, wt, bt]) => causalConv1d(xt, wt, bt).y,
      [{ data: x, shape: [b, l, d] }, { data: w, shape: [d, k] }, { data: bias, shape: [d] }],
      r,
    );
    assertClose(out, convRef(x, w, bias, dims), 1e-6, `conv1d [${b}, ${l}, ${d}]`);
    // The op is linear in each input, so central differences are exact up to rounding.
    const g = numericGrads(
      ([a, bw, bb]) => convRef(a, bw, bb, dims),
      [x, w, bias].map((v) => v.slice()),
      r,
      1e-3,
    );
    // Each gradient is a sum over positions; the same sums over absolute values bound f32's
    // rounding where random signs cancel one to near zero.
    const abs = (v: Float64Array) => v.map(Math.abs);
    const mass = numericGrads(
      ([a, bw, bb]) => convRef(a, bw, bb, dims),
      [x, w, bias].map(abs),
      abs(r),
      1e-3,
    );
    ["dx", "dw", "dbias"].forEach((name, i) =>
      assertCloseToMass(grads[i]!, g[i], mass[i], 1e-5, `${name} [${b}, ${l}, ${d}]`)
    );
  }
});

Deno.test("conv1d in pieces with the carried state equals one full pass", async () => {
  await gpuReady;
  const [b, l, d, k] = [2, 37, 6, 4];
  const x = f32(randn(b * l * d));
  const w = f32(randn(d * k));
  const bias = f32(randn(d));
  const want = convRef(x, w, bias, { b, l, d, k });
  await tidyAsync(async () => {
    const wt = tensor(w, [d, k]);
    const bt = tensor(bias, [d]);
    const got = new Float64Array(want.length);
    let state;
    const cuts = [0, 1, 2, 10, 37];
    for (let c = 0; c + 1 < cuts.length; c++) {
      const [s, e] = [cuts[c], cuts[c + 1]];
      const piece: number[] = [];
      for (let bi = 0; bi < b; bi++) piece.push(...x.slice((bi * l + s) * d, (bi * l + e) * d));
      const r = causalConv1d(tensor(piece, [b, e - s, d]), wt, bt, state);
      state = r.state;
      const ys = await r.y.toArray();
      for (let bi = 0; bi < b; bi++) {
        got.set(ys.slice(bi * (e - s) * d, (bi + 1) * (e - s) * d), (bi * l + s) * d);
      }
    }
    assertClose(got, want, 1e-6, "conv1d pieces");
  });
});

Deno.test("conv1d's generation options: silu on y, x read as the first D channels of wider rows", async () => {
  await gpuReady;
  const sig = (v: number) => 1 / (1 + Math.exp(-v));
  for (const [b, l, d, k, extra] of [[2, 5, 37, 4, 37], [1, 1, 3, 4, 5], [3, 7, 6, 3, 0]]) {
    const s = d + extra;
    const wide = f32(randn(b * l * s, undefined, 4));
    const state = f32(randn(b * (k - 1) * d));
    // x: the first d channels of each row of `wide`.
    const x = new Float64Array(b * l * d);
    for (let r = 0; r < b * l; r++) x.set(wide.subarray(r * s, r * s + d), r * d);
    const w = f32(randn(d * k));
    const bias = f32(randn(d));
    const conv = convRef(x, w, bias, { b, l, d, k }, state);
    const what = `[${b}, ${l}, ${d}] of ${s}, K ${k}`;
    // The next state: the last K−1 rows of [state; x].
    const nextRef = new Float64Array(b * (k - 1) * d);
    for (let bi = 0; bi < b; bi++) {
      for (let j = 0; j < k - 1; j++) {
        const t = l - (k - 1) + j;
        for (let c = 0; c < d; c++) {
          nextRef[(bi * (k - 1) + j) * d + c] = t >= 0
            ? x[(bi * l + t) * d + c]
            : state[(bi * (k - 1) + k - 1 + t) * d + c];
        }
      }
    }
    await tidyAsync(async () => {
      const [wt, bt, st] = [tensor(w, [d, k]), tensor(bias, [d]), tensor(state, [b, k - 1, d])];
      const xt = tensor(wide, [b, l, s]);
      for (const silu of [false, true]) {
        const r = noGrad(() => causalConv1d(xt, wt, bt, st, { silu, prefix: true }));
        const want = silu ? conv.map((v) => v * sig(v)) : conv;
        assertClose(await r.y.toArray(), want, 1e-6, `conv1d silu ${silu} ${what}`);
        assertClose(await r.state.toArray(), nextRef, 0, `conv1d next state ${what}`);
      }
      // Fused silu equals the silu op on the plain conv's output, to f32 rounding.
      const plain = tensor(x, [b, l, d]);
      const fused = await noGrad(() => causalConv1d(plain, wt, bt, st, { silu: true }).y).toArray();
      const composed = await silu(causalConv1d(plain, wt, bt, st).y).toArray();
      assertClose(fused, composed, 2e-7, `conv1d fused silu vs silu op ${what}`);
    });
  }
});

Deno.test("conv1d refuses its generation options where a backward would be recorded", async () => {
  await gpuReady;
  await tidyAsync(async () => {
    const w = parameter(new Array(8).fill(0.5), [2, 4]);
    const bias = tensor([0, 0], [2]);
    const x = tensor(new Array(12).fill(1), [1, 3, 4]);
    for (const opts of [{ silu: true }, { prefix: true }]) {
      assertThrows(
        () => causalConv1d(x.reshape([1, 6, 2]), w, bias, undefined, opts),
        /causalConv1d: the silu and prefix options have no backward/,
        JSON.stringify(opts),
      );
    }
    // Without the prefix option, a wider x is a shape error, as before.
    assertThrows(() => causalConv1d(x, w, bias), /causalConv1d: shapes disagree/, "wide x");
    w.dispose();
    await Promise.resolve();
  });
});

Deno.test("conv1d refuses disagreeing shapes", async () => {
  await gpuReady;
  await tidyAsync(async () => {
    const x = tensor(new Array(12).fill(0), [1, 3, 4]);
    assertThrows(
      () => causalConv1d(x, tensor(new Array(12).fill(0), [3, 4]), tensor([0, 0, 0, 0], [4])),
      /causalConv1d: shapes disagree/,
      "weight",
    );
    await Promise.resolve();
  });
});
