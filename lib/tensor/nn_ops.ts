// Neural-network ops with fused kernels: RMSNorm and LayerNorm (kernels/norm.wgsl), softmax and
// log-softmax (kernels/softmax.wgsl), softmax + cross-entropy (kernels/cross_entropy.wgsl) and
// embedding lookup (kernels/embedding.wgsl). Each op validates shapes and dtypes before dispatching
// and records its backward; backward kernels are deterministic (no float atomics).
import { ShapeError } from "../errors.ts";
import { dispatch, f32bits, gpu, grid, pipeline } from "../gpu/mod.ts";
import normWgsl from "../../kernels/norm.wgsl" with { type: "text" };
import softmaxWgsl from "../../kernels/softmax.wgsl" with { type: "text" };
import crossEntropyWgsl from "../../kernels/cross_entropy.wgsl" with { type: "text" };
import embeddingWgsl from "../../kernels/embedding.wgsl" with { type: "text" };
import { add, sameShape, slice, sum, zeros } from "./ops.ts";
import { isGradEnabled, record, Tensor, tensor } from "./tensor.ts";

/** RMSNorm's and LayerNorm's eps (DESIGN.md §4). */
export const NORM_EPS = 1e-6;

const WG = 256;
const elementGroups = (n: number) => grid(Math.ceil(n / WG));
const fmt = (t: Tensor) => `[${t.shape.join(", ")}] ${t.dtype}`;

function requireF32(op: string, name: string, t: Tensor): void {
  if (t.dtype !== "f32") throw new ShapeError(`${op}: ${name} must be f32, got ${fmt(t)}`);
}

/** Rows of a [..., d] tensor viewed as [rows, d]; needs rank ≥ 1. */
function lastDimRows(op: string, x: Tensor): { rows: number; d: number } {
  if (x.shape.length === 0) throw new ShapeError(`${op}: x needs rank ≥ 1, got ${fmt(x)}`);
  const d = x.shape[x.shape.length - 1];
  return { rows: d === 0 ? 0 : x.size / d, d };
}

// ---------------------------------------------------------------------------------------------
// RMSNorm and LayerNorm

function checkNorm(op: string, x: Tensor, params: [string, Tensor][], eps: number) {
  requireF32(op, "x", x);
  const { rows, d } = lastDimRows(op, x);
  for (const [name, t] of params) {
    requireF32(op, name, t);
    if (t.shape.length !== 1 || t.shape[0] !== d) {
      throw new ShapeError(`${op}: ${name} ${fmt(t)} does not match x ${fmt(x)}: needs [${d}]`);
    }
  }
  if (!(eps > 0)) throw new ShapeError(`${op}: eps must be > 0, got ${eps}`);
  return { rows, d };
}

/** Σ over rows of dy·x̂ (or of dy when `biasSum`), by chunked column partials summed in order. */
function normParamGrad(
  x: Tensor,
  stats: Tensor,
  dy: Tensor,
  rows: number,
  d: number,
  biasSum: boolean,
): Tensor {
  if (rows === 0) return zeros([d]);
  // √rows rows per chunk balances the chunk pass against the final sum over chunks.
  const rowsPerChunk = Math.max(32, Math.ceil(Math.sqrt(rows)));
  const chunks = Math.ceil(rows / rowsPerChunk);
  const partial = new Tensor([chunks, d], "f32");
  dispatch(
    pipeline(normWgsl, "weight_grad"),
    [x.buffer, stats.buffer, partial.buffer, dy.buffer],
    [rows, d, 0, 0, rowsPerChunk, biasSum ? 1 : 0],
    grid(chunks * Math.ceil(d / WG)),
  );
  if (chunks === 1) {
    const g = partial.reshape([d]);
    partial.dispose();
    return g;
  }
  const g = sum(partial, 0);
  partial.dispose();
  return g;
}

/** How RMSNorm and LayerNorm walk a row: "auto" is a workgroup on a GPU, one invocation on a CPU. */
export type NormKernels = "auto" | "workgroup" | "rows";
let normKernels: NormKernels = "auto";

/** Sets how the norms walk their rows (tests, benchmarks); returns the previous setting. */
export function setNormKernels(k: NormKernels): NormKernels {
  const previous = normKernels;
  normKernels = k;
  return previous;
}

/** The entry point and grid of a norm pass over `rows` rows. */
function normPass(entry: "forward" | "input_grad" | "add_forward", rows: number) {
  const perRow = normKernels === "rows" || (normKernels === "auto" && gpu().isCpu);
  return perRow
    ? { pipe: pipeline(normWgsl, `${entry}_rows`), groups: grid(Math.ceil(rows / 64)) }
    : { pipe: pipeline(normWgsl, entry), groups: grid(rows) };
}

function normalize(
  op: string,
  x: Tensor,
  weight: Tensor,
  bias: Tensor | null,
  eps: number,
): Tensor {
  const params: [string, Tensor][] = [["weight", weight]];
  if (bias) params.push(["bias", bias]);
  const { rows, d } = checkNorm(op, x, params, eps);
  const centered = bias ? 1 : 0;
  const u = [rows, d, f32bits(eps), centered, 0, 0];
  const y = new Tensor(x.shape, "f32");
  const stats = new Tensor([rows, 2], "f32"); // (mean, rstd) per row
  if (rows > 0) {
    const { pipe, groups } = normPass("forward", rows);
    dispatch(
      pipe,
      [x.buffer, stats.buffer, weight.buffer, (bias ?? weight).buffer, y.buffer],
      u,
      groups,
    );
  }
  const inputs = bias ? [x, weight, bias] : [x, weight];
  const out = record(y, op, inputs, (dy) => {
    let dx: Tensor | null = null;
    if (x.requiresGrad) {
      dx = new Tensor(x.shape, "f32");
      if (rows > 0) {
        const { pipe, groups } = normPass("input_grad", rows);
        dispatch(pipe, [x.buffer, stats.buffer, weight.buffer, dy.buffer, dx.buffer], u, groups);
      }
    }
    const dweight = weight.requiresGrad ? normParamGrad(x, stats, dy, rows, d, false) : null;
    if (!bias) return [dx, dweight];
    const dbias = bias.requiresGrad ? normParamGrad(x, stats, dy, rows, d, true) : null;
    return [dx, dweight, dbias];
  });
  if (!out.node) stats.dispose();
  return out;
}

/** RMSNorm over the last dim: x·rsqrt(mean(x²) + eps)·weight, for x [..., D] and weight [D]. */
export function rmsNorm(x: Tensor, weight: Tensor, eps = NORM_EPS): Tensor {
  return normalize("rmsNorm", x, weight, null, eps);
}

/**
 * A residual add and the RMSNorm that reads it: sum = a + b and y = rmsNorm(sum, weight), for a and
 * b [..., D] of one shape and weight [D]. One dispatch where nothing is recorded for backward
 * (results match the two ops bit for bit); where something would be, the two ops, which have one.
 */
export function addRmsNorm(
  a: Tensor,
  b: Tensor,
  weight: Tensor,
  eps = NORM_EPS,
): { sum: Tensor; y: Tensor } {
  if (!sameShape(a.shape, b.shape)) {
    throw new ShapeError(`addRmsNorm: a ${fmt(a)} and b ${fmt(b)} differ in shape`);
  }
  requireF32("addRmsNorm", "b", b);
  const { rows, d } = checkNorm("addRmsNorm", a, [["weight", weight]], eps);
  if (isGradEnabled() && [a, b, weight].some((t) => t.requiresGrad)) {
    const s = add(a, b);
    return { sum: s, y: rmsNorm(s, weight, eps) };
  }
  const s = new Tensor(a.shape, "f32", undefined, "addRmsNorm");
  const y = new Tensor(a.shape, "f32", undefined, "addRmsNorm");
  if (rows > 0) {
    const { pipe, groups } = normPass("add_forward", rows);
    dispatch(
      pipe,
      [a.buffer, b.buffer, weight.buffer, s.buffer, y.buffer],
      [rows, d, f32bits(eps), 0, 0, 0],
      groups,
    );
  }
  return { sum: s, y };
}

/** LayerNorm over the last dim: (x - mean)·rsqrt(var + eps)·weight + bias (biased variance). */
export function layerNorm(x: Tensor, weight: Tensor, bias: Tensor, eps = NORM_EPS): Tensor {
  return normalize("layerNorm", x, weight, bias, eps);
}

// ---------------------------------------------------------------------------------------------
// Softmax and log-softmax

function softmaxOp(op: string, x: Tensor, logSpace: boolean): Tensor {
  requireF32(op, "x", x);
  const { rows, d } = lastDimRows(op, x);
  const u = [rows, d, logSpace ? 1 : 0];
  const y = new Tensor(x.shape, "f32");
  if (rows > 0) dispatch(pipeline(softmaxWgsl, "forward"), [x.buffer, y.buffer], u, grid(rows));
  return record(y, op, [x], (dy) => {
    const dx = new Tensor(x.shape, "f32");
    if (rows > 0) {
      dispatch(
        pipeline(softmaxWgsl, "backward"),
        [dy.buffer, dx.buffer, y.buffer],
        u,
        grid(rows),
      );
    }
    return [dx];
  });
}

/** Softmax over the last dim. */
export const softmax = (x: Tensor) => softmaxOp("softmax", x, false);
/** Log-softmax over the last dim (log-probabilities for KL distillation, DESIGN.md §4). */
export const logSoftmax = (x: Tensor) => softmaxOp("logSoftmax", x, true);

// ---------------------------------------------------------------------------------------------
// Integer ids

/** Ids held by the host: checked before upload, which a shader cannot do. */
export interface HostIds {
  data: ArrayLike<number>;
  shape: readonly number[];
}

/**
 * An i32 tensor of ids: a tensor is taken as it is (a shader cannot check it: see each op), host
 * ids are checked to lie in [0, vocab) or equal `ignore`, then uploaded.
 */
function idTensor(op: string, what: string, ids: Tensor | HostIds, vocab: number, ignore?: number) {
  if (ids instanceof Tensor) {
    if (ids.dtype !== "i32") throw new ShapeError(`${op}: ${what} must be i32, got ${fmt(ids)}`);
    return ids;
  }
  const size = ids.shape.reduce((a, b) => a * b, 1);
  if (ids.data.length !== size) {
    throw new ShapeError(`${op}: ${ids.data.length} ${what} for shape [${ids.shape.join(", ")}]`);
  }
  for (let i = 0; i < size; i++) {
    const id = ids.data[i];
    if (id === ignore) continue;
    if (!Number.isInteger(id) || id < 0 || id >= vocab) {
      throw new ShapeError(`${op}: ${what}[${i}] = ${id} is outside [0, ${vocab})`);
    }
  }
  return tensor(ids.data, ids.shape, "i32");
}

// ---------------------------------------------------------------------------------------------
// Cross-entropy

export interface CrossEntropyOptions {
  /** Rows with this target are left out of the loss and the mean (PyTorch's default -100). */
  ignoreIndex?: number;
  /** ε in [0, 1]: the target distribution is (1 - ε)·one-hot + ε/V, as PyTorch's. */
  labelSmoothing?: number;
}

/**
 * Mean cross-entropy of softmax(logits [N, V]) against targets [N] (i32), over the rows whose
 * target is not `ignoreIndex`, as a [1] tensor; 0 when every row is ignored (PyTorch gives NaN).
 * The mean and the count of counted rows are computed on the GPU. A target tensor's values outside
 * [0, V) that are not `ignoreIndex` count as ignored (host ids are checked and refused instead).
 */
export function softmaxCrossEntropy(
  logits: Tensor,
  targets: Tensor | HostIds,
  { ignoreIndex = -100, labelSmoothing = 0 }: CrossEntropyOptions = {},
): Tensor {
  const op = "softmaxCrossEntropy";
  requireF32(op, "logits", logits);
  if (logits.shape.length !== 2 || logits.shape[1] === 0) {
    throw new ShapeError(`${op}: logits must be [N, V] with V ≥ 1, got ${fmt(logits)}`);
  }
  const [n, v] = logits.shape;
  const targetShape = targets.shape;
  if (targetShape.length !== 1 || targetShape[0] !== n) {
    throw new ShapeError(
      `${op}: targets [${targetShape.join(", ")}] do not match logits ${fmt(logits)}: need [${n}]`,
    );
  }
  if (!Number.isInteger(ignoreIndex) || ignoreIndex < -(2 ** 31) || ignoreIndex >= 2 ** 31) {
    throw new ShapeError(`${op}: ignoreIndex must be a 32-bit integer, got ${ignoreIndex}`);
  }
  if (!(labelSmoothing >= 0 && labelSmoothing <= 1)) {
    throw new ShapeError(`${op}: labelSmoothing must be in [0, 1], got ${labelSmoothing}`);
  }
  const t = idTensor(op, "targets", targets, v, ignoreIndex);
  const u = [n, v, ignoreIndex >>> 0, f32bits(labelSmoothing)];
  const rowStats = new Tensor([n, 3], "f32"); // (lse, loss term, weight) per row
  const loss = new Tensor([1], "f32");
  const count = new Tensor([1], "f32");
  if (n > 0) {
    dispatch(
      pipeline(crossEntropyWgsl, "row_losses"),
      [rowStats.buffer, logits.buffer, t.buffer],
      u,
      grid(n),
    );
  }
  dispatch(
    pipeline(crossEntropyWgsl, "mean_loss"),
    [rowStats.buffer, loss.buffer, count.buffer],
    u,
    [1],
  );
  const out = record(loss, op, [logits], (dloss) => {
    const dlogits = new Tensor(logits.shape, "f32");
    if (dlogits.size > 0) {
      dispatch(
        pipeline(crossEntropyWgsl, "backward"),
        [rowStats.buffer, logits.buffer, t.buffer, dloss.buffer, count.buffer, dlogits.buffer],
        u,
        elementGroups(dlogits.size),
      );
    }
    return [dlogits];
  });
  if (!out.node) {
    rowStats.dispose();
    count.dispose();
    if (t !== targets) t.dispose();
  }
  return out;
}

/**
 * Per row, −log softmax(logits [N, V])[target] as [N] (no gradient): how unlikely each chosen
 * token was, e.g. to score sampled images by the model's own likelihood. Targets outside [0, V)
 * give 0.
 */
export function tokenNll(logits: Tensor, targets: Tensor): Tensor {
  const op = "tokenNll";
  requireF32(op, "logits", logits);
  if (logits.shape.length !== 2 || logits.shape[1] === 0) {
    throw new ShapeError(`${op}: logits must be [N, V] with V ≥ 1, got ${fmt(logits)}`);
  }
  const [n, v] = logits.shape;
  if (targets.dtype !== "i32" || targets.size !== n) {
    throw new ShapeError(`${op}: targets must be ${n} i32 ids, got ${fmt(targets)}`);
  }
  const rowStats = new Tensor([n, 3], "f32"); // (lse, nll, weight) per row
  if (n > 0) {
    dispatch(
      pipeline(crossEntropyWgsl, "row_losses"),
      [rowStats.buffer, logits.buffer, targets.buffer],
      [n, v, -100 >>> 0, f32bits(0)],
      grid(n),
    );
  }
  const col = slice(rowStats, 1, 1, 2);
  rowStats.dispose();
  const out = col.reshape([n]);
  col.dispose();
  return out;
}

// ---------------------------------------------------------------------------------------------
// Embedding

/**
 * Rows of weight [V, D] at ids [...] (i32): [..., D]. An id tensor's values outside [0, V) read a
 * zero row and get no gradient (host ids are checked and refused instead). The backward sums the
 * rows of repeated ids in index order, so it is deterministic.
 */
export function embedding(weight: Tensor, ids: Tensor | HostIds): Tensor {
  const op = "embedding";
  requireF32(op, "weight", weight);
  if (weight.shape.length !== 2) {
    throw new ShapeError(`${op}: weight must be [V, D], got ${fmt(weight)}`);
  }
  const [v, d] = weight.shape;
  const idx = idTensor(op, "ids", ids, v);
  const n = idx.size;
  const u = [n, v, d];
  const out = new Tensor([...idx.shape, d], "f32");
  if (out.size > 0) {
    dispatch(
      pipeline(embeddingWgsl, "forward"),
      [weight.buffer, idx.buffer, out.buffer],
      u,
      elementGroups(out.size),
    );
  }
  const result = record(out, op, [weight], (dy) => {
    const dweight = new Tensor(weight.shape, "f32");
    if (dweight.size > 0) {
      dispatch(
        pipeline(embeddingWgsl, "backward"),
        [dy.buffer, idx.buffer, dweight.buffer],
        u,
        grid(v * Math.ceil(d / WG)),
      );
    }
    return [dweight];
  });
  if (!result.node && idx !== ids) idx.dispose();
  return result;
}
