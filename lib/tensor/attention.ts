// Attention (flash-style, kernels/attention.ts) with the level masks of attention_mask.ts, its
// backward, and the KV cache that generation carries from one scale to the next (DESIGN.md §4).
//
// Layout: q [B, Sq, H, Dh], k and v [B, Sk, H, Dh], out like q — a Linear layer's output viewed
// with the heads split out (x.reshape([B, S, H, Dh])), so no permute is needed either way.
// Scale 1/√Dh. The forward saves the per-row logsumexp; the backward recomputes the
// probabilities tile by tile (one pass over key tiles for dK and dV, one over query tiles for
// dQ) and never holds an Sq×Sk matrix in memory.
import { ShapeError } from "../errors.ts";
import { dispatch, generated, gpu, grid, pipeline } from "../gpu/mod.ts";
import {
  flashAttentionWgsl,
  type FlashKernel,
  packFlashParams,
  paddedHeadDim,
  TILE,
} from "../../kernels/attention.ts";
import deltaWgsl from "../../kernels/attention_delta.wgsl" with { type: "text" };
import kvCacheWgsl from "../../kernels/kv_cache.wgsl" with { type: "text" };
import type { AttentionMask } from "./attention_mask.ts";
import { keep, record, Tensor } from "./tensor.ts";

export * from "./attention_mask.ts";
export * from "./rope.ts";

const MAX_HEAD_DIM = 256;

function flashPipeline(kind: FlashKernel, headDim: number): GPUComputePipeline {
  const dp = paddedHeadDim(headDim);
  return pipeline(generated(`flash:${kind}:${dp}`, () => flashAttentionWgsl(kind, dp)));
}

interface Plan {
  B: number;
  H: number;
  Dh: number;
  sq: number;
  sk: number;
  kvRows: number;
  qStart: number;
}

const fmt = (t: Tensor) => `[${t.shape.join(", ")}] ${t.dtype}`;

/** Checks shapes, dtypes and the mask before anything is dispatched. */
function plan(
  op: string,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  mask: AttentionMask,
  sk: number,
  qStart: number,
): Plan {
  const shapes = `q ${fmt(q)}, k ${fmt(k)}, v ${fmt(v)}`;
  for (const t of [q, k, v]) {
    if (t.shape.length !== 4 || t.dtype !== "f32") {
      throw new ShapeError(`${op}: needs f32 tensors of shape [B, S, H, Dh], got ${shapes}`);
    }
  }
  const [B, sq, H, Dh] = q.shape;
  const [kb, kvRows, kh, kd] = k.shape;
  if (k.shape.join() !== v.shape.join() || kb !== B || kh !== H || kd !== Dh) {
    throw new ShapeError(`${op}: k and v must be [${B}, Sk, ${H}, ${Dh}] like q, got ${shapes}`);
  }
  if (Dh % 4 !== 0 || Dh < 4 || Dh > MAX_HEAD_DIM) {
    throw new ShapeError(`${op}: head dim ${Dh} must be a multiple of 4 in [4, ${MAX_HEAD_DIM}]`);
  }
  if (mask.positions.disposed || mask.keys.disposed) {
    throw new ShapeError(`${op}: mask was disposed`);
  }
  if (mask.batch !== B) {
    throw new ShapeError(`${op}: mask is for batch ${mask.batch}, tensors for batch ${B}`);
  }
  if (!Number.isInteger(qStart) || qStart < 0 || qStart + sq > mask.length || sk > mask.length) {
    throw new ShapeError(
      `${op}: queries at positions [${qStart}, ${qStart + sq}) and ${sk} keys don't fit the ` +
        `mask's ${mask.length} positions`,
    );
  }
  const max = gpu().limits.maxComputeWorkgroupsPerDimension;
  if (Math.ceil(Math.max(sq, sk) / TILE) > max || H > max || B > max) {
    throw new ShapeError(`${op}: ${shapes} needs more workgroups than this device allows`);
  }
  return { B, H, Dh, sq, sk, kvRows, qStart };
}

function params(p: Plan, mask: AttentionMask): number[] {
  return packFlashParams({
    heads: p.H,
    headDim: p.Dh,
    sq: p.sq,
    sk: p.sk,
    qRows: p.sq,
    kvRows: p.kvRows,
    qStart: p.qStart,
    maskLength: mask.length,
    scale: 1 / Math.sqrt(p.Dh),
  });
}

function forward(p: Plan, q: Tensor, k: Tensor, v: Tensor, mask: AttentionMask) {
  const out = new Tensor(q.shape, "f32", undefined, "attention");
  const lse = new Tensor([p.B, p.H, p.sq], "f32", undefined, "attention");
  if (p.sq > 0) {
    dispatch(
      flashPipeline("forward", p.Dh),
      [q, k, v, mask.positions, mask.keys, out, lse].map((t) => t.buffer),
      params(p, mask),
      [Math.ceil(p.sq / TILE), p.H, p.B],
    );
  }
  return { out, lse };
}

/** dq, dk, dv (null where not wanted) from dout, the saved out and lse. */
function backward(
  p: Plan,
  [q, k, v]: Tensor[],
  mask: AttentionMask,
  out: Tensor,
  lse: Tensor,
  dout: Tensor,
): (Tensor | null)[] {
  const wantQ = q.requiresGrad, wantKV = k.requiresGrad || v.requiresGrad;
  const delta = new Tensor([p.B, p.H, p.sq], "f32");
  const rows = p.B * p.sq * p.H;
  if (rows > 0) {
    dispatch(
      pipeline(deltaWgsl, "delta"),
      [dout.buffer, out.buffer, delta.buffer],
      [p.H, p.Dh / 4, p.sq, rows],
      grid(Math.ceil(rows / 256)),
    );
  }
  const shared = [q, k, v, mask.positions, mask.keys, dout, lse, delta].map((t) => t.buffer);
  const u = params(p, mask);
  let dk: Tensor | null = null, dv: Tensor | null = null, dq: Tensor | null = null;
  if (wantKV) {
    dk = new Tensor(k.shape, "f32", undefined, "attention backward");
    dv = new Tensor(v.shape, "f32", undefined, "attention backward");
    if (p.sk > 0) {
      dispatch(flashPipeline("dkdv", p.Dh), [...shared, dk.buffer, dv.buffer], u, [
        Math.ceil(p.sk / TILE),
        p.H,
        p.B,
      ]);
    }
  }
  if (wantQ) {
    dq = new Tensor(q.shape, "f32", undefined, "attention backward");
    if (p.sq > 0) {
      dispatch(flashPipeline("dq", p.Dh), [...shared, dq.buffer], u, [
        Math.ceil(p.sq / TILE),
        p.H,
        p.B,
      ]);
    }
  }
  delta.dispose();
  const pick = (t: Tensor | null, want: boolean) => {
    if (t && !want) t.dispose();
    return want ? t : null;
  };
  return [dq, pick(dk, k.requiresGrad), pick(dv, v.requiresGrad)];
}

export interface AttentionOptions {
  /** Mask position of the first query; default Sk − Sq (the queries are the last positions). */
  qStart?: number;
}

/**
 * softmax(q·kᵀ/√Dh + mask)·v per head: q [B, Sq, H, Dh], k and v [B, Sk, H, Dh] (f32, Dh a
 * multiple of 4 up to 256). Query i sits at mask position qStart + i, key j at position j. A
 * query that sees no key outputs 0 and gets zero gradient.
 */
export function attention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  mask: AttentionMask,
  opts: AttentionOptions = {},
): Tensor {
  const sk = k.shape[1] ?? 0;
  const p = plan("attention", q, k, v, mask, sk, opts.qStart ?? sk - (q.shape[1] ?? 0));
  const { out, lse } = forward(p, q, k, v, mask);
  const result = record(
    out,
    "attention",
    [q, k, v],
    (g) => backward(p, [q, k, v], mask, out, lse, g),
  );
  if (!result.node) lse.dispose();
  return result;
}

/**
 * Keys and values of every position so far, [B, capacity, H, Dh] each, preallocated: append()
 * writes only the new rows. Owned by the caller (outside tidy scopes); dispose() frees it.
 */
export class KVCache {
  readonly k: Tensor;
  readonly v: Tensor;
  length = 0;

  constructor(batch: number, capacity: number, heads: number, headDim: number) {
    if (headDim % 4 !== 0) {
      throw new ShapeError(`KVCache: head dim ${headDim} is not a multiple of 4`);
    }
    this.k = keep(new Tensor([batch, capacity, heads, headDim], "f32", undefined, "KVCache"));
    this.v = keep(new Tensor([batch, capacity, heads, headDim], "f32", undefined, "KVCache"));
  }

  get capacity(): number {
    return this.k.shape[1];
  }

  /** Appends k, v [B, n, H, Dh] (already rotated) as positions length .. length + n − 1. */
  append(k: Tensor, v: Tensor): void {
    const [B, , H, Dh] = this.k.shape;
    for (const t of [k, v]) {
      if (
        t.shape.length !== 4 || t.dtype !== "f32" || t.shape[0] !== B || t.shape[2] !== H ||
        t.shape[3] !== Dh
      ) {
        throw new ShapeError(`KVCache.append: needs f32 [${B}, n, ${H}, ${Dh}], got ${fmt(t)}`);
      }
    }
    const n = k.shape[1];
    if (v.shape[1] !== n) {
      throw new ShapeError(`KVCache.append: k ${fmt(k)} and v ${fmt(v)} differ`);
    }
    if (this.length + n > this.capacity) {
      throw new ShapeError(
        `KVCache.append: ${this.length} + ${n} rows exceed the capacity ${this.capacity}`,
      );
    }
    const total = (B * n * H * Dh) / 4;
    if (total > 0) {
      for (const [src, dst] of [[k, this.k], [v, this.v]]) {
        dispatch(
          pipeline(kvCacheWgsl, "kv_append"),
          [src.buffer, dst.buffer],
          [H, Dh / 4, n, total, this.capacity, this.length],
          grid(Math.ceil(total / 256)),
        );
      }
    }
    this.length += n;
  }

  /** Forgets every row (the buffers are reused). */
  reset(): void {
    this.length = 0;
  }

  dispose(): void {
    this.k.dispose();
    this.v.dispose();
  }
}

/**
 * Attention of the newest q.shape[1] positions (already appended to `cache`) over every cached
 * position: equal to the matching rows of the full pass. Inference only (no gradient).
 */
export function attendCached(q: Tensor, cache: KVCache, mask: AttentionMask): Tensor {
  const sq = q.shape[1] ?? 0;
  const p = plan("attendCached", q, cache.k, cache.v, mask, cache.length, cache.length - sq);
  const { out, lse } = forward(p, q, cache.k, cache.v, mask);
  lse.dispose();
  return out;
}
