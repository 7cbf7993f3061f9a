// RMSNorm, LayerNorm, softmax, log-softmax, softmax cross-entropy and embedding against float64
// references on fresh random inputs of awkward sizes; gradients against central differences of the
// reference (or, for embedding's scatter-add, its exact float64 sum).
import { compileErrors, recorderStats } from "../lib/gpu/mod.ts";
import normWgsl from "../kernels/norm.wgsl" with { type: "text" };
import softmaxWgsl from "../kernels/softmax.wgsl" with { type: "text" };
import crossEntropyWgsl from "../kernels/cross_entropy.wgsl" with { type: "text" };
import embeddingWgsl from "../kernels/embedding.wgsl" with { type: "text" };
import {
  addRmsNorm,
  embedding,
  layerNorm,
  logSoftmax,
  NORM_EPS,
  type NormKernels,
  rmsNorm,
  setNormKernels,
  softmax,
  softmaxCrossEntropy,
  tokenNll,
} from "../lib/tensor/nn_ops.ts";
import { add } from "../lib/tensor/ops.ts";
import { noGrad, type Tensor, tensor, tidy, tidyAsync } from "../lib/tensor/tensor.ts";
import {
  assert,
  assertClose,
  assertCloseToMass,
  assertThrows,
  f32,
  freshSeed,
  gpuReady,
  numericGrads,
  randn,
  rng,
  runWithGrads,
} from "./helpers.ts";

const prod = (s: number[]) => s.reduce((a, b) => a * b, 1);

// ---------------------------------------------------------------------------------------------
// float64 references

/** RMSNorm (no bias) or LayerNorm (bias) of each row of x [rows, d]. */
function normRef(
  x: Float64Array,
  w: Float64Array,
  b: Float64Array | null,
  d: number,
): Float64Array {
  const y = new Float64Array(x.length);
  for (let base = 0; base < x.length; base += d) {
    let mean = 0;
    if (b) {
      for (let j = 0; j < d; j++) mean += x[base + j];
      mean /= d;
    }
    let ss = 0;
    for (let j = 0; j < d; j++) ss += (x[base + j] - mean) ** 2;
    const rstd = 1 / Math.sqrt(ss / d + NORM_EPS);
    for (let j = 0; j < d; j++) {
      y[base + j] = (x[base + j] - mean) * rstd * w[j] + (b ? b[j] : 0);
    }
  }
  return y;
}

function softmaxRef(x: Float64Array, d: number, logSpace: boolean): Float64Array {
  const y = new Float64Array(x.length);
  for (let base = 0; base < x.length; base += d) {
    const row = x.subarray(base, base + d);
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
    for (let j = 0; j < d; j++) y[base + j] = logSpace ? row[j] - lse : Math.exp(row[j] - lse);
  }
  return y;
}

/** PyTorch's cross_entropy(reduction="mean"), except 0 (not NaN) when every row is ignored. */
function crossEntropyRef(
  logits: Float64Array,
  targets: number[],
  v: number,
  ignoreIndex: number,
  smoothing: number,
): Float64Array {
  const logp = softmaxRef(logits, v, true);
  let total = 0, count = 0;
  targets.forEach((t, i) => {
    if (t === ignoreIndex || t < 0 || t >= v) return;
    const row = logp.subarray(i * v, (i + 1) * v);
    const meanNll = -row.reduce((s, x) => s + x, 0) / v;
    total += (1 - smoothing) * -row[t] + smoothing * meanNll;
    count++;
  });
  return Float64Array.of(count > 0 ? total / count : 0);
}

/** The analytic gradient of crossEntropyRef, dloss·(softmax - smoothed one-hot)/count. */
function crossEntropyGradRef(
  logits: Float64Array,
  targets: number[],
  v: number,
  ignoreIndex: number,
  smoothing: number,
  dloss: number,
): Float64Array {
  const p = softmaxRef(logits, v, false);
  const counted = (t: number) => t !== ignoreIndex && t >= 0 && t < v;
  const count = targets.filter(counted).length;
  const g = new Float64Array(logits.length);
  targets.forEach((t, i) => {
    if (!counted(t)) return;
    for (let c = 0; c < v; c++) {
      const target = (1 - smoothing) * (c === t ? 1 : 0) + smoothing / v;
      g[i * v + c] = (dloss / count) * (p[i * v + c] - target);
    }
  });
  return g;
}

function embeddingRef(w: ArrayLike<number>, ids: number[], v: number, d: number): Float64Array {
  const out = new Float64Array(ids.length * d);
  ids.forEach((id, i) => {
    if (id < 0 || id >= v) return;
    for (let j = 0; j < d; j++) out[i * d + j] = w[id * d + j];
  });
  return out;
}

function embeddingGradRef(dy: ArrayLike<number>, ids: number[], v: number, d: number) {
  const dw = new Float64Array(v * d);
  ids.forEach((id, i) => {
    if (id < 0 || id >= v) return;
    for (let j = 0; j < d; j++) dw[id * d + j] += dy[i * d + j];
  });
  return dw;
}

function randomInts(n: number, lo: number, hi: number, seed = freshSeed()): number[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => lo + Math.floor(r() * (hi - lo)));
}

/** ‖got - ref‖ / ‖scale‖: for gradients that are a small difference of larger f32 terms. */
function assertCloseTo(
  got: number[],
  ref: ArrayLike<number>,
  scale: number,
  tol: number,
  what: string,
) {
  let num = 0;
  for (let i = 0; i < ref.length; i++) num += (got[i] - ref[i]) ** 2;
  const e = Math.sqrt(num) / scale;
  if (!(e <= tol)) throw new Error(`${what}: error ${e.toExponential(2)} of scale > ${tol}`);
}

// A pipeline that fails to compile only reports to the device's error scope, so a bad kernel would
// otherwise show up as wrong numbers.
Deno.test("nn kernels compile on this adapter", async () => {
  await gpuReady;
  const kernels = { normWgsl, softmaxWgsl, crossEntropyWgsl, embeddingWgsl };
  for (const [name, code] of Object.entries(kernels)) {
    const errors = await compileErrors(code);
    assert(errors.length === 0, `${name}: ${errors.join("\n")}`);
  }
});

// ---------------------------------------------------------------------------------------------
// Norms

const NORM_SHAPES = [[5, 1], [5, 7], [70, 7], [3, 11, 257], [2, 1030]];

Deno.test("rmsNorm and layerNorm match float64, forward and backward, a row a workgroup or an invocation", async () => {
  await gpuReady;
  for (const kernels of ["workgroup", "rows"] as const) {
    const previous = setNormKernels(kernels);
    try {
      await checkNorms(kernels);
    } finally {
      setNormKernels(previous);
    }
  }
});

async function checkNorms(kernels: NormKernels) {
  for (const centered of [false, true]) {
    const name = `${centered ? "layerNorm" : "rmsNorm"} (${kernels})`;
    for (const shape of NORM_SHAPES) {
      const d = shape.at(-1)!, n = prod(shape);
      // An offset mean tests LayerNorm's centring; RMSNorm sees it as signal.
      const x = f32(randn(n).map((v) => v + 2));
      const w = f32(randn(d));
      const b = f32(randn(d));
      const r = f32(randn(n));
      const inputs = [{ data: x, shape }, { data: w, shape: [d] }];
      if (centered) inputs.push({ data: b, shape: [d] });
      const { out, grads } = await runWithGrads(
        (ts) => centered ? layerNorm(ts[0], ts[1], ts[2]) : rmsNorm(ts[0], ts[1]),
        inputs,
        r,
      );
      const ref = (xs: Float64Array[]) => normRef(xs[0], xs[1], centered ? xs[2] : null, d);
      const where = `${name} [${shape}]`;
      assertClose(out, ref([x, w, b]), 1e-5, `${where} forward`);
      const g = numericGrads(ref, centered ? [x, w, b] : [x, w], r);
      if (d === 1) {
        // dx = rstd·(dy·w - x̂·dy·w·x̂ [- dy·w]): for one element the terms cancel to ≈ 0 (LayerNorm:
        // exactly, RMSNorm: ≈ eps/x²) and what is left is their f32 rounding (an FMA on a GPU
        // leaves some). Judge the error against the size of the terms, rstd·dy·w.
        const rstd = (xi: number) => 1 / Math.sqrt((centered ? 0 : xi * xi) + NORM_EPS);
        const scale = Math.hypot(...Array.from(x, (xi, i) => rstd(xi) * r[i] * w[0]));
        assertCloseTo(grads[0]!, g[0], scale, 1e-6, `${where} dx`);
      } else {
        assertClose(grads[0]!, g[0], 1e-5, `${where} dx`);
      }
      // dweight[j] = Σ rows dy·x̂ and dbias[j] = Σ rows dy: sums that random signs can cancel
      // (one column of 5 rows, say), so each is judged against its terms' magnitude.
      const xhat = normRef(
        x,
        new Float64Array(d).fill(1),
        centered ? new Float64Array(d) : null,
        d,
      );
      const massW = new Float64Array(d), massB = new Float64Array(d);
      for (let i = 0; i < n; i++) {
        // x̂ carries an absolute f32 error (its mean's rounding), so |x̂| counts as at least 1.
        massW[i % d] += Math.abs(r[i]) * Math.max(1, Math.abs(xhat[i]));
        massB[i % d] += Math.abs(r[i]);
      }
      assertCloseToMass(grads[1]!, g[1], massW, 1e-5, `${where} dweight`);
      if (centered) assertCloseToMass(grads[2]!, g[2], massB, 1e-5, `${where} dbias`);
    }
  }
}

// d 37 and a row of 300 > 256 (one workgroup loops); 70 rows > 64 (more than one per-row group).
const ADD_NORM_SHAPES = [[7, 37], [7, 300], [2, 3, 257], [70, 7], [3, 1], [0, 5]];

Deno.test("addRmsNorm matches float64 and add then rmsNorm bit for bit, a row a workgroup or an invocation", async () => {
  await gpuReady;
  for (const kernels of ["workgroup", "rows"] as const) {
    const previous = setNormKernels(kernels);
    try {
      for (const shape of ADD_NORM_SHAPES) {
        const d = shape.at(-1)!, n = prod(shape);
        const where = `addRmsNorm (${kernels}) [${shape}]`;
        const a = f32(randn(n).map((v) => v + 1)), b = f32(randn(n)), w = f32(randn(d));
        let dispatches = 0;
        const [sum, y, sumRef, yRef] = await tidyAsync(() => {
          const { outs, count } = noGrad(() => {
            const [ta, tb] = [tensor(a, shape), tensor(b, shape)];
            const tw = tensor(w, [d]);
            const before = recorderStats.dispatches;
            const fused = addRmsNorm(ta, tb, tw);
            const count = recorderStats.dispatches - before;
            const s = add(ta, tb);
            return { outs: [fused.sum, fused.y, s, rmsNorm(s, tw)], count };
          });
          dispatches = count;
          return Promise.all(outs.map((t) => t.toArray()));
        });
        assert(dispatches === (n > 0 ? 1 : 0), `${where}: ${dispatches} dispatches`);
        // f32 addition rounds the exact sum once: the sum is exact.
        const exact = Float64Array.from(a, (v, i) => Math.fround(v + b[i]));
        assertClose(sum, exact, 0, `${where} sum`);
        assertClose(y, normRef(exact, w, null, d), 1e-5, `${where} y`);
        // The same arithmetic as the two ops: the same bits.
        assertClose(sum, sumRef, 0, `${where} sum vs add`);
        assertClose(y, yRef, 0, `${where} y vs add then rmsNorm`);
      }
    } finally {
      setNormKernels(previous);
    }
  }
});

Deno.test("addRmsNorm records the two ops where a gradient would be recorded", async () => {
  await gpuReady;
  const shape = [3, 5];
  const a = f32(randn(15)), b = f32(randn(15)), w = f32(randn(5)), r = f32(randn(15));
  const run = (fn: (ts: Tensor[]) => Tensor) =>
    runWithGrads(fn, [{ data: a, shape }, { data: b, shape }, { data: w, shape: [5] }], r);
  const fused = await run((ts) => addRmsNorm(ts[0], ts[1], ts[2]).y);
  const ops = await run((ts) => rmsNorm(add(ts[0], ts[1]), ts[2]));
  assertClose(fused.out, ops.out, 0, "addRmsNorm forward");
  for (let i = 0; i < 3; i++) assertClose(fused.grads[i]!, ops.grads[i]!, 0, `grad ${i}`);
  assertThrows(
    () => tidy(() => addRmsNorm(tensor(a, shape), tensor(a, [15]), tensor(w, [5]))),
    /addRmsNorm: a \[3, 5\] f32 and b \[15\] f32 differ in shape/,
    "addRmsNorm shapes",
  );
});

// ---------------------------------------------------------------------------------------------
// Softmax

Deno.test("softmax and logSoftmax match float64, forward and backward", async () => {
  await gpuReady;
  for (const logSpace of [false, true]) {
    const name = logSpace ? "logSoftmax" : "softmax";
    for (const shape of [[1, 1], [5, 7], [2, 3, 17], [3, 257], [2, 1030]]) {
      const d = shape.at(-1)!, n = prod(shape);
      const x = f32(randn(n, undefined, 4));
      const r = f32(randn(n));
      const { out, grads } = await runWithGrads(
        (ts) => (logSpace ? logSoftmax : softmax)(ts[0]),
        [{ data: x, shape }],
        r,
      );
      const ref = (xs: Float64Array[]) => softmaxRef(xs[0], d, logSpace);
      assertClose(out, ref([x]), 1e-5, `${name} [${shape}] forward`);
      const [g] = numericGrads(ref, [x], r);
      assertClose(grads[0]!, g, 1e-5, `${name} [${shape}] backward`);
    }
  }
});

// ---------------------------------------------------------------------------------------------
// Cross-entropy

interface CeCase {
  n: number;
  v: number;
  smoothing: number;
  ignoreIndex?: number;
  /** Fraction of rows whose target is set to ignoreIndex. */
  ignored: number;
}

const CE_CASES: CeCase[] = [
  { n: 1, v: 1, smoothing: 0, ignored: 0 },
  { n: 5, v: 7, smoothing: 0, ignored: 0 },
  { n: 5, v: 7, smoothing: 0.1, ignored: 0.4 },
  { n: 33, v: 257, smoothing: 0, ignored: 0.3 },
  { n: 33, v: 257, smoothing: 0.2, ignored: 0.3 },
  { n: 4, v: 600, smoothing: 0.1, ignored: 0 },
  { n: 9, v: 5, smoothing: 0.1, ignoreIndex: 3, ignored: 0.3 },
  { n: 4, v: 6, smoothing: 0.1, ignored: 1 }, // nothing counted: loss 0, gradient 0
];

Deno.test("softmaxCrossEntropy matches PyTorch's semantics in float64, forward and backward", async () => {
  await gpuReady;
  for (const c of CE_CASES) {
    const ignoreIndex = c.ignoreIndex ?? -100;
    const logits = f32(randn(c.n * c.v, undefined, 3));
    const r = rng(freshSeed());
    const targets = randomInts(c.n, 0, c.v).map((t) => (r() < c.ignored ? ignoreIndex : t));
    const dloss = f32(randn(1));
    const { out, shape, grads } = await runWithGrads(
      (ts) => softmaxCrossEntropy(ts[0], ts[1], { ignoreIndex, labelSmoothing: c.smoothing }),
      [{ data: logits, shape: [c.n, c.v] }, { data: targets, shape: [c.n], dtype: "i32" }],
      dloss,
    );
    const where = `CE n=${c.n} v=${c.v} ε=${c.smoothing} ignore=${ignoreIndex}`;
    assert(shape.join() === "1", `${where}: loss shape [${shape}]`);
    const ref = (xs: Float64Array[]) =>
      crossEntropyRef(xs[0], targets, c.v, ignoreIndex, c.smoothing);
    assertClose(out, ref([logits]), 1e-5, `${where} forward`);
    const g = crossEntropyGradRef(logits, targets, c.v, ignoreIndex, c.smoothing, dloss[0]);
    assertClose(grads[0]!, g, 1e-5, `${where} backward`);
    // Central differences cost O((n·v)²): they check the analytic reference on the smaller cases.
    if (c.n * c.v <= 2400) {
      assertClose(g, numericGrads(ref, [logits], dloss)[0], 1e-6, `${where} reference gradient`);
    }
  }
});

Deno.test("tokenNll is each row's −log softmax at its target (0 outside [0, V)), in float64", async () => {
  await gpuReady;
  for (const [n, v] of [[1, 1], [7, 5], [37, 129], [3, 1000]]) {
    const logits = f32(randn(n * v, undefined, 4));
    const targets = randomInts(n, 0, v).map((t, i) => (i === 1 ? v : i === 2 ? -1 : t));
    const out = tidy(() =>
      tokenNll(tensor(logits, [n, v]), tensor(Int32Array.from(targets), [n], "i32"))
    );
    const got = await out.toArray();
    out.dispose();
    const logp = softmaxRef(logits, v, true);
    const ref = Float64Array.from(targets, (t, i) => (t >= 0 && t < v ? -logp[i * v + t] : 0));
    assert(got.length === n, `n=${n} v=${v}: ${got.length} values`);
    assertClose(got, ref, 1e-5, `tokenNll n=${n} v=${v}`);
  }
  tidy(() =>
    assertThrows(
      () => tokenNll(tensor([1, 2, 3, 4], [2, 2]), tensor(Int32Array.of(0), [1], "i32")),
      /tokenNll: targets must be 2 i32 ids/,
      "target count",
    )
  );
});

Deno.test("softmaxCrossEntropy counts out-of-range target tensors as ignored", async () => {
  await gpuReady;
  const v = 6;
  const logits = f32(randn(4 * v));
  const targets = [2, 6, -1, 5];
  const { out, grads } = await runWithGrads(
    (ts) => softmaxCrossEntropy(ts[0], ts[1]),
    [{ data: logits, shape: [4, v] }, { data: targets, shape: [4], dtype: "i32" }],
    [1],
  );
  const ref = (xs: Float64Array[]) => crossEntropyRef(xs[0], targets, v, -100, 0);
  assertClose(out, ref([logits]), 1e-5, "forward");
  assertClose(grads[0]!, numericGrads(ref, [logits], [1])[0], 1e-5, "backward");
});

// ---------------------------------------------------------------------------------------------
// Embedding

Deno.test("embedding matches float64 and sums repeated ids deterministically", async () => {
  await gpuReady;
  const cases = [
    { v: 1, d: 1, ids: [3] },
    { v: 600, d: 7, ids: [5, 33] },
    { v: 13, d: 1030, ids: [2, 9] },
    { v: 40, d: 257, ids: [300] },
  ];
  for (const { v, d, ids: idShape } of cases) {
    // Ids from a few rows, so most repeat (some many times), plus the last row.
    const ids = randomInts(prod(idShape), 0, Math.min(v, 5)).map((id, i) => (i === 0 ? v - 1 : id));
    const w = f32(randn(v * d));
    const dy = f32(randn(ids.length * d));
    const run = () =>
      runWithGrads(
        (ts) => embedding(ts[0], ts[1]),
        [{ data: w, shape: [v, d] }, { data: ids, shape: idShape, dtype: "i32" }],
        dy,
      );
    const first = await run();
    const where = `embedding v=${v} d=${d} ids [${idShape}]`;
    assert(first.shape.join() === [...idShape, d].join(), `${where}: shape [${first.shape}]`);
    assertClose(first.out, embeddingRef(w, ids, v, d), 0, `${where} forward`);
    // Repeated ids sum their rows of dy, which random signs can cancel: judge each against the
    // same sum of |dy|.
    const mass = embeddingGradRef(dy.map(Math.abs), ids, v, d).map((m) => m + 1e-30);
    assertCloseToMass(
      first.grads[0]!,
      embeddingGradRef(dy, ids, v, d),
      mass,
      1e-6,
      `${where} backward`,
    );
    const again = await run();
    assert(
      again.grads[0]!.every((x, i) => Object.is(x, first.grads[0]![i])),
      `${where}: backward differs between runs`,
    );
  }
});

Deno.test("embedding reads zero rows for out-of-range id tensors; host ids match tensor ids", async () => {
  await gpuReady;
  const v = 4, d = 3;
  const w = f32(randn(v * d));
  const ids = [1, -1, 4, 3, 1];
  const dy = f32(randn(ids.length * d));
  const { out, grads } = await runWithGrads(
    (ts) => embedding(ts[0], ts[1]),
    [{ data: w, shape: [v, d] }, { data: ids, shape: [5], dtype: "i32" }],
    dy,
  );
  assertClose(out, embeddingRef(w, ids, v, d), 0, "forward");
  assertClose(grads[0]!, embeddingGradRef(dy, ids, v, d), 1e-6, "backward");
  const hostIds = [3, 0, 0, 2];
  const host = await runWithGrads(
    (ts) => embedding(ts[0], { data: hostIds, shape: [2, 2] }),
    [{ data: w, shape: [v, d] }],
  );
  assertClose(host.out, embeddingRef(w, hostIds, v, d), 0, "host ids forward");
});

Deno.test("nn ops accept empty inputs: zero rows give empty outputs and zero gradients", async () => {
  await gpuReady;
  const w = f32(randn(4));
  const norm = await runWithGrads(
    (ts) => layerNorm(ts[0], ts[1], ts[2]),
    [{ data: [], shape: [0, 4] }, { data: w, shape: [4] }, { data: w, shape: [4] }],
    [],
  );
  assert(norm.shape.join() === "0,4", `layerNorm shape [${norm.shape}]`);
  assertClose(norm.grads[1]!, [0, 0, 0, 0], 0, "layerNorm dweight");
  assertClose(norm.grads[2]!, [0, 0, 0, 0], 0, "layerNorm dbias");
  const ce = await runWithGrads(
    (ts) => softmaxCrossEntropy(ts[0], ts[1]),
    [{ data: [], shape: [0, 5] }, { data: [], shape: [0], dtype: "i32" }],
    [1],
  );
  assertClose(ce.out, [0], 0, "cross-entropy of no rows");
  const emb = await runWithGrads(
    (ts) => embedding(ts[0], ts[1]),
    [{ data: w, shape: [2, 2] }, { data: [], shape: [0], dtype: "i32" }],
    [],
  );
  assert(emb.shape.join() === "0,2", `embedding shape [${emb.shape}]`);
  assertClose(emb.grads[0]!, [0, 0, 0, 0], 0, "embedding dweight");
});

// ---------------------------------------------------------------------------------------------
// Bad input

Deno.test("nn ops refuse bad shapes, dtypes and ids before dispatching", async () => {
  await gpuReady;
  tidy(() => {
    const x = tensor(new Float32Array(32), [4, 8]);
    const w8 = tensor(new Float32Array(8), [8]);
    const w7 = tensor(new Float32Array(7), [7]);
    const ints = tensor(new Int32Array(32), [4, 8], "i32");
    const logits = tensor(new Float32Array(12), [4, 3]);
    const t5 = tensor(new Int32Array(5), [5], "i32");
    const tf = tensor(new Float32Array(4), [4]);
    const scalar = tensor([1], []);
    const cases: [() => Tensor, RegExp][] = [
      [() => rmsNorm(x, w7), /rmsNorm: weight \[7\] f32 does not match x \[4, 8\] f32/],
      [() => rmsNorm(ints, w8), /rmsNorm: x must be f32, got \[4, 8\] i32/],
      [() => rmsNorm(scalar, w8), /rmsNorm: x needs rank ≥ 1/],
      [() => rmsNorm(x, w8, 0), /rmsNorm: eps must be > 0/],
      [() => layerNorm(x, w8, w7), /layerNorm: bias \[7\] f32 does not match x \[4, 8\] f32/],
      [() => softmax(ints), /softmax: x must be f32/],
      [() => logSoftmax(scalar), /logSoftmax: x needs rank ≥ 1/],
      [() => softmaxCrossEntropy(w8, t5), /softmaxCrossEntropy: logits must be \[N, V\]/],
      [() => softmaxCrossEntropy(logits, t5), /targets \[5\] do not match logits \[4, 3\] f32/],
      [() => softmaxCrossEntropy(logits, tf), /softmaxCrossEntropy: targets must be i32/],
      [
        () =>
          softmaxCrossEntropy(logits, { data: [0, 1, 2, 2], shape: [4] }, { labelSmoothing: 1.5 }),
        /labelSmoothing must be in \[0, 1\]/,
      ],
      [
        () => softmaxCrossEntropy(logits, { data: [0, 7, 2, -100], shape: [4] }),
        /softmaxCrossEntropy: targets\[1\] = 7 is outside \[0, 3\)/,
      ],
      [() => embedding(w8, t5), /embedding: weight must be \[V, D\], got \[8\] f32/],
      [() => embedding(x, tf), /embedding: ids must be i32/],
      [() => embedding(x, { data: [0, -1], shape: [2] }), /embedding: ids\[1\] = -1 is outside/],
      [() => embedding(x, { data: [0, 1, 2], shape: [2] }), /embedding: 3 ids for shape \[2\]/],
    ];
    for (const [fn, pattern] of cases) {
      const before = recorderStats.dispatches;
      assertThrows(fn, pattern, String(pattern));
      assert(recorderStats.dispatches === before, `${pattern}: dispatched before refusing`);
    }
  });
});
