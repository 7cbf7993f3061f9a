import {
  groupCount,
  groupNorm,
  setGroupNormBackward,
  setGroupNormStats,
} from "../lib/tensor/group_norm.ts";
import { tensor, tidyAsync } from "../lib/tensor/tensor.ts";
import {
  assert,
  assertClose,
  assertThrows,
  f32,
  gpuReady,
  numericGrads,
  randn,
  runWithGrads,
} from "./helpers.ts";

/** float64 mean and 1/√(var + eps) (biased, two passes) of x[at, at + n). */
function groupStatsRef(x: ArrayLike<number>, at: number, n: number, eps: number) {
  let mean = 0, v = 0;
  for (let i = 0; i < n; i++) mean += x[at + i];
  mean /= n;
  for (let i = 0; i < n; i++) v += (x[at + i] - mean) ** 2;
  return { mean, rstd: 1 / Math.sqrt(v / n + eps) };
}

/** float64 F.group_norm over x [B, C, ...] with n = C/G · HW per group. */
function groupNormRef(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  b: ArrayLike<number>,
  shape: number[],
  G: number,
  silu = false,
  eps = 1e-6,
) {
  const [B, C] = shape;
  const HW = shape.slice(2).reduce((a, v) => a * v, 1);
  const n = (C / G) * HW;
  const y = new Float64Array(x.length);
  for (let bg = 0; bg < B * G; bg++) {
    const { mean, rstd } = groupStatsRef(x, bg * n, n, eps);
    for (let i = 0; i < n; i++) {
      const c = (bg % G) * (C / G) + Math.floor(i / HW);
      const v = (x[bg * n + i] - mean) * rstd * w[c] + b[c];
      y[bg * n + i] = silu ? v / (1 + Math.exp(-v)) : v;
    }
  }
  return y;
}

/** float64 gradients of groupNormRef for the output gradient r: dx, dweight, dbias. */
function groupNormGradRef(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  b: ArrayLike<number>,
  shape: number[],
  G: number,
  r: ArrayLike<number>,
  silu = false,
  eps = 1e-6,
) {
  const [B, C] = shape;
  const HW = shape.slice(2).reduce((a, v) => a * v, 1);
  const n = (C / G) * HW;
  const dx = new Float64Array(x.length), dw = new Float64Array(C), db = new Float64Array(C);
  for (let bg = 0; bg < B * G; bg++) {
    const { mean, rstd } = groupStatsRef(x, bg * n, n, eps);
    const xhat = new Float64Array(n), dyw = new Float64Array(n);
    let m1 = 0, m2 = 0;
    for (let i = 0; i < n; i++) {
      const c = (bg % G) * (C / G) + Math.floor(i / HW);
      xhat[i] = (x[bg * n + i] - mean) * rstd;
      const y = xhat[i] * w[c] + b[c], s = 1 / (1 + Math.exp(-y));
      const g = silu ? r[bg * n + i] * s * (1 + y * (1 - s)) : r[bg * n + i];
      dw[c] += g * xhat[i];
      db[c] += g;
      dyw[i] = g * w[c];
      m1 += dyw[i] / n;
      m2 += dyw[i] * xhat[i] / n;
    }
    for (let i = 0; i < n; i++) dx[bg * n + i] = rstd * (dyw[i] - m1 - xhat[i] * m2);
  }
  return { dx, dw, db };
}

Deno.test("groupNorm's statistics and backward passes (one pass each, and the first) match float64", async () => {
  // Every case against the analytic float64 gradients, through both generations of the
  // statistics and of the backward pass: batch
  // 3, odd channel counts, H ≠ W, planes of 4n pixels (vec4 loads) and not, many planes a
  // workgroup (the last one part empty) and one, one channel a group and many, with and without
  // SiLU.
  await gpuReady;
  const cases: [number[], number, boolean, number?][] = [
    [[3, 6, 5, 3], 3, false],
    // A large mean: one-pass sums about 0 would lose most digits here.
    [[3, 5, 7, 6], 5, true, 100],
    [[2, 4, 9, 9], 2, false, 100],
    [[3, 6, 5, 3], 3, true],
    [[3, 15, 4, 6], 5, true],
    [[3, 7, 9, 7], 7, false],
    [[2, 12, 17, 19], 4, true],
    [[3, 64, 8, 4], 32, true],
    [[1, 5, 3], 1, false],
    [[1, 2, 48, 48], 1, true], // 576 vec4s a plane: a workgroup each, several loads a thread
  ];
  const combos = [[2, 2], [2, 1], [1, 2], [1, 1]] as const;
  for (const [stats, gen] of combos) {
    const previous = setGroupNormBackward(gen), previousStats = setGroupNormStats(stats);
    try {
      for (const [shape, G, silu, offset = 0.5] of cases) {
        const C = shape[1];
        const x = f32(randn(shape.reduce((a, b) => a * b)).map((v) => v + offset));
        const w = f32(randn(C)), b = f32(randn(C));
        const r = f32(randn(x.length));
        const what = `stats ${stats}, backward ${gen}: groupNorm${
          silu ? "+silu" : ""
        } [${shape}] G ${G} offset ${offset}`;
        // With a mean of 100, f32 holds x − mean to ~6e-6 (see the test below).
        const tol = offset > 1 ? 1e-4 : 1e-5;
        const { out, grads } = await runWithGrads(
          ([xt, wt, bt]) => groupNorm(xt, wt, bt, G, { silu }),
          [{ data: x, shape }, { data: w, shape: [C] }, { data: b, shape: [C] }],
          r,
        );
        assertClose(out, groupNormRef(x, w, b, shape, G, silu), tol, `${what} y`);
        const ref = groupNormGradRef(x, w, b, shape, G, r, silu);
        assertClose(grads[0]!, ref.dx, 2 * tol, `${what} dx`);
        assertClose(grads[1]!, ref.dw, tol, `${what} dweight`);
        assertClose(grads[2]!, ref.db, tol, `${what} dbias`);
      }
    } finally {
      setGroupNormBackward(previous);
      setGroupNormStats(previousStats);
    }
  }
});

Deno.test("the analytic groupNorm gradient reference agrees with central differences", () => {
  for (const silu of [false, true]) {
    const shape = [2, 4, 3, 2], G = 2;
    const x = randn(48), w = randn(4), b = randn(4), r = randn(48);
    const ref = groupNormGradRef(x, w, b, shape, G, r, silu);
    const num = numericGrads(
      ([xs, ws, bs]) => groupNormRef(xs, ws, bs, shape, G, silu),
      [x, w, b],
      r,
      1e-5,
    );
    assertClose(ref.dx, num[0], 1e-7, `silu ${silu} dx`);
    assertClose(ref.dw, num[1], 1e-7, `silu ${silu} dweight`);
    assertClose(ref.db, num[2], 1e-7, `silu ${silu} dbias`);
  }
});

Deno.test("groupNorm forward and gradients match float64 references", async () => {
  await gpuReady;
  const cases: [number[], number, number, boolean][] = [
    [[2, 6, 5, 3], 3, 0, false],
    [[2, 6, 5, 3], 3, 0, true],
    [[1, 64, 4, 4], 32, 0, false],
    [[3, 4, 7], 2, 0, true],
    [[2, 12, 3, 5], groupCount(12), 0, false],
    [[1, 8, 33, 31], 2, 0, true],
    // A large mean: a one-pass E[x²] − E[x]² would lose most digits here.
    [[2, 4, 9, 9], 2, 100, false],
    [[2, 4, 9, 9], 2, 100, true],
  ];
  for (const [shape, G, offset, silu] of cases) {
    const C = shape[1];
    const x = f32(randn(shape.reduce((a, b) => a * b)).map((v) => v + offset));
    const w = f32(randn(C)), b = f32(randn(C));
    const r = f32(randn(x.length));
    const what = `groupNorm${silu ? "+silu" : ""} [${shape}] G ${G}`;
    const { out, grads } = await runWithGrads(
      ([xt, wt, bt]) => groupNorm(xt, wt, bt, G, { silu }),
      [{ data: x, shape }, { data: w, shape: [C] }, { data: b, shape: [C] }],
      r,
    );
    assertClose(out, groupNormRef(x, w, b, shape, G, silu), 1e-5, `${what} y`);
    if (x.length > 5000) continue; // central differences cost O(n²)
    const num = numericGrads(
      ([xs, ws, bs]) => groupNormRef(xs, ws, bs, shape, G, silu),
      [x.slice(), w.slice(), b.slice()],
      r,
      1e-4,
    );
    // With a mean of 100, f32 holds x − mean to ~6e-6 (100·2⁻²⁴): every x̂ of a group moves by
    // about that much, which shifts the sums below by more than 1e-5 when they cancel.
    assertClose(grads[0]!, num[0], offset ? 1e-4 : 2e-5, `${what} dx`);
    assertClose(grads[1]!, num[1], offset ? 1e-4 : 1e-5, `${what} dweight`);
    assertClose(grads[2]!, num[2], offset ? 1e-4 : 1e-5, `${what} dbias`);
  }
});

Deno.test("groupCount: 32 groups, else the largest divisor not above 32", () => {
  const want: [number, number][] = [
    [32, 32],
    [64, 32],
    [512, 32],
    [16, 16],
    [3, 3],
    [1, 1],
    [48, 24],
    [31, 31],
    [66, 22],
  ];
  for (const [c, g] of want) assert(groupCount(c) === g, `groupCount(${c}) = ${groupCount(c)}`);
});

Deno.test("groupCount with a limit: the largest divisor not above it", () => {
  const want: [number, number, number][] = [
    [16, 4, 4],
    [32, 4, 4],
    [16, 8, 8],
    [24, 5, 4],
    [16, 1, 1],
    [3, 4, 3],
    [64, 32, 32],
  ];
  for (const [c, max, g] of want) {
    assert(groupCount(c, max) === g, `groupCount(${c}, ${max}) = ${groupCount(c, max)}`);
  }
});

Deno.test("groupNorm refuses shapes that disagree, naming the op and the shapes", async () => {
  await gpuReady;
  await tidyAsync(async () => {
    const x = tensor(new Float32Array(2 * 6 * 4), [2, 6, 4]);
    const v = (n: number) => tensor(new Float32Array(n), [n]);
    assertThrows(
      () => groupNorm(x, v(6), v(6), 4),
      /groupNorm: 6 channels do not split into 4 groups \(x \[2, 6, 4\]/,
      "groups",
    );
    assertThrows(
      () => groupNorm(x, v(5), v(6), 3),
      /groupNorm: weight and bias must be \[6\]/,
      "w",
    );
    await Promise.resolve();
  });
});
