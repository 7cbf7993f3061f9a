// Core tensor ops: elementwise (generated from kernels/elementwise.ts), reductions, data movement.
// Each op validates shapes and dtypes before dispatching and records its backward.
import { ShapeError } from "../errors.ts";
import { dispatch, f32bits, generated, gpu, grid, pipeline } from "../gpu/mod.ts";
import {
  BINARY,
  binaryBackwardWgsl,
  binaryForwardWgsl,
  mambaGateWgsl,
  MAX_RANK,
  stridedCopyWgsl,
  UNARY,
  unaryBackwardWgsl,
  unaryForwardWgsl,
} from "../../kernels/elementwise.ts";
import reduceWgsl from "../../kernels/reduce.wgsl" with { type: "text" };
import copyWgsl from "../../kernels/copy.wgsl" with { type: "text" };
import fillWgsl from "../../kernels/fill.wgsl" with { type: "text" };
import accumulateWgsl from "../../kernels/accumulate.wgsl" with { type: "text" };
import castWgsl from "../../kernels/cast.wgsl" with { type: "text" };
import castBackWgsl from "../../kernels/cast_back.wgsl" with { type: "text" };
import { BYTES, type DType, floatToHalf, isGradEnabled, record, Tensor } from "./tensor.ts";

const WG = 256;
const groups = (n: number) => grid(Math.ceil(n / WG));

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function floatDtype(op: string, ...ts: Tensor[]): "f32" | "f16" {
  const d = ts[0].dtype;
  for (const t of ts) {
    if (t.dtype !== d) {
      throw new ShapeError(`${op}: dtypes differ (${ts.map((x) => x.dtype).join(", ")})`);
    }
  }
  if (d !== "f32" && d !== "f16") throw new ShapeError(`${op}: needs f32 or f16, got ${d}`);
  if (d === "f16" && !gpu().f16) throw new ShapeError(`${op}: this adapter has no shader-f16`);
  return d;
}

// ---------------------------------------------------------------------------------------------
// Broadcasting

/** NumPy broadcasting of two shapes. */
export function broadcastShapes(op: string, a: readonly number[], b: readonly number[]): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new ShapeError(`${op}: shapes [${a}] and [${b}] do not broadcast`);
    }
    out.push(da === 1 ? db : da);
  }
  return out;
}

function contiguousStrides(shape: readonly number[]): number[] {
  const s = new Array(shape.length).fill(1);
  for (let i = shape.length - 2; i >= 0; i--) s[i] = s[i + 1] * shape[i + 1];
  return s;
}

/**
 * Collapses an output shape and its operands' strides (0 on broadcast dims) to rank 6, merging
 * dims that are contiguous for every operand.
 */
function collapse(
  op: string,
  out: readonly number[],
  operands: (readonly number[])[],
): { dims: number[]; strides: number[][] } {
  const n = out.length;
  const strides = operands.map((shape) => {
    const padded = [...new Array(n - shape.length).fill(1), ...shape];
    const cs = contiguousStrides(padded);
    return padded.map((d, i) => (d === 1 ? 0 : cs[i]));
  });
  return collapseStrided(op, out, strides);
}

/** The same for explicit per-operand strides over the output's dims (permutes). */
function collapseStrided(
  op: string,
  out: readonly number[],
  strides: number[][],
): { dims: number[]; strides: number[][] } {
  const dims: number[] = [];
  const st: number[][] = strides.map(() => []);
  for (let i = 0; i < out.length; i++) {
    if (out[i] === 1) continue;
    const last = dims.length - 1;
    const mergeable = last >= 0 &&
      strides.every((s, k) => st[k][last] === s[i] * out[i]);
    if (mergeable) {
      dims[last] *= out[i];
      strides.forEach((s, k) => (st[k][last] = s[i]));
    } else {
      dims.push(out[i]);
      strides.forEach((s, k) => st[k].push(s[i]));
    }
  }
  if (dims.length > MAX_RANK) {
    throw new ShapeError(`${op}: rank > ${MAX_RANK} after collapsing [${out}]`);
  }
  while (dims.length < MAX_RANK) {
    dims.unshift(1);
    st.forEach((s) => s.unshift(0));
  }
  return { dims, strides: st };
}

function elementwiseUniforms(dims: number[], sa: number[], sb: number[], alpha = 0): number[] {
  const n = dims.reduce((x, y) => x * y, 1);
  return [n, ...dims.slice(1), ...sa, ...sb, f32bits(alpha)];
}

function flatUniforms(n: number, alpha: number): number[] {
  const dims = [1, 1, 1, 1, 1, n];
  const st = [0, 0, 0, 0, 0, 1];
  return elementwiseUniforms(dims, st, st, alpha);
}

// ---------------------------------------------------------------------------------------------
// Elementwise

function unary(op: string, x: Tensor, alpha = 0): Tensor {
  const dtype = floatDtype(op, x);
  const out = new Tensor(x.shape, dtype, undefined, op);
  if (x.size > 0) {
    const u = flatUniforms(x.size, alpha);
    dispatch(
      pipeline(generated(`unary:${op}:${dtype}`, () => unaryForwardWgsl(op, dtype))),
      [x.buffer, out.buffer],
      u,
      groups(x.size),
    );
  }
  return record(out, op, [x], (g) => {
    const dx = new Tensor(x.shape, dtype);
    if (x.size > 0) {
      const u = flatUniforms(x.size, alpha);
      dispatch(
        pipeline(generated(`unary-bwd:${op}:${dtype}`, () => unaryBackwardWgsl(op, dtype))),
        [x.buffer, out.buffer, g.buffer, dx.buffer],
        u,
        groups(x.size),
      );
    }
    return [dx];
  });
}

export const neg = (x: Tensor) => unary("neg", x);
export const scale = (x: Tensor, s: number) => unary("scale", x, s);
export const addScalar = (x: Tensor, s: number) => unary("addScalar", x, s);
export const exp = (x: Tensor) => unary("exp", x);
export const log = (x: Tensor) => unary("log", x);
export const sqrt = (x: Tensor) => unary("sqrt", x);
export const rsqrt = (x: Tensor) => unary("rsqrt", x);
export const square = (x: Tensor) => unary("square", x);
export const relu = (x: Tensor) => unary("relu", x);
export const abs = (x: Tensor) => unary("abs", x);
export const sigmoid = (x: Tensor) => unary("sigmoid", x);
export const tanh = (x: Tensor) => unary("tanh", x);
export const silu = (x: Tensor) => unary("silu", x);
export const gelu = (x: Tensor) => unary("gelu", x);
export const softplus = (x: Tensor) => unary("softplus", x);
/** The unary ops of the table, by name (for tests and benchmarks). */
export const unaryOps = Object.keys(UNARY);

function binary(op: string, a: Tensor, b: Tensor): Tensor {
  const dtype = floatDtype(op, a, b);
  const shape = broadcastShapes(op, a.shape, b.shape);
  const out = new Tensor(shape, dtype, undefined, op);
  const { dims, strides } = collapse(op, shape, [a.shape, b.shape]);
  const u = elementwiseUniforms(dims, strides[0], strides[1]);
  if (out.size > 0) {
    dispatch(
      pipeline(generated(`binary:${op}:${dtype}`, () => binaryForwardWgsl(op, dtype))),
      [a.buffer, b.buffer, out.buffer],
      u,
      groups(out.size),
    );
  }
  return record(out, op, [a, b], (g) => {
    const grads: (Tensor | null)[] = [];
    for (const [which, input] of [["da", a], ["db", b]] as const) {
      if (!input.requiresGrad) {
        grads.push(null);
        continue;
      }
      // d(a + b) is the output's gradient itself (so is d(a − b)/da): no kernel, only a sum where
      // the operand was broadcast. The autograd lets several inputs share one gradient tensor.
      if (op === "add" || (op === "sub" && which === "da")) {
        grads.push(sameShape(shape, input.shape) ? g : sumTo(g, input.shape));
        continue;
      }
      const full = new Tensor(shape, dtype);
      if (full.size > 0) {
        dispatch(
          pipeline(
            generated(
              `binary-bwd:${op}:${which}:${dtype}`,
              () => binaryBackwardWgsl(op, which, dtype),
            ),
          ),
          [a.buffer, b.buffer, g.buffer, full.buffer],
          u,
          groups(full.size),
        );
      }
      if (sameShape(full.shape, input.shape)) grads.push(full);
      else {
        grads.push(sumTo(full, input.shape));
        full.dispose();
      }
    }
    return grads;
  });
}

export const add = (a: Tensor, b: Tensor) => binary("add", a, b);
export const sub = (a: Tensor, b: Tensor) => binary("sub", a, b);
export const mul = (a: Tensor, b: Tensor) => binary("mul", a, b);
export const div = (a: Tensor, b: Tensor) => binary("div", a, b);
export const binaryOps = Object.keys(BINARY);

/**
 * Mamba's output gate (y + u·D)·silu(z) over y, u [..., di] and D [di], with z the second half of
 * the in_proj output xz [..., 2·di], read in place (no slice). One dispatch where nothing is
 * recorded for backward; where something would be, the composed ops, which have one.
 */
export function mambaGate(y: Tensor, u: Tensor, D: Tensor, xz: Tensor): Tensor {
  const di = D.shape[0];
  const lead = y.shape.slice(0, -1);
  const ok = D.shape.length === 1 && y.shape.length >= 1 && y.shape.at(-1) === di &&
    sameShape(u.shape, y.shape) && sameShape(xz.shape, [...lead, 2 * di]);
  if (!ok) {
    throw new ShapeError(
      `mambaGate: needs y and u [..., di], D [di] and xz [..., 2·di], got y [${y.shape}], ` +
        `u [${u.shape}], D [${D.shape}], xz [${xz.shape}]`,
    );
  }
  for (const t of [y, u, D, xz]) {
    if (t.dtype !== "f32") throw new ShapeError(`mambaGate: needs f32, got ${t.dtype}`);
  }
  if (isGradEnabled() && [y, u, D, xz].some((t) => t.requiresGrad)) {
    return mul(add(y, mul(u, D)), silu(slice(xz, -1, di, 2 * di)));
  }
  const out = new Tensor(y.shape, "f32", undefined, "mambaGate");
  if (out.size > 0) {
    dispatch(
      pipeline(generated("mambaGate:f32", mambaGateWgsl)),
      [y.buffer, u.buffer, D.buffer, xz.buffer, out.buffer],
      [out.size, di],
      groups(out.size),
    );
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Reductions

function normAxis(op: string, shape: readonly number[], axis: number): number {
  const a = axis < 0 ? axis + shape.length : axis;
  if (!Number.isInteger(a) || a < 0 || a >= shape.length) {
    throw new ShapeError(`${op}: axis ${axis} out of range for [${shape}]`);
  }
  return a;
}

function view3(shape: readonly number[], axis: number) {
  const outer = shape.slice(0, axis).reduce((x, y) => x * y, 1);
  const inner = shape.slice(axis + 1).reduce((x, y) => x * y, 1);
  return { outer, n: shape[axis], inner };
}

/** Sum (scale 1), mean (scale 1/n) or max of x over [outer, n, inner]'s middle axis. */
function reduceView(
  x: Tensor,
  outer: number,
  n: number,
  inner: number,
  kind: "sum" | "max",
  scaleBy: number,
): { out: Tensor; arg: Tensor | null } {
  const out = new Tensor([outer * inner], "f32");
  const arg = new Tensor([kind === "max" ? outer * inner : 1], "u32");
  const uniforms = (len: number, m = n, s = scaleBy) => [
    outer,
    m,
    inner,
    f32bits(s),
    kind === "max" ? 1 : 0,
    len,
  ];
  if (outer * inner > 0) {
    if (inner === 1) {
      dispatch(
        pipeline(reduceWgsl, "rows"),
        [x.buffer, out.buffer, arg.buffer],
        uniforms(n),
        grid(outer),
      );
    } else {
      // A long sum over few columns (a bias gradient: [tokens, width] → [width]) leaves most of a
      // GPU idle with one thread per column: split n into chunks, then sum the chunks.
      const len = kind === "sum" ? columnChunk(outer * inner, n) : n;
      const chunks = Math.ceil(n / len);
      if (chunks === 1) {
        dispatch(
          pipeline(reduceWgsl, "columns"),
          [x.buffer, out.buffer, arg.buffer],
          uniforms(n),
          groups(outer * inner),
        );
      } else {
        const partial = new Tensor([outer * chunks * inner], "f32");
        dispatch(
          pipeline(reduceWgsl, "columns"),
          [x.buffer, partial.buffer, arg.buffer],
          uniforms(len, n, 1),
          groups(outer * chunks * inner),
        );
        dispatch(
          pipeline(reduceWgsl, "columns"),
          [partial.buffer, out.buffer, arg.buffer],
          uniforms(chunks, chunks),
          groups(outer * inner),
        );
        partial.dispose();
      }
    }
  }
  if (kind === "sum") {
    arg.dispose();
    return { out, arg: null };
  }
  return { out, arg };
}

/** Threads a column reduction should have to fill a GPU, and the shortest chunk worth a pass. */
const COLUMN_THREADS = 1 << 16, MIN_CHUNK = 32;

/** Rows of n each thread of a column sum walks (n itself when the columns alone fill a GPU). */
export function columnChunk(columns: number, n: number): number {
  if (columns >= COLUMN_THREADS || n < 2 * MIN_CHUNK) return n;
  const chunks = Math.min(Math.ceil(n / MIN_CHUNK), Math.ceil(COLUMN_THREADS / columns));
  return Math.ceil(n / chunks);
}

function reduced(shape: readonly number[], axis: number, keepDim: boolean): number[] {
  return keepDim ? shape.map((d, i) => (i === axis ? 1 : d)) : shape.filter((_, i) => i !== axis);
}

function sumOrMean(op: "sum" | "mean", x: Tensor, axis: number, keepDim: boolean): Tensor {
  floatDtype(op, x);
  if (x.dtype !== "f32") throw new ShapeError(`${op}: needs f32, got ${x.dtype}`);
  const ax = normAxis(op, x.shape, axis);
  const { outer, n, inner } = view3(x.shape, ax);
  const { out } = reduceView(x, outer, n, inner, "sum", op === "mean" ? 1 / n : 1);
  const shaped = out.reshape(reduced(x.shape, ax, keepDim));
  out.dispose();
  return record(shaped, op, [x], (g) => {
    const k = g.reshape(reduced(x.shape, ax, true));
    const ones = fill(x.shape, op === "mean" ? 1 / n : 1);
    const dx = mul(ones, k);
    ones.dispose();
    k.dispose();
    return [dx];
  });
}

export const sum = (x: Tensor, axis: number, keepDim = false) => sumOrMean("sum", x, axis, keepDim);
export const mean = (x: Tensor, axis: number, keepDim = false) =>
  sumOrMean("mean", x, axis, keepDim);

/** Sum of every element, as a [1] tensor. */
export function sumAll(x: Tensor): Tensor {
  const flat = x.reshape([x.size]);
  const s = sum(flat, 0, true);
  flat.dispose();
  return s;
}

/** Max over an axis (gradient to the first maximal element, as PyTorch's max(dim)). */
export function max(x: Tensor, axis: number, keepDim = false): Tensor {
  if (x.dtype !== "f32") throw new ShapeError(`max: needs f32, got ${x.dtype}`);
  const ax = normAxis("max", x.shape, axis);
  const { outer, n, inner } = view3(x.shape, ax);
  const { out, arg } = reduceView(x, outer, n, inner, "max", 1);
  const shaped = out.reshape(reduced(x.shape, ax, keepDim));
  out.dispose();
  const argmax = arg!;
  const result = record(shaped, "max", [x], (g) => {
    const dx = new Tensor(x.shape, "f32");
    if (dx.size > 0) {
      dispatch(
        pipeline(reduceWgsl, "max_backward"),
        [g.buffer, dx.buffer, argmax.buffer],
        [outer, n, inner, 0, 1, n],
        groups(dx.size),
      );
    }
    return [dx];
  });
  if (!result.node) argmax.dispose();
  return result;
}

/**
 * Sums a gradient of a broadcast result back to an operand's shape: every dim where the target
 * is 1 (or missing) is summed away.
 */
export function sumTo(g: Tensor, shape: readonly number[]): Tensor {
  if (sameShape(g.shape, shape)) return copy(g);
  const n = g.shape.length;
  const target = [...new Array(n - shape.length).fill(1), ...shape];
  if (shape.length > n || target.some((d, i) => d !== 1 && d !== g.shape[i])) {
    throw new ShapeError(`sumTo: cannot reduce [${g.shape}] to [${shape}]`);
  }
  // Runs of reduced (R) and kept (K) dims; reduce the last R run until none is left.
  const runs: { size: number; reduce: boolean }[] = [];
  for (let i = 0; i < n; i++) {
    if (g.shape[i] === 1) continue;
    const reduce = target[i] === 1;
    const last = runs.at(-1);
    if (last && last.reduce === reduce) last.size *= g.shape[i];
    else runs.push({ size: g.shape[i], reduce });
  }
  let cur = g;
  while (runs.some((r) => r.reduce)) {
    const k = runs.map((r) => r.reduce).lastIndexOf(true);
    const outer = runs.slice(0, k).reduce((a, r) => a * r.size, 1);
    const inner = runs.slice(k + 1).reduce((a, r) => a * r.size, 1);
    const { out } = reduceView(cur, outer, runs[k].size, inner, "sum", 1);
    if (cur !== g) cur.dispose();
    cur = out;
    runs.splice(k, 1);
    // Merge the now-adjacent kept runs.
    if (k > 0 && k < runs.length && !runs[k - 1].reduce && !runs[k].reduce) {
      runs[k - 1].size *= runs[k].size;
      runs.splice(k, 1);
    }
  }
  if (cur === g) return copy(g).reshape(shape);
  const shaped = cur.reshape(shape);
  cur.dispose();
  return shaped;
}

// ---------------------------------------------------------------------------------------------
// Creation and data movement

function words(t: Tensor): number {
  return Math.ceil(t.bytes / 4);
}

/** A new tensor with every element set to `value`. */
export function fill(shape: readonly number[], value: number, dtype: DType = "f32"): Tensor {
  const t = new Tensor(shape, dtype, undefined, "fill");
  let bits: number;
  if (dtype === "f32") bits = f32bits(value);
  else if (dtype === "f16") {
    const half = floatToHalf(value);
    bits = (half | (half << 16)) >>> 0;
  } else bits = value >>> 0;
  if (t.size > 0) dispatch(pipeline(fillWgsl), [t.buffer], [words(t), bits], groups(words(t)));
  return t;
}

export const zeros = (shape: readonly number[], dtype: DType = "f32") => fill(shape, 0, dtype);

/** A contiguous copy that owns its own buffer. */
export function copy(x: Tensor): Tensor {
  const out = new Tensor(x.shape, x.dtype, undefined, "copy");
  if (x.size > 0) {
    dispatch(
      pipeline(copyWgsl, "copy"),
      [x.buffer, out.buffer],
      [words(x), 0, 0, 0, 0, 0, 0, 0, 0],
      groups(words(x)),
    );
  }
  return record(out, "copy", [x], (g) => [copy(g)]);
}

/** dst += src, in place (for gradient accumulation; not recorded). */
export function addInPlace(dst: Tensor, src: Tensor): void {
  if (!sameShape(dst.shape, src.shape) || dst.dtype !== "f32" || src.dtype !== "f32") {
    throw new ShapeError(
      `addInPlace: [${dst.shape}] ${dst.dtype} += [${src.shape}] ${src.dtype} needs equal f32 shapes`,
    );
  }
  if (dst.size > 0) {
    dispatch(pipeline(accumulateWgsl), [src.buffer, dst.buffer], [dst.size], groups(dst.size));
  }
}

/** f32 <-> f16. */
export function cast(x: Tensor, dtype: "f32" | "f16"): Tensor {
  if (x.dtype === dtype) return copy(x);
  if (!gpu().f16) throw new ShapeError("cast: this adapter has no shader-f16");
  if (x.dtype !== "f32" && x.dtype !== "f16") throw new ShapeError(`cast: from ${x.dtype}`);
  const out = new Tensor(x.shape, dtype, undefined, "cast");
  const [code, entry] = dtype === "f16" ? [castWgsl, "to_f16"] : [castBackWgsl, "to_f32"];
  if (x.size > 0) dispatch(pipeline(code, entry), [x.buffer, out.buffer], [x.size], groups(x.size));
  return record(out, "cast", [x], (g) => [cast(g, x.dtype as "f32" | "f16")]);
}

/** Word-granular block copy over [outer, n, inner] views (slice and concat). */
function copyBlock(
  src: Tensor,
  dst: Tensor,
  outer: number,
  inner: number,
  nSrc: number,
  nDst: number,
  srcOff: number,
  dstOff: number,
  count: number,
): void {
  const per = BYTES[src.dtype] / 4; // words per element; f16 moves as pairs along inner
  let inn = inner;
  if (per < 1) {
    if (inner % 2 !== 0) {
      throw new ShapeError(`slice/concat of f16 needs an even inner size, got ${inner}`);
    }
    inn = inner / 2;
  }
  const total = outer * count * inn;
  if (total === 0) return;
  dispatch(
    pipeline(copyWgsl, "block"),
    [src.buffer, dst.buffer],
    [0, 0, outer, inn, nSrc, nDst, srcOff, dstOff, count],
    groups(total),
  );
}

/** x[..., start:end, ...] along `axis`. */
export function slice(x: Tensor, axis: number, start: number, end: number): Tensor {
  const ax = normAxis("slice", x.shape, axis);
  const n = x.shape[ax];
  if (
    !(Number.isInteger(start) && Number.isInteger(end) && 0 <= start && start <= end && end <= n)
  ) {
    throw new ShapeError(`slice: [${start}, ${end}) out of range for axis ${ax} of [${x.shape}]`);
  }
  const { outer, inner } = view3(x.shape, ax);
  const shape = x.shape.map((d, i) => (i === ax ? end - start : d));
  const out = new Tensor(shape, x.dtype, undefined, "slice");
  copyBlock(x, out, outer, inner, n, end - start, start, 0, end - start);
  return record(out, "slice", [x], (g) => {
    const dx = zeros(x.shape, g.dtype);
    copyBlock(g, dx, outer, inner, end - start, n, 0, start, end - start);
    return [dx];
  });
}

/** Concatenation along `axis`; every other dim must match. */
export function concat(xs: Tensor[], axis: number): Tensor {
  if (xs.length === 0) throw new ShapeError("concat: no tensors");
  const first = xs[0];
  const ax = normAxis("concat", first.shape, axis);
  for (const t of xs) {
    const ok = t.dtype === first.dtype && t.shape.length === first.shape.length &&
      t.shape.every((d, i) => i === ax || d === first.shape[i]);
    if (!ok) {
      throw new ShapeError(
        `concat: shapes ${xs.map((x) => `[${x.shape}] ${x.dtype}`).join(", ")} along axis ${ax}`,
      );
    }
  }
  const total = xs.reduce((a, t) => a + t.shape[ax], 0);
  const shape = first.shape.map((d, i) => (i === ax ? total : d));
  const out = new Tensor(shape, first.dtype, undefined, "concat");
  const { outer, inner } = view3(first.shape, ax);
  let off = 0;
  const offsets: number[] = [];
  for (const t of xs) {
    offsets.push(off);
    copyBlock(t, out, outer, inner, t.shape[ax], total, 0, off, t.shape[ax]);
    off += t.shape[ax];
  }
  return record(out, "concat", xs, (g) =>
    xs.map((t, i) => {
      if (!t.requiresGrad) return null;
      const dx = new Tensor(t.shape, g.dtype);
      copyBlock(g, dx, outer, inner, total, t.shape[ax], offsets[i], 0, t.shape[ax]);
      return dx;
    }));
}

/** Reorders dims: out.shape[i] = x.shape[perm[i]] (a contiguous copy, as torch's permute + contiguous). */
export function permute(x: Tensor, perm: number[]): Tensor {
  const n = x.shape.length;
  const ok = perm.length === n && [...perm].sort((a, b) => a - b).every((v, i) => v === i);
  if (!ok) {
    throw new ShapeError(`permute: [${perm}] is not a permutation of the dims of [${x.shape}]`);
  }
  if (x.dtype === "f16" && !gpu().f16) {
    throw new ShapeError("permute: this adapter has no shader-f16");
  }
  const shape = perm.map((p) => x.shape[p]);
  const inStrides = contiguousStrides(x.shape);
  const { dims, strides } = collapseStrided("permute", shape, [perm.map((p) => inStrides[p])]);
  const out = new Tensor(shape, x.dtype, undefined, "permute");
  const word = x.dtype === "f16" ? "f16" : "u32";
  if (out.size > 0) {
    dispatch(
      pipeline(generated(`strided:${word}`, () => stridedCopyWgsl(word))),
      [x.buffer, out.buffer],
      elementwiseUniforms(dims, strides[0], strides[0]),
      groups(out.size),
    );
  }
  const inverse = perm.map((_, i) => perm.indexOf(i));
  return record(out, "permute", [x], (g) => [permute(g, inverse)]);
}

/** Swaps two dims (a contiguous copy). */
export function transpose(x: Tensor, a: number, b: number): Tensor {
  const n = x.shape.length;
  const perm = Array.from({ length: n }, (_, i) => i);
  const [i, j] = [normAxis("transpose", x.shape, a), normAxis("transpose", x.shape, b)];
  [perm[i], perm[j]] = [perm[j], perm[i]];
  return permute(x, perm);
}
