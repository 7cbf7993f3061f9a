import { codeUsage, lookupCodes, nearestCode } from "../lib/tensor/vq.ts";
import { tensor, tidyAsync } from "../lib/tensor/tensor.ts";
import {
  assert,
  assertClose,
  assertThrows,
  f32,
  freshSeed,
  gpuReady,
  randn,
  rng,
  runWithGrads,
} from "./helpers.ts";
import { nearestRef } from "./image_ref.ts";

/** Readers of vector n, channel c for [N, C] and NCHW layouts. */
const rows = (z: ArrayLike<number>, C: number) => (n: number, c: number) => z[n * C + c];
const nchw = (z: ArrayLike<number>, C: number, HW: number) => (n: number, c: number) =>
  z[(Math.floor(n / HW) * C + c) * HW + (n % HW)];

/** Values k/4 for small integers k: every distance is exact in f32, so ties are real ties. */
function dyadic(n: number, r: () => number, span = 3) {
  return Float64Array.from({ length: n }, () => Math.floor(r() * (2 * span + 1) - span) / 4);
}

Deno.test("nearestCode equals the float64 argmin exactly, ties to the lowest index", async () => {
  await gpuReady;
  const r = rng(freshSeed());
  for (const [N, C, V] of [[133, 5, 1000], [64, 16, 64], [7, 21, 130], [300, 3, 50]]) {
    // Few distinct values: many codes coincide, across threads and codebook tiles.
    const e = dyadic(V * C, r, 1);
    const z = dyadic(N * C, r);
    const got = await tidyAsync(() => nearestCode(tensor(z, [N, C]), tensor(e, [V, C])).toArray());
    const { idx } = nearestRef(rows(z, C), e, N, C);
    for (let n = 0; n < N; n++) {
      assert(got[n] === idx[n], `[${N}, ${C}] × ${V}: vector ${n} got ${got[n]}, want ${idx[n]}`);
    }
  }
  // NCHW input, and a codebook of identical codes (all ties: index 0).
  const [B, C, H, W, V] = [2, 6, 7, 9, 200];
  const z = dyadic(B * C * H * W, r);
  const e = dyadic(V * C, r, 1);
  const same = new Float64Array(V * C).fill(0.5);
  const [got, zeros] = await tidyAsync(async () => {
    const zt = tensor(z, [B, C, H, W]);
    const idx = nearestCode(zt, tensor(e, [V, C]));
    assert(idx.shape.join() === [B, H, W].join() && idx.dtype === "i32", `shape ${idx}`);
    return [await idx.toArray(), await nearestCode(zt, tensor(same, [V, C])).toArray()];
  });
  const { idx } = nearestRef(nchw(z, C, H * W), e, B * H * W, C);
  assert(got.every((v, n) => v === idx[n]), "NCHW indices differ from the reference");
  assert(zeros.every((v) => v === 0), "identical codes must all give index 0");
});

Deno.test("nearestCode over 16384 codes of 64 channels picks the nearest (random inputs)", async () => {
  await gpuReady;
  const [N, C, V] = [70, 64, 16384];
  const e = f32(randn(V * C));
  const z = f32(randn(N * C));
  const got = await tidyAsync(() => nearestCode(tensor(z, [N, C]), tensor(e, [V, C])).toArray());
  const { idx, best } = nearestRef(rows(z, C), e, N, C);
  for (let n = 0; n < N; n++) {
    if (got[n] === idx[n]) continue;
    // f32 sums may only disagree where two codes are within rounding of each other.
    let d = 0;
    for (let c = 0; c < C; c++) d += (z[n * C + c] - e[got[n] * C + c]) ** 2;
    assert(
      d <= best[n] * (1 + 1e-5),
      `vector ${n}: got ${got[n]} at ${d}, best ${idx[n]} at ${best[n]}`,
    );
  }
});

Deno.test("lookupCodes gathers rows in both layouts; its gradient sums into the codebook", async () => {
  await gpuReady;
  const r = rng(freshSeed());
  for (const [shape, V, C] of [[[300], 37, 5], [[2, 5, 3], 9, 64], [[3, 4, 4], 1000, 3]] as const) {
    const N = shape.reduce((a: number, b: number) => a * b, 1);
    const HW = shape.length === 3 ? shape[1] * shape[2] : 0;
    const e = f32(randn(V * C));
    const idx = Int32Array.from({ length: N }, () => Math.floor(r() * V));
    const outShape = HW ? [shape[0], C, shape[1], shape[2]] : [N, C];
    const g = f32(randn(N * C));
    const { out, grads } = await runWithGrads(
      ([et, it]) => lookupCodes(et, it),
      [{ data: e, shape: [V, C] }, { data: idx, shape: [...shape], dtype: "i32", grad: false }],
      g,
    );
    const at = (n: number, c: number) =>
      HW ? (Math.floor(n / HW) * C + c) * HW + (n % HW) : n * C + c;
    const want = new Float64Array(N * C), de = new Float64Array(V * C);
    for (let n = 0; n < N; n++) {
      for (let c = 0; c < C; c++) {
        want[at(n, c)] = e[idx[n] * C + c];
        de[idx[n] * C + c] += g[at(n, c)];
      }
    }
    assertClose(out, want, 0, `lookup [${outShape}]`);
    assertClose(grads[0]!, de, 1e-6, `lookup [${outShape}] dcodebook`);
  }
});

Deno.test("codeUsage is the histogram of the indices", async () => {
  await gpuReady;
  const r = rng(freshSeed());
  const V = 77;
  const idx = Int32Array.from({ length: 5000 }, () => Math.floor(r() * r() * V));
  const got = await tidyAsync(() => codeUsage(tensor(idx, [50, 100], "i32"), V).toArray());
  const want = new Array(V).fill(0);
  for (const v of idx) want[v]++;
  assert(got.every((c, v) => c === want[v]) && got.length === V, `counts ${got} vs ${want}`);
});

Deno.test("VQ ops refuse shapes that disagree, naming the op and the shapes", async () => {
  await gpuReady;
  await tidyAsync(async () => {
    const e = tensor(new Float32Array(40), [10, 4]);
    const z = tensor(new Float32Array(15), [5, 3]);
    assertThrows(
      () => nearestCode(z, e),
      /nearestCode: needs f32 z \[N, 4\] .*z \[5, 3\], codebook \[10, 4\]/,
      "channels",
    );
    assertThrows(() => lookupCodes(e, z), /lookupCodes: needs i32 indices/, "dtype");
    assertThrows(() => codeUsage(tensor([1, 2], [2], "i32"), 0), /codeUsage: needs/, "V");
    await Promise.resolve();
  });
});
