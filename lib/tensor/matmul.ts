// Batched matmul with transposes, and Linear (x·wᵀ + b), over the kernels of kernels/matmul.ts.
// Shapes, dtypes and device limits are checked before anything is dispatched; backward reuses the
// transpose flags instead of copying transposed operands.
import { ShapeError } from "../errors.ts";
import { dispatch, generated, gpu, pipeline } from "../gpu/mod.ts";
import {
  type MatmulKernel,
  type MatmulTile,
  matmulWgsl,
  packMatmulParams,
  tileName,
  TILES,
  tileValid,
  workgroupBytes,
} from "../../kernels/matmul.ts";
import { broadcastShapes, sum, sumTo } from "./ops.ts";
import { BYTES, record, Tensor } from "./tensor.ts";

export interface MatmulOptions {
  /** A is stored [..., K, M] and used transposed. */
  transA?: boolean;
  /** B is stored [..., N, K] and used transposed. */
  transB?: boolean;
}

/** Kernel controls for benchmarks and tests; ops choose these themselves. */
export interface MatmulControls extends MatmulOptions {
  /** Forces a tile instead of the automatic choice. */
  tile?: MatmulTile;
  /** Forces scalar loads and stores (to test and time that path). */
  scalar?: boolean;
  /** C = alpha·op(A)·op(B) + bias + beta·C; beta ≠ 0 reads `out`. */
  alpha?: number;
  beta?: number;
  bias?: Tensor;
  /** Splits K into this many slices (1: off; default: chooseSplitK), as `matmul` does. */
  splitK?: number;
}

const prod = (xs: readonly number[]) => xs.reduce((a, b) => a * b, 1);
const fmt = (t: Tensor) => `[${t.shape.join(", ")}]`;

/** The validated geometry of one matmul. */
export interface MatmulPlan {
  M: number;
  N: number;
  K: number;
  batch: number[];
  outShape: number[];
  dtype: "f32" | "f16";
}

/** Checks shapes, dtypes and limits; throws ShapeError naming the op and shapes. */
export function planMatmul(op: string, a: Tensor, b: Tensor, o: MatmulOptions = {}): MatmulPlan {
  const shapes = `a ${fmt(a)}${o.transA ? "ᵀ" : ""} and b ${fmt(b)}${o.transB ? "ᵀ" : ""}`;
  if (a.shape.length < 2 || b.shape.length < 2) {
    throw new ShapeError(`${op}: needs operands of rank ≥ 2, got ${shapes}`);
  }
  if (a.dtype !== b.dtype) throw new ShapeError(`${op}: dtypes differ (${a.dtype}, ${b.dtype})`);
  const dtype = a.dtype;
  if (dtype !== "f32" && dtype !== "f16") {
    throw new ShapeError(`${op}: needs f32 or f16, got ${dtype}`);
  }
  if (dtype === "f16" && !gpu().f16) throw new ShapeError(`${op}: this adapter has no shader-f16`);
  const [ar, ac] = a.shape.slice(-2);
  const [br, bc] = b.shape.slice(-2);
  const [M, K] = o.transA ? [ac, ar] : [ar, ac];
  const [Kb, N] = o.transB ? [bc, br] : [br, bc];
  if (K !== Kb) throw new ShapeError(`${op}: inner dims differ (${K} vs ${Kb}) for ${shapes}`);
  let batch: number[];
  try {
    batch = broadcastShapes(op, a.shape.slice(0, -2), b.shape.slice(0, -2));
  } catch {
    throw new ShapeError(`${op}: batch dims don't broadcast for ${shapes}`);
  }
  const outShape = [...batch, M, N];
  const outBytes = prod(outShape) * BYTES[dtype];
  const limit = gpu().limits.maxStorageBufferBindingSize;
  for (const [what, bytes] of [["output", outBytes], ["a", a.bytes], ["b", b.bytes]] as const) {
    if (bytes > limit) {
      throw new ShapeError(
        `${op}: ${what} of ${bytes} bytes exceeds the device's storage binding limit (${limit}) for ${shapes}`,
      );
    }
  }
  return { M, N, K, batch, outShape, dtype };
}

/**
 * Large tiles when they give the GPU enough workgroups to fill it, else 64×64. Among large
 * tiles, `wide` (64×256) where it wastes clearly less on padding than 128×128 (M ≈ 64). On a CPU
 * adapter, cpuTile's.
 */
export function chooseTile(
  M: number,
  N: number,
  batch: number,
  dtype: "f32" | "f16" = "f32",
  cpu = gpu().isCpu && cpuTilesOn,
): MatmulTile {
  if (cpu) return cpuTile(M, dtype);
  if (dtype === "f16" && Math.ceil(M / 256) * Math.ceil(N / 128) * batch >= 96) {
    return fitTile(TILES.largeHalf, dtype);
  }
  const workgroups = (t: MatmulTile) => Math.ceil(M / t.bm) * Math.ceil(N / t.bn) * batch;
  // The share of a tile grid's outputs that are real (the rest is padding computed anyway).
  const used = (t: MatmulTile) =>
    (M * N) / (Math.ceil(M / t.bm) * t.bm * Math.ceil(N / t.bn) * t.bn);
  if (
    dtype === "f32" && workgroups(TILES.wide) >= 96 && used(TILES.wide) > used(TILES.large) + 0.1
  ) {
    return fitTile(TILES.wide, dtype);
  }
  const tile = workgroups(TILES.large) >= 96 ? TILES.large : TILES.small;
  return fitTile(tile, dtype);
}

let cpuTilesOn = true;

/** Whether a CPU adapter takes cpuTile's tiles (default) or a GPU's (benchmarks); returns the old. */
export function setCpuTiles(on: boolean): boolean {
  const previous = cpuTilesOn;
  cpuTilesOn = on;
  return previous;
}

/**
 * On a CPU adapter (lavapipe, llvmpipe) a workgroup runs on one core with its invocations in SIMD
 * lanes, and rows of padding cost as much as real ones: the tile's rows follow M (16, 32 or 64)
 * and its columns stay at 64, 4×4 outputs a thread. On lavapipe this ran the tokenizer's convs
 * 1.4–2.9× faster than 64×64 (tools/BENCHMARKS.md, "A first run on the CPU").
 */
export function cpuTile(M: number, dtype: "f32" | "f16" = "f32"): MatmulTile {
  const bm = M <= 16 ? 16 : M <= 32 ? 32 : 64;
  return fitTile({ bm, bn: 64, bk: 16, tm: 4, tn: 4, prefetch: false }, dtype);
}

/**
 * The number of slices to split K into for a plain Aᵀ·B (both stored [K, ·], as every weight
 * gradient of a linear layer is): a few output tiles over a long K leave most of the GPU idle
 * (tiny64's in_proj gradient, [1024, 256] over K = 8320 rows, is 64 workgroups of 64×64).
 * Each slice becomes a batch entry of one matmul, then a sum over the slices. 1 where the grid
 * is already full, K is short, or K has no divisor near the wanted count.
 */
export function chooseSplitK(M: number, N: number, K: number): number {
  const tiles = Math.ceil(M / 64) * Math.ceil(N / 64);
  if (tiles >= 128 || K < 1024) return 1;
  // About 256 workgroups, with slices of at least 256 rows.
  const want = Math.min(32, Math.ceil(256 / tiles), Math.floor(K / 256));
  for (let d = 0; d <= want / 2; d++) {
    for (const s of [want - d, want + d]) {
      if (s >= 2 && K % s === 0 && K / s >= 256) return s;
    }
  }
  return 1;
}

/** Drops double buffering, then halves BK, until the device's workgroup memory holds the tile. */
export function fitTile(t: MatmulTile, dtype: "f32" | "f16" = "f32"): MatmulTile {
  const max = gpu().limits.maxComputeWorkgroupStorageSize;
  const bytes = (x: MatmulTile) => workgroupBytes(x, dtype);
  let fit = t;
  if (bytes(fit) > max) fit = { ...fit, prefetch: false };
  while (bytes(fit) > max && tileValid({ ...fit, bk: fit.bk / 2 })) {
    fit = { ...fit, bk: fit.bk / 2 };
  }
  // WebGPU guarantees 16 KiB, which the default tiles fit without prefetch.
  if (bytes(fit) > max) {
    throw new Error(
      `matmul: tile ${tileName(t)} needs ${
        bytes(fit)
      } bytes of workgroup memory, the device has ${max}`,
    );
  }
  return fit;
}

interface BatchDim {
  n: number;
  sa: number;
  sb: number;
  sc: number;
}

/** Output batch dims with each operand's element stride (0 where it broadcasts), merged. */
function batchDims(plan: MatmulPlan, a: Tensor, b: Tensor): BatchDim[] {
  const nb = plan.batch.length;
  const strides = (shape: readonly number[], matrix: number) => {
    const lead = shape.slice(0, -2);
    const padded = [...new Array(nb - lead.length).fill(1), ...lead];
    const out: number[] = new Array(nb);
    let s = matrix;
    for (let i = nb - 1; i >= 0; i--) {
      out[i] = padded[i] === 1 ? 0 : s;
      s *= padded[i];
    }
    return out;
  };
  const sa = strides(a.shape, plan.M * plan.K);
  const sb = strides(b.shape, plan.K * plan.N);
  const sc = strides(plan.outShape, plan.M * plan.N);
  const dims: BatchDim[] = [];
  for (let i = 0; i < nb; i++) {
    const n = plan.batch[i];
    if (n === 1) continue;
    const last = dims.at(-1);
    if (last && last.sa === sa[i] * n && last.sb === sb[i] * n && last.sc === sc[i] * n) {
      last.n *= n;
      last.sa = sa[i];
      last.sb = sb[i];
      last.sc = sc[i];
    } else dims.push({ n, sa: sa[i], sb: sb[i], sc: sc[i] });
  }
  return dims;
}

/**
 * Records the kernel(s) computing op(a)·op(b) into `out` (shape plan.outShape). The batch runs
 * on the grid's z axis as two levels (outer × inner); deeper broadcast patterns, or more than
 * the grid allows, loop here with offsets in the uniforms.
 */
export function encodeMatmul(
  plan: MatmulPlan,
  a: Tensor,
  b: Tensor,
  out: Tensor,
  c: MatmulControls = {},
): void {
  if (prod(plan.outShape) === 0) return;
  let { M } = plan;
  const { N, K } = plan;
  let dims = batchDims(plan, a, b);
  // A batch against one shared B is one taller matmul: A's rows are contiguous across the batch.
  if (!c.transA && dims.every((d) => d.sb === 0) && dims.length > 0) {
    const rows = dims.reduce((x, d) => x * d.n, 1);
    if (dims.every((d, i) => d.sa === prod(dims.slice(i + 1).map((e) => e.n)) * plan.M * K)) {
      M *= rows;
      dims = [];
    }
  }
  const tile = fitTile(
    c.tile ?? chooseTile(M, N, dims.reduce((x, d) => x * d.n, 1), plan.dtype),
    plan.dtype,
  );
  const vec = !c.scalar;
  const kernel: MatmulKernel = {
    tile,
    dtype: plan.dtype,
    transA: Boolean(c.transA),
    transB: Boolean(c.transB),
    vecA: vec && (c.transA ? M : K) % 4 === 0,
    vecB: vec && (c.transB ? K : N) % 4 === 0,
    vecC: vec && N % 4 === 0,
    bias: Boolean(c.bias),
    accumulate: (c.beta ?? 0) !== 0,
  };
  const pipe = pipeline(generated(JSON.stringify(kernel), () => matmulWgsl(kernel)));
  const buffers = [a.buffer, b.buffer, out.buffer, ...(c.bias ? [c.bias.buffer] : [])];
  const maxZ = gpu().limits.maxComputeWorkgroupsPerDimension;
  // The last two dims go to the grid; anything above them is a host loop.
  while (dims.length < 2) dims.unshift({ n: 1, sa: 0, sb: 0, sc: 0 });
  const outer = dims.slice(0, -2);
  let [d0, d1] = dims.slice(-2);
  if (d1.n > maxZ) {
    // Split the inner dim into chunks the grid can hold (rare: > 65535 matrices).
    outer.push(d0);
    let chunk = maxZ;
    while (d1.n % chunk) chunk--;
    d0 = { n: d1.n / chunk, sa: d1.sa * chunk, sb: d1.sb * chunk, sc: d1.sc * chunk };
    d1 = { ...d1, n: chunk };
  }
  let z0 = d0.n;
  if (z0 * d1.n > maxZ) {
    outer.push({ ...d0 });
    z0 = 1;
  }
  const total = prod(outer.map((d) => d.n));
  for (let idx = 0; idx < total; idx++) {
    let rest = idx, offA = 0, offB = 0, offC = 0;
    for (let i = outer.length - 1; i >= 0; i--) {
      const j = rest % outer[i].n;
      rest = Math.floor(rest / outer[i].n);
      offA += j * outer[i].sa;
      offB += j * outer[i].sb;
      offC += j * outer[i].sc;
    }
    const params = packMatmulParams({
      M,
      N,
      K,
      batchInner: d1.n,
      offA,
      offB,
      offC,
      sA: [z0 === 1 ? 0 : d0.sa, d1.sa],
      sB: [z0 === 1 ? 0 : d0.sb, d1.sb],
      sC: [z0 === 1 ? 0 : d0.sc, d1.sc],
      alpha: c.alpha ?? 1,
      beta: c.beta ?? 0,
    });
    dispatch(pipe, buffers, params, [
      Math.ceil(N / tile.bn),
      Math.ceil(M / tile.bm),
      z0 * d1.n,
    ]);
  }
}

/** op(a)·op(b) with an optional bias, recorded for backward as `op`. */
function product(
  op: string,
  a: Tensor,
  b: Tensor,
  o: MatmulOptions,
  bias?: Tensor,
  controls: MatmulControls = {},
): Tensor {
  const plan = planMatmul(op, a, b, o);
  if (bias) {
    if (bias.dtype !== plan.dtype || bias.shape.length !== 1 || bias.shape[0] !== plan.N) {
      throw new ShapeError(
        `${op}: bias ${fmt(bias)} (${bias.dtype}) must be [${plan.N}] of ${plan.dtype}`,
      );
    }
  }
  const out = new Tensor(plan.outShape, plan.dtype);
  encodeMatmul(plan, a, b, out, { ...controls, ...o, bias });
  const inputs = bias ? [a, b, bias] : [a, b];
  return record(out, op, inputs, (g) => {
    const [dA, dB] = productGrads(a, b, g, o);
    return bias ? [dA, dB, bias.requiresGrad ? sumTo(g, bias.shape) : null] : [dA, dB];
  });
}

/**
 * dA and dB of C = op(A)·op(B): with A' = op(A), B' = op(B), dA' = G·B'ᵀ and dB' = A'ᵀ·G, each
 * written as one matmul whose transpose flags absorb every transpose. Gradients of broadcast
 * batch dims are summed back with sumTo.
 */
function productGrads(a: Tensor, b: Tensor, g: Tensor, o: MatmulOptions): (Tensor | null)[] {
  const tA = Boolean(o.transA), tB = Boolean(o.transB);
  const reduceTo = (full: Tensor, like: Tensor) => {
    if (full.shape.join() === like.shape.join()) return full;
    const r = sumTo(full, like.shape);
    full.dispose();
    return r;
  };
  let dA: Tensor | null = null, dB: Tensor | null = null;
  if (a.requiresGrad) {
    // dA' = G·B'ᵀ; when transA, dA = (dA')ᵀ = B'·Gᵀ.
    const full = tA ? matmul(b, g, { transA: tB, transB: true }) : matmul(g, b, { transB: !tB });
    dA = reduceTo(full, a);
  }
  if (b.requiresGrad) {
    const bBatch = prod(b.shape.slice(0, -2));
    const gRows = prod(g.shape.slice(0, -1));
    if (bBatch === 1 && !tA && g.shape.length > 2) {
      // B shared across the batch: the sum over the batch is one matmul over all rows of A.
      const a2 = a.reshape([-1, a.shape.at(-1)!]);
      const g2 = g.reshape([gRows, g.shape.at(-1)!]);
      const d = tB ? matmul(g2, a2, { transA: true }) : matmul(a2, g2, { transA: true });
      a2.dispose();
      g2.dispose();
      dB = d.reshape(b.shape);
      d.dispose();
    } else {
      // dB' = A'ᵀ·G; when transB, dB = (dB')ᵀ = Gᵀ·A'.
      const full = tB ? matmul(g, a, { transA: true, transB: tA }) : matmul(a, g, { transA: !tA });
      dB = reduceTo(full, b);
    }
  }
  return [dA, dB];
}

/**
 * Batched matmul: a [..., M, K] (or [..., K, M] with transA) times b [..., K, N] (or [..., N, K]
 * with transB) → [..., M, N], batch dims broadcast as in NumPy.
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  return matmulWith(a, b, opts);
}

/** Like matmul, with kernel controls (tile, scalar path, alpha/beta) for benchmarks and tests. */
export function matmulWith(a: Tensor, b: Tensor, controls: MatmulControls): Tensor {
  const { transA, transB, bias } = controls;
  const plain = a.shape.length === 2 && b.shape.length === 2 && transA && !transB && !bias &&
    controls.alpha === undefined && controls.beta === undefined;
  if (plain) {
    const [K, M] = a.shape, N = b.shape[1];
    const slices = controls.splitK ?? chooseSplitK(M, N, K);
    if (slices > 1 && K === b.shape[0] && K % slices === 0) {
      return splitProduct(a, b, slices, controls);
    }
  }
  return product("matmul", a, b, { transA, transB }, bias, controls);
}

/** Aᵀ·B with K in `slices` slices: one batched matmul [S, M, N], then the sum over S. */
function splitProduct(a: Tensor, b: Tensor, slices: number, controls: MatmulControls): Tensor {
  const [K, M] = a.shape, N = b.shape[1];
  const a3 = a.reshape([slices, K / slices, M]);
  const b3 = b.reshape([slices, K / slices, N]);
  const parts = product("matmul", a3, b3, { transA: true }, undefined, { ...controls, splitK: 1 });
  const out = sum(parts, 0);
  // The views and the partial sums go now unless the tape holds them for backward.
  if (!parts.requiresGrad) {
    a3.dispose();
    b3.dispose();
  }
  parts.dispose();
  return out;
}

/** PyTorch's Linear: x [..., in] · wᵀ (w is [out, in]) + bias [out] → [..., out]. */
export function linear(x: Tensor, w: Tensor, bias?: Tensor): Tensor {
  if (x.shape.length < 1 || w.shape.length !== 2 || x.shape.at(-1) !== w.shape[1]) {
    throw new ShapeError(
      `linear: x ${fmt(x)} needs last dim = in of weight ${fmt(w)} ([out, in])`,
    );
  }
  const lead = x.shape.slice(0, -1);
  const x2 = x.reshape([prod(lead), w.shape[1]]);
  const y2 = product("linear", x2, w, { transB: true }, bias);
  const y = y2.reshape([...lead, w.shape[0]]);
  // Views share storage: the 2-D forms can go now, unless the tape saved x2 for backward.
  if (!y2.requiresGrad) x2.dispose();
  y2.dispose();
  return y;
}
