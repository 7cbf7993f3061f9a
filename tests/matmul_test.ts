// Batched matmul and linear against a float64 CPU reference on fresh random inputs: every
// transpose combination, sizes off the tile grid, broadcast batches, both tiles, scalar and vec4
// paths, f16 storage, the fused epilogue, backward, and refusals of bad shapes.
import { dispatch, gpu, initGpu, pipeline } from "../lib/gpu/mod.ts";
import { ShapeError } from "../lib/errors.ts";
import { backward } from "../lib/tensor/autograd.ts";
import {
  type DType,
  floatToHalf,
  halfToFloat,
  parameter,
  Tensor,
  tensor,
  tidy,
} from "../lib/tensor/tensor.ts";
import {
  chooseSplitK,
  chooseTile,
  encodeMatmul,
  linear,
  matmul,
  matmulWith,
  planMatmul,
} from "../lib/tensor/matmul.ts";
import {
  type GemmHooks,
  type MatmulTile,
  matmulWgsl,
  parseTile,
  slabMatmulParams,
  tileName,
  TILES,
} from "../kernels/matmul.ts";

await initGpu();
const hasF16 = gpu().f16;

// ---------------------------------------------------------------------------------------------
// CPU reference

const prod = (xs: readonly number[]) => xs.reduce((a, b) => a * b, 1);

function random(n: number): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.random() * 2 - 1;
  return out;
}

/** Rounds to what the GPU holds, so the reference sees the same inputs. */
function roundTo(x: Float64Array, dtype: DType): Float64Array {
  if (dtype === "f32") return Float64Array.from(Float32Array.from(x));
  return x.map((v) => halfToFloat(floatToHalf(v)));
}

/** op(A)·op(B) in float64 with NumPy batch broadcasting. */
function refMatmul(
  a: Float64Array,
  aShape: readonly number[],
  b: Float64Array,
  bShape: readonly number[],
  tA = false,
  tB = false,
): { data: Float64Array; shape: number[] } {
  const [ar, ac] = aShape.slice(-2);
  const [br, bc] = bShape.slice(-2);
  const [M, K] = tA ? [ac, ar] : [ar, ac];
  const N = tB ? br : bc;
  const la = aShape.slice(0, -2), lb = bShape.slice(0, -2);
  const nb = Math.max(la.length, lb.length);
  const pa = [...new Array(nb - la.length).fill(1), ...la];
  const pb = [...new Array(nb - lb.length).fill(1), ...lb];
  const batch = pa.map((d, i) => Math.max(d, pb[i]));
  const out = new Float64Array(prod(batch) * M * N);
  for (let z = 0; z < prod(batch); z++) {
    let rest = z, ia = 0, ib = 0, sa = 1, sb = 1;
    for (let i = nb - 1; i >= 0; i--) {
      const j = rest % batch[i];
      rest = Math.floor(rest / batch[i]);
      ia += (pa[i] === 1 ? 0 : j) * sa;
      ib += (pb[i] === 1 ? 0 : j) * sb;
      sa *= pa[i];
      sb *= pb[i];
    }
    const oa = ia * M * K, ob = ib * K * N, oc = z * M * N;
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < K; k++) {
          const av = a[oa + (tA ? k * M + m : m * K + k)];
          const bv = b[ob + (tB ? n * K + k : k * N + n)];
          s += av * bv;
        }
        out[oc + m * N + n] = s;
      }
    }
  }
  return { data: out, shape: [...batch, M, N] };
}

/** Sums a [..., M, N] array over the batch dims that `shape` broadcasts. */
function reduceTo(x: Float64Array, from: readonly number[], to: readonly number[]): Float64Array {
  const pt = [...new Array(from.length - to.length).fill(1), ...to];
  const out = new Float64Array(prod(to));
  for (let i = 0; i < x.length; i++) {
    let rest = i, j = 0, s = 1;
    for (let d = from.length - 1; d >= 0; d--) {
      const c = rest % from[d];
      rest = Math.floor(rest / from[d]);
      j += (pt[d] === 1 ? 0 : c) * s;
      s *= pt[d];
    }
    out[j] += x[i];
  }
  return out;
}

function relError(out: ArrayLike<number>, ref: Float64Array): number {
  if (out.length !== ref.length) throw new Error(`length ${out.length} vs ${ref.length}`);
  let num = 0, den = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = out[i] - ref[i];
    if (!Number.isFinite(out[i])) return Infinity;
    num += d * d;
    den += ref[i] * ref[i];
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

function expectClose(what: string, out: ArrayLike<number>, ref: Float64Array, tol: number) {
  const e = relError(out, ref);
  if (!(e <= tol)) throw new Error(`${what}: relative error ${e.toExponential(2)} > ${tol}`);
}

function expectShape(what: string, t: Tensor, shape: readonly number[]) {
  if (t.shape.join() !== shape.join()) throw new Error(`${what}: shape [${t.shape}] ≠ [${shape}]`);
}

const tol = (dtype: DType) => (dtype === "f16" ? 1e-2 : 1e-5);

interface Case {
  a: number[];
  b: number[];
  tA?: boolean;
  tB?: boolean;
  tile?: string;
  scalar?: boolean;
  dtype?: DType;
}

/** Stored shapes for op(A) = [.., M, K], op(B) = [.., K, N]. */
function stored(
  batchA: number[],
  batchB: number[],
  M: number,
  K: number,
  N: number,
  tA: boolean,
  tB: boolean,
) {
  return {
    a: [...batchA, ...(tA ? [K, M] : [M, K])],
    b: [...batchB, ...(tB ? [N, K] : [K, N])],
    tA,
    tB,
  };
}

async function check(c: Case) {
  const dtype = c.dtype ?? "f32";
  const aData = roundTo(random(prod(c.a)), dtype);
  const bData = roundTo(random(prod(c.b)), dtype);
  const ref = refMatmul(aData, c.a, bData, c.b, c.tA, c.tB);
  const label = `[${c.a}]${c.tA ? "ᵀ" : ""}·[${c.b}]${c.tB ? "ᵀ" : ""} ${dtype}${
    c.tile ? ` ${c.tile}` : ""
  }${c.scalar ? " scalar" : ""}`;
  const out = tidy(() => {
    const a = tensor(aData, c.a, dtype);
    const b = tensor(bData, c.b, dtype);
    return matmulWith(a, b, {
      transA: c.tA,
      transB: c.tB,
      tile: c.tile ? parseTile(c.tile) : undefined,
      scalar: c.scalar,
    });
  });
  expectShape(label, out, ref.shape);
  expectClose(label, await out.toArray(), ref.data, tol(dtype));
  out.dispose();
}

const TRANSPOSES: [boolean, boolean][] = [[false, false], [true, false], [false, true], [
  true,
  true,
]];

// ---------------------------------------------------------------------------------------------
// Forward

Deno.test("matmul f32: awkward sizes, every transpose combination", async () => {
  for (const [tA, tB] of TRANSPOSES) {
    for (const [M, K, N] of [[1, 1, 1], [7, 13, 5], [33, 65, 17], [68, 20, 72]]) {
      await check(stored([], [], M, K, N, tA, tB));
    }
  }
});

Deno.test("matmul f32: broadcast batches", async () => {
  for (const [tA, tB] of TRANSPOSES) {
    await check(stored([3, 1], [2], 9, 12, 8, tA, tB));
  }
  await check(stored([2, 3], [], 5, 8, 12, false, false)); // folded into one taller matmul
  await check(stored([], [4], 5, 7, 3, false, true));
  await check(stored([2, 1, 3], [1, 2, 1], 4, 6, 5, true, false)); // three batch levels
});

Deno.test("matmul f32: 128×128 and 64×256 tiles, with and without prefetch, vec4 and scalar", async () => {
  for (const tile of ["128x128x16-8x8-pf", "128x128x32-8x8", "128x128x32-8x8-cm"]) {
    for (const [tA, tB] of TRANSPOSES) {
      await check({ ...stored([], [], 130, 36, 136, tA, tB), tile });
    }
  }
  await check({ ...stored([2], [], 131, 19, 129, false, true), tile: "128x128x16-8x8-pf" });
  // The 64×256 tile (M ≈ 64 convs) across both tile edges, every transpose, and a batch.
  for (const [tA, tB] of TRANSPOSES) {
    await check({ ...stored([], [], 67, 44, 260, tA, tB), tile: "64x256x32-8x8" });
  }
  await check({ ...stored([3], [], 64, 36, 300, false, true), tile: "64x256x32-8x8" });
  await check({ ...stored([], [], 40, 24, 36, true, false), scalar: true });
  await check({ ...stored([], [], 40, 24, 36, false, true), scalar: true, tile: "32x32x16-4x4" });
  // The GPU's 64×64 tile with register prefetch (a CPU adapter's own choice is cpuTile's).
  await check({ ...stored([2], [], 70, 33, 130, true, false), tile: "64x64x16-4x4-pf" });
});

Deno.test("matmul f16 storage", async () => {
  if (!hasF16) {
    console.log("skipped: this adapter has no shader-f16");
    return;
  }
  for (const [tA, tB] of TRANSPOSES) {
    await check({ ...stored([], [], 33, 65, 17, tA, tB), dtype: "f16" });
    await check({ ...stored([2], [1], 20, 16, 24, tA, tB), dtype: "f16" });
  }
  await check({
    ...stored([], [], 130, 40, 132, false, false),
    dtype: "f16",
    tile: "128x128x16-8x8-pf",
  });
  // f16's large tile (16×8 a thread) across tile edges, with K over one slice, and column
  // accumulators.
  for (const [tA, tB] of TRANSPOSES) {
    for (const tile of ["256x128x32-16x8", "256x128x32-16x8-cm"]) {
      await check({ ...stored([], [], 260, 70, 132, tA, tB), dtype: "f16", tile });
    }
  }
});

Deno.test("matmul epilogue: alpha, bias and beta·C", async () => {
  const [M, K, N] = [37, 21, 44];
  const aData = roundTo(random(M * K), "f32");
  const bData = roundTo(random(K * N), "f32");
  const biasData = roundTo(random(N), "f32");
  const cData = roundTo(random(M * N), "f32");
  const ref = refMatmul(aData, [M, K], bData, [K, N]).data;
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      const i = m * N + n;
      ref[i] = 0.5 * ref[i] + biasData[n] - 2 * cData[i];
    }
  }
  const out = tidy(() => {
    const a = tensor(aData, [M, K]);
    const b = tensor(bData, [K, N]);
    const c = tensor(cData, [M, N]);
    const bias = tensor(biasData, [N]);
    encodeMatmul(planMatmul("matmul", a, b), a, b, c, { alpha: 0.5, beta: -2, bias });
    return c;
  });
  expectClose("alpha·AB + bias + beta·C", await out.toArray(), ref, 1e-5);
  out.dispose();
});

// ---------------------------------------------------------------------------------------------
// Backward

Deno.test("matmul backward: transposes and broadcast batches against the analytic gradient", async () => {
  const cases = [
    stored([2, 3], [3], 5, 7, 6, false, false),
    stored([3], [2, 3], 5, 7, 6, true, false),
    stored([2], [], 5, 7, 6, false, true),
    stored([], [2], 5, 7, 6, true, true),
    stored([4], [1], 3, 8, 5, false, false),
  ];
  for (const c of cases) {
    const aData = roundTo(random(prod(c.a)), "f32");
    const bData = roundTo(random(prod(c.b)), "f32");
    const fwd = refMatmul(aData, c.a, bData, c.b, c.tA, c.tB);
    const gData = roundTo(random(fwd.data.length), "f32");
    const a = parameter(aData, c.a), b = parameter(bData, c.b);
    tidy(() => backward(matmul(a, b, { transA: c.tA, transB: c.tB }), tensor(gData, fwd.shape)));
    // dA' = G·B'ᵀ and dB' = A'ᵀ·G, on the stored (possibly transposed) layouts, summed over
    // broadcast batch dims.
    const gShape = fwd.shape;
    const nb = gShape.length - 2;
    const bFull = broadcastTo(bData, c.b, [...gShape.slice(0, nb), ...c.b.slice(-2)]);
    const aFull = broadcastTo(aData, c.a, [...gShape.slice(0, nb), ...c.a.slice(-2)]);
    const dAfull = c.tA
      ? refMatmul(bFull.data, bFull.shape, gData, gShape, c.tB, true)
      : refMatmul(gData, gShape, bFull.data, bFull.shape, false, !c.tB);
    const dBfull = c.tB
      ? refMatmul(gData, gShape, aFull.data, aFull.shape, true, c.tA)
      : refMatmul(aFull.data, aFull.shape, gData, gShape, !c.tA, false);
    const label = `[${c.a}]${c.tA ? "ᵀ" : ""}·[${c.b}]${c.tB ? "ᵀ" : ""}`;
    expectShape(`dA ${label}`, a.grad!, c.a);
    expectShape(`dB ${label}`, b.grad!, c.b);
    expectClose(
      `dA ${label}`,
      await a.grad!.toArray(),
      reduceTo(dAfull.data, dAfull.shape, c.a),
      1e-5,
    );
    expectClose(
      `dB ${label}`,
      await b.grad!.toArray(),
      reduceTo(dBfull.data, dBfull.shape, c.b),
      1e-5,
    );
    for (const p of [a, b]) {
      p.grad?.dispose();
      p.dispose();
    }
  }
});

function broadcastTo(x: Float64Array, from: readonly number[], to: readonly number[]) {
  const pf = [...new Array(to.length - from.length).fill(1), ...from];
  const out = new Float64Array(prod(to));
  for (let i = 0; i < out.length; i++) {
    let rest = i, j = 0, s = 1;
    for (let d = to.length - 1; d >= 0; d--) {
      const c = rest % to[d];
      rest = Math.floor(rest / to[d]);
      j += (pf[d] === 1 ? 0 : c) * s;
      s *= pf[d];
    }
    out[i] = x[j];
  }
  return { data: out, shape: [...to] };
}

Deno.test("linear: leading dims, bias, forward and backward", async () => {
  const [lead, din, dout] = [[2, 3], 10, 7];
  const rows = prod(lead);
  const xData = roundTo(random(rows * din), "f32");
  const wData = roundTo(random(dout * din), "f32");
  const bData = roundTo(random(dout), "f32");
  const x = parameter(xData, [...lead, din]);
  const w = parameter(wData, [dout, din]);
  const bias = parameter(bData, [dout]);
  const ref = refMatmul(xData, [rows, din], wData, [dout, din], false, true).data;
  for (let r = 0; r < rows; r++) for (let o = 0; o < dout; o++) ref[r * dout + o] += bData[o];
  const gData = roundTo(random(rows * dout), "f32");
  const y = await tidy(() => {
    const y = linear(x, w, bias);
    expectShape("linear", y, [...lead, dout]);
    const values = y.toArray();
    backward(y, tensor(gData, y.shape));
    return values;
  });
  expectClose("linear forward", y, ref, 1e-5);
  const dx = refMatmul(gData, [rows, dout], wData, [dout, din]).data;
  const dw = refMatmul(gData, [rows, dout], xData, [rows, din], true, false).data;
  const db = new Float64Array(dout);
  for (let r = 0; r < rows; r++) for (let o = 0; o < dout; o++) db[o] += gData[r * dout + o];
  expectClose("linear dx", await x.grad!.toArray(), dx, 1e-5);
  expectClose("linear dw", await w.grad!.toArray(), dw, 1e-5);
  expectClose("linear dbias", await bias.grad!.toArray(), db, 1e-5);
  for (const p of [x, w, bias]) {
    p.grad?.dispose();
    p.dispose();
  }
});

// ---------------------------------------------------------------------------------------------
// Refusals

Deno.test("matmul refuses bad shapes, dtypes and sizes before dispatching", () => {
  tidy(() => {
    const expectRefusal = (what: string, fn: () => unknown, words: string[]) => {
      try {
        fn();
      } catch (e) {
        if (!(e instanceof ShapeError)) throw e;
        for (const w of words) {
          if (!e.message.includes(w)) throw new Error(`${what}: '${e.message}' lacks '${w}'`);
        }
        return;
      }
      throw new Error(`${what}: no ShapeError`);
    };
    const t = (shape: number[], dtype: DType = "f32") =>
      tensor(new Float32Array(prod(shape)), shape, dtype);
    expectRefusal("inner dims", () => matmul(t([3, 4]), t([5, 6])), ["matmul", "[3, 4]", "[5, 6]"]);
    expectRefusal("transposed inner dims", () => matmul(t([3, 4]), t([3, 6]), { transB: true }), [
      "matmul",
      "[3, 6]",
    ]);
    expectRefusal("batch", () => matmul(t([2, 3, 4]), t([3, 4, 5])), [
      "matmul",
      "batch",
      "[2, 3, 4]",
    ]);
    expectRefusal("rank", () => matmul(t([4]), t([4, 5])), ["matmul", "rank"]);
    expectRefusal("dtype", () => matmul(t([2, 2]), t([2, 2], "i32")), ["matmul", "dtype"]);
    const big = Math.ceil(Math.sqrt(gpu().limits.maxStorageBufferBindingSize / 4)) + 1;
    expectRefusal("size", () => matmul(t([big, 1]), t([1, big])), ["matmul", "limit"]);
    expectRefusal("linear", () => linear(t([2, 3]), t([4, 5])), ["linear", "[2, 3]", "[4, 5]"]);
  });
});

Deno.test("chooseTile: 128×128 for big squares, 64×256 where M ≈ 64, 64×64 for small grids", () => {
  const cases: [number, number, MatmulTile][] = [
    [4096, 4096, TILES.large],
    [64, 131072, TILES.wide],
    [128, 32768, TILES.large],
    [130, 512, TILES.small],
  ];
  for (const [M, N, want] of cases) {
    // fitTile may shrink a tile to the device's workgroup memory; compare with the same fit.
    const got = tileName(chooseTile(M, N, 1, "f32", false));
    const base = tileName(want).split("-")[0].split("x").slice(0, 2).join("x");
    if (!got.startsWith(base)) throw new Error(`chooseTile ${M}×${N}: ${got}, want ${base}`);
  }
});

Deno.test("chooseTile on a CPU adapter: rows of 16, 32 or 64 after M, 64 columns", () => {
  for (
    const [M, N, want] of [[1, 4096, 16], [16, 9, 16], [17, 64, 32], [32, 8192, 32], [33, 64, 64], [
      4096,
      4096,
      64,
    ]]
  ) {
    const t = chooseTile(M, N, 1, "f32", true);
    if (t.bm !== want || t.bn !== 64) {
      throw new Error(`chooseTile ${M}×${N} on a CPU: ${tileName(t)}, want ${want} rows`);
    }
  }
});

Deno.test("matmul split-K: Aᵀ·B in slices equals the reference, forward and backward", async () => {
  // Forced slice counts on awkward sizes, then the automatic choice on a weight-gradient shape.
  const cases: [number, number, number, number | undefined][] = [
    [37, 1260, 19, 5],
    [5, 96, 70, 3],
    [65, 2048, 9, undefined],
  ];
  for (const [M, K, N, slices] of cases) {
    const aData = roundTo(random(K * M), "f32"), bData = roundTo(random(K * N), "f32");
    const ref = refMatmul(aData, [K, M], bData, [K, N], true, false);
    const gData = roundTo(random(M * N), "f32");
    const a = parameter(aData, [K, M]), b = parameter(bData, [K, N]);
    const label = `[${K}, ${M}]ᵀ·[${K}, ${N}] split ${slices ?? chooseSplitK(M, N, K)}`;
    const out = tidy(() => {
      const y = matmulWith(a, b, { transA: true, splitK: slices });
      backward(y, tensor(gData, [M, N]));
      return y;
    });
    expectShape(label, out, [M, N]);
    expectClose(label, await out.toArray(), ref.data, 1e-5);
    // dA = B·Gᵀ stored [K, M]; dB = A·G stored [K, N].
    const dA = refMatmul(bData, [K, N], gData, [M, N], false, true);
    const dB = refMatmul(aData, [K, M], gData, [M, N], false, false);
    expectClose(`dA ${label}`, await a.grad!.toArray(), dA.data, 1e-5);
    expectClose(`dB ${label}`, await b.grad!.toArray(), dB.data, 1e-5);
    for (const t of [out, a.grad!, b.grad!, a, b]) t.dispose();
  }
});

Deno.test("chooseSplitK: long K under a small output grid splits, full grids and short K don't", () => {
  const cases: [number, number, number, number][] = [
    [1024, 256, 8320, 4], // tiny64's in_proj gradient: 64 tiles → 4 slices of 2080 rows
    [256, 256, 8320, 16], // 16 tiles → 16 slices
    [4096, 4096, 8320, 1], // a full grid
    [256, 256, 512, 1], // short K
    [256, 256, 8191, 1], // a prime K: no slices
  ];
  for (const [M, N, K, want] of cases) {
    const got = chooseSplitK(M, N, K);
    if (got !== want) throw new Error(`chooseSplitK(${M}, ${N}, ${K}) = ${got}, want ${want}`);
  }
});

Deno.test("matmul generator hooks: K-major loads into padded tiles, and rows hoisted out of K", async () => {
  // A [M, K] and B [N, K] both read along K through hooks (as the convolutions' weight gradient
  // reads its pixels), the K range split over 3 slabs; each slab against float64.
  const [M, N, K, S] = [37, 45, 83, 3];
  const KS = 32;
  const aData = roundTo(random(M * K), "f32"), bData = roundTo(random(N * K), "f32");
  const tiles: MatmulTile[] = [
    TILES.large,
    TILES.wide,
    TILES.small,
    { ...TILES.large, prefetch: true },
    { bm: 64, bn: 64, bk: 4, tm: 8, tn: 8, prefetch: false }, // 4 kk × 8 rows a warp
    { bm: 16, bn: 64, bk: 16, tm: 4, tn: 4, prefetch: true }, // A's 16 rows: half a bank row
    { bm: 16, bn: 16, bk: 16, tm: 4, tn: 4, prefetch: false }, // 16 threads: warps unaligned
  ];
  const variants: [string, GemmHooks["kMajor"], boolean][] = [
    ["K-major A and B, hoisted rows", { A: true, B: true }, true],
    ["K-major B", { B: true }, false],
    ["hoisted rows only", {}, true],
  ];
  const a = tensor(aData, [M, K]), b = tensor(bData, [N, K]);
  for (const tile of tiles) {
    for (const [what, kMajor, hoist] of variants) {
      const label = `${tileName(tile)} ${what}`;
      const hooks: GemmHooks = {
        splitK: true,
        kMajor,
        loadA: (r, row, kk, p) => [`${r} = A[${hoist ? `${p}off` : `${row} * ${K}u`} + ${kk}];`],
        loadB: (r, row, kk, p) => [`${r} = B[${hoist ? `${p}off` : `${row} * ${K}u`} + ${kk}];`],
        ...(hoist
          ? {
            rowA: (p: string, row: string) => [`let ${p}off = ${row} * ${K}u;`],
            rowB: (p: string, row: string) => [`let ${p}off = ${row} * ${K}u;`],
          }
          : {}),
      };
      const code = matmulWgsl({
        tile,
        dtype: "f32",
        transA: false,
        transB: true,
        vecA: false,
        vecB: false,
        vecC: false,
        bias: false,
        accumulate: false,
      }, hooks);
      // The paths under test are really generated: A's tile padded by 32 / kw words when
      // K-major, hoisted rows.
      const pad = kMajor?.A ? (tile.bk % 8 === 0 ? 1 : 2) : 0;
      if (!code.includes(`var<workgroup> As: array<array<array<vec4<f32>, ${tile.bm / 4 + pad}>`)) {
        throw new Error(`${label}: A's tile not padded by ${pad} vec4s`);
      }
      if (hoist !== code.includes("let a0_row = rowBase")) {
        throw new Error(`${label}: hoisted rows ${hoist ? "missing" : "unexpected"}`);
      }
      const c = new Tensor([S, M, N], "f32");
      const params = slabMatmulParams(M, N, K, S, KS);
      dispatch(pipeline(code), [a.buffer, b.buffer, c.buffer], params, [
        Math.ceil(N / tile.bn),
        Math.ceil(M / tile.bm),
        S,
      ]);
      const got = await c.toArray();
      c.dispose();
      for (let z = 0; z < S; z++) {
        const ref = new Float64Array(M * N);
        for (let m = 0; m < M; m++) {
          for (let n = 0; n < N; n++) {
            let acc = 0;
            for (let k = z * KS; k < Math.min(K, (z + 1) * KS); k++) {
              acc += aData[m * K + k] * bData[n * K + k];
            }
            ref[m * N + n] = acc;
          }
        }
        expectClose(`${label} slab ${z}`, got.slice(z * M * N, (z + 1) * M * N), ref, 1e-5);
      }
    }
  }
  a.dispose();
  b.dispose();
});
