// Token sampling on the GPU for generation (DESIGN.md §4): classifier-free guidance, temperature,
// top-k, top-p and a seeded inverse-CDF draw in one kernel (kernels/sample.wgsl), with no readback.
import { ShapeError } from "../errors.ts";
import { dispatch, f32bits, grid, pipeline } from "../gpu/mod.ts";
import sampleWgsl from "../../kernels/sample.wgsl" with { type: "text" };
import bestRowsWgsl from "../../kernels/best_rows.wgsl" with { type: "text" };
import { Tensor } from "./tensor.ts";

export interface SampleOptions {
  /** Guidance strength t: logits = (1 + t)·cond − t·uncond (needs uncond when t ≠ 0). */
  guidance?: number;
  /**
   * Default 1; 0 means greedy (argmax, ties → lowest index; top-k and top-p are moot), as does a
   * temperature below f32's smallest normal 2^-126, which a GPU may flush to 0.
   */
  temperature?: number;
  /**
   * Default 0 = off; keep the K largest guided logits. Every logit equal to the K-th largest is
   * kept too, so ties at the threshold can keep more than K.
   */
  topK?: number;
  /**
   * Default 1 = off; keep the smallest set of most-probable tokens whose probability (after
   * temperature and top-k) sums to ≥ p. As with top-k, ties at the threshold are all kept.
   */
  topP?: number;
  /** u32. */
  seed: number;
  /** u32, e.g. the scale index: another stream gives independent draws. */
  stream: number;
}

const fmt = (t: Tensor) => `[${t.shape.join(", ")}] ${t.dtype}`;
const isU32 = (x: number) => Number.isInteger(x) && x >= 0 && x < 2 ** 32;

/**
 * cond, uncond: f32 [N, V] logits (uncond may be null). Returns i32 [N] sampled token ids. No
 * gradient, no readback. Row i draws with sampleUniform(seed, stream, i): the kept tokens in index
 * order, the first whose cumulative probability exceeds u. Same inputs and seed, same ids.
 */
export function sampleTokens(cond: Tensor, uncond: Tensor | null, opts: SampleOptions): Tensor {
  const op = "sampleTokens";
  const { guidance = 0, temperature = 1, topK = 0, topP = 1, seed, stream } = opts;
  if (cond.dtype !== "f32" || cond.shape.length !== 2 || cond.shape[1] < 1) {
    throw new ShapeError(`${op}: cond must be f32 [N, V] with V ≥ 1, got ${fmt(cond)}`);
  }
  const [n, v] = cond.shape;
  if (uncond && (uncond.dtype !== "f32" || uncond.shape.join() !== cond.shape.join())) {
    throw new ShapeError(`${op}: uncond ${fmt(uncond)} does not match cond ${fmt(cond)}`);
  }
  if (!Number.isFinite(guidance)) {
    throw new ShapeError(`${op}: guidance must be finite, got ${guidance}`);
  }
  if (guidance !== 0 && !uncond) {
    throw new ShapeError(`${op}: guidance ${guidance} needs uncond logits (or guidance 0)`);
  }
  if (!(temperature >= 0 && Number.isFinite(temperature))) {
    throw new ShapeError(`${op}: temperature must be finite and ≥ 0, got ${temperature}`);
  }
  if (!isU32(topK)) throw new ShapeError(`${op}: topK must be an integer ≥ 0, got ${topK}`);
  if (topK > 0 && topK < v && v > 2 ** 24) {
    throw new ShapeError(`${op}: top-k counts in f32, exact up to V = 2^24; got V = ${v}`);
  }
  if (!(topP > 0 && topP <= 1)) throw new ShapeError(`${op}: topP must be in (0, 1], got ${topP}`);
  if (!isU32(seed)) throw new ShapeError(`${op}: seed must be a u32, got ${seed}`);
  if (!isU32(stream)) throw new ShapeError(`${op}: stream must be a u32, got ${stream}`);

  const guided = uncond !== null && guidance !== 0;
  const ids = new Tensor([n], "i32", undefined, op);
  if (n > 0) {
    dispatch(
      pipeline(sampleWgsl, "sample"),
      [cond.buffer, (guided ? uncond : cond).buffer, ids.buffer],
      [
        n,
        v,
        guided ? 1 : 0,
        topK,
        f32bits(guidance),
        f32bits(temperature < 2 ** -126 ? 0 : temperature),
        f32bits(topP),
        seed,
        stream,
      ],
      grid(n),
    );
  }
  return ids;
}

/**
 * Best of n candidates with no readback: rows [G·n, ...] hold G groups of n candidates, and
 * cond, uncond [G·n] their summed −log p under the caption and the null caption (uncond null:
 * unguided). Returns [G, ...]: each group's row with the highest −c + λ·(u − c) (−c unguided),
 * the first of equal scores.
 */
export function bestRows(
  rows: Tensor,
  n: number,
  cond: Tensor,
  uncond: Tensor | null,
  lambda: number,
): Tensor {
  const op = "bestRows";
  const total = rows.shape[0] ?? 0;
  if (rows.dtype !== "f32" || rows.shape.length < 1 || !(Number.isInteger(n) && n >= 1)) {
    throw new ShapeError(`${op}: rows must be f32 [G·n, ...] and n ≥ 1, got ${fmt(rows)}, n ${n}`);
  }
  if (total % n !== 0) throw new ShapeError(`${op}: ${total} rows are not groups of ${n}`);
  for (const [name, t] of [["cond", cond], ["uncond", uncond]] as const) {
    if (t && (t.dtype !== "f32" || t.size !== total)) {
      throw new ShapeError(`${op}: ${name} must be f32 with ${total} scores, got ${fmt(t)}`);
    }
  }
  if (!Number.isFinite(lambda)) throw new ShapeError(`${op}: lambda must be finite, got ${lambda}`);
  const groups = total / n, width = total === 0 ? 0 : rows.size / total;
  const out = new Tensor([groups, ...rows.shape.slice(1)], "f32", undefined, op);
  if (out.size > 0) {
    dispatch(
      pipeline(bestRowsWgsl, "main"),
      [cond.buffer, (uncond ?? cond).buffer, rows.buffer, out.buffer],
      [groups, n, width, uncond ? 1 : 0, f32bits(lambda)],
      grid(Math.ceil(out.size / 256)),
    );
  }
  return out;
}

/** lowbias32 (Chris Wellons): a bijective 32-bit integer hash, as the kernel's mix32. */
function mix32(x: number): number {
  let h = x >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d);
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * The uniform in [0,1) that row `row` draws: a counter-based hash of (seed, stream, row), the same
 * function the kernel uses, exported for the CPU reference and tests. 24 bits, exact in f32.
 */
export function sampleUniform(seed: number, stream: number, row: number): number {
  const h = mix32(mix32(mix32((seed ^ 0x9e3779b9) >>> 0) + stream) + row);
  return (h >>> 8) / 16777216;
}
