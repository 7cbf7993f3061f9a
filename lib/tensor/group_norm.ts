// GroupNorm (VQGAN's Normalize, DESIGN §3) over NCHW tensors; kernels in kernels/group_norm.wgsl.
import { ShapeError } from "../errors.ts";
import { dispatch, f32bits, grid, pipeline } from "../gpu/mod.ts";
import groupNormWgsl from "../../kernels/group_norm.wgsl" with { type: "text" };
import { planeThreads } from "./conv2d_implicit.ts";
import { record, Tensor } from "./tensor.ts";

const fmt = (t: Tensor) => `[${t.shape.join(", ")}]`;

/**
 * The backward pass's generation: 1 sums each group (backward_sums) and each channel
 * (backward_params, a workgroup per channel over the batch) in passes of their own; 2 (the
 * default) takes every sum from one pass over each (image, channel) plane (backward_planes,
 * several planes a workgroup where they are small), then backward_finish. Both then write dx
 * in backward_input.
 */
export type GroupNormBackward = 1 | 2;
let backwardGen: GroupNormBackward = 2;

/**
 * The statistics' generation: 1 reads x twice per group (group_stats: the mean, then squared
 * deviations); 2 (the default) once, as plane moments merged into the group's (stats_planes,
 * stats_finish).
 */
export type GroupNormStats = 1 | 2;
let statsGen: GroupNormStats = 2;

/** Sets how every later groupNorm computes its statistics; returns the previous setting. */
export function setGroupNormStats(gen: GroupNormStats): GroupNormStats {
  const previous = statsGen;
  statsGen = gen;
  return previous;
}

/** Sets the backward pass of every later groupNorm (tests, benchmarks); returns the previous. */
export function setGroupNormBackward(gen: GroupNormBackward): GroupNormBackward {
  const previous = backwardGen;
  backwardGen = gen;
  return previous;
}
const groups = (n: number) => grid(Math.ceil(n / 256));

/**
 * DESIGN §3: 32 groups, fewer when C < 32 — the largest divisor of C not above 32 (so C itself
 * below 32, one channel per group; and a width such as 48 that 32 does not divide gets 24).
 * `maxGroups` replaces the 32 (a tokenizer config's normGroups).
 */
export function groupCount(channels: number, maxGroups = 32): number {
  if (!Number.isInteger(channels) || channels < 1) {
    throw new ShapeError(`groupCount: needs a positive channel count, got ${channels}`);
  }
  if (!Number.isInteger(maxGroups) || maxGroups < 1) {
    throw new ShapeError(`groupCount: needs a positive group limit, got ${maxGroups}`);
  }
  for (let g = Math.min(maxGroups, channels); g > 1; g--) if (channels % g === 0) return g;
  return 1;
}

/**
 * PyTorch's F.group_norm: x [B, C, ...spatial] normalised over each group of C/groups channels
 * and all positions, then scaled by weight [C] and shifted by bias [C]. With `silu`, F.silu of
 * that in the same kernels (no intermediate tensor kept for backward).
 */
export function groupNorm(
  x: Tensor,
  weight: Tensor,
  bias: Tensor,
  groupsCount: number,
  { eps = 1e-6, silu = false }: { eps?: number; silu?: boolean } = {},
): Tensor {
  const desc = `x ${fmt(x)}, weight ${fmt(weight)}, bias ${fmt(bias)}, ${groupsCount} groups`;
  const fail = (why: string) => new ShapeError(`groupNorm: ${why} (${desc})`);
  if ([x, weight, bias].some((t) => t.dtype !== "f32")) throw fail("needs f32 tensors");
  if (x.shape.length < 2) throw fail("needs x [B, C, ...]");
  const [B, C] = x.shape;
  const HW = x.shape.slice(2).reduce((a, b) => a * b, 1);
  if (!Number.isInteger(groupsCount) || groupsCount < 1 || C % groupsCount !== 0) {
    throw fail(`${C} channels do not split into ${groupsCount} groups`);
  }
  if (weight.shape.join() !== `${C}` || bias.shape.join() !== `${C}`) {
    throw fail(`weight and bias must be [${C}]`);
  }
  const G = groupsCount;
  const uni = [B, C, HW, G, f32bits(eps), silu ? 1 : 0, planeThreads(HW % 4 === 0 ? HW / 4 : HW)];
  const stats = new Tensor([B, G, 2], "f32", undefined, "groupNorm");
  const y = new Tensor(x.shape, "f32", undefined, "groupNorm");
  if (x.size > 0 && statsGen === 2) {
    const moments = new Tensor([B, C, 2], "f32", undefined, "groupNorm");
    dispatch(
      pipeline(groupNormWgsl, "stats_planes"),
      [x.buffer, moments.buffer],
      uni,
      grid(Math.ceil((B * C) / (256 / uni[6]))),
    );
    dispatch(pipeline(groupNormWgsl, "stats_finish"), [moments.buffer, stats.buffer], uni, [
      Math.ceil((B * G) / 64),
    ]);
    moments.dispose();
  } else if (x.size > 0) {
    dispatch(
      pipeline(groupNormWgsl, "group_stats"),
      [x.buffer, stats.buffer],
      uni,
      grid(B * G),
    );
  }
  if (x.size > 0) {
    dispatch(
      pipeline(groupNormWgsl, "apply"),
      [x.buffer, stats.buffer, weight.buffer, bias.buffer, y.buffer],
      uni,
      groups(x.size),
    );
  }
  const gen = backwardGen;
  const out = record(y, "groupNorm", [x, weight, bias], (dy) => {
    if (gen === 2) return backward2(x, dy, stats, weight, bias, uni);
    let dx: Tensor | null = null;
    if (x.requiresGrad) {
      const sums = new Tensor([B, G, 2], "f32");
      dx = new Tensor(x.shape, "f32");
      if (x.size > 0) {
        dispatch(
          pipeline(groupNormWgsl, "backward_sums"),
          [x.buffer, dy.buffer, stats.buffer, weight.buffer, bias.buffer, sums.buffer],
          uni,
          grid(B * G),
        );
        dispatch(
          pipeline(groupNormWgsl, "backward_input"),
          [x.buffer, dy.buffer, stats.buffer, weight.buffer, bias.buffer, sums.buffer, dx.buffer],
          uni,
          groups(x.size),
        );
      }
      sums.dispose();
    }
    let dw: Tensor | null = null, db: Tensor | null = null;
    if (weight.requiresGrad || bias.requiresGrad) {
      dw = new Tensor([C], "f32");
      db = new Tensor([C], "f32");
      dispatch(
        pipeline(groupNormWgsl, "backward_params"),
        [x.buffer, dy.buffer, stats.buffer, weight.buffer, bias.buffer, dw.buffer, db.buffer],
        uni,
        grid(C),
      );
      if (!weight.requiresGrad) dw.dispose(), dw = null;
      if (!bias.requiresGrad) db.dispose(), db = null;
    }
    return [dx, dw, db];
  });
  // The statistics live as long as the tape needs them.
  if (!out.node) stats.dispose();
  return out;
}

/** setGroupNormBackward(2)'s gradients: plane sums in one pass, then dx. */
function backward2(
  x: Tensor,
  dy: Tensor,
  stats: Tensor,
  weight: Tensor,
  bias: Tensor,
  uni: number[],
): (Tensor | null)[] {
  const [B, C, HW, G] = uni;
  const planes = new Tensor([B, C, 2], "f32");
  const sums = new Tensor([B, G, 2], "f32");
  const dx: Tensor | null = x.requiresGrad ? new Tensor(x.shape, "f32") : null;
  let dw: Tensor | null = new Tensor([C], "f32");
  let db: Tensor | null = new Tensor([C], "f32");
  // Planes of no pixels still write their (zero) sums.
  if (B * C > 0) {
    dispatch(
      pipeline(groupNormWgsl, HW % 4 === 0 ? "backward_planes4" : "backward_planes"),
      [x.buffer, dy.buffer, stats.buffer, weight.buffer, bias.buffer, planes.buffer],
      uni,
      grid(Math.ceil((B * C) / (256 / uni[6]))),
    );
  }
  dispatch(
    pipeline(groupNormWgsl, "backward_finish"),
    [planes.buffer, weight.buffer, sums.buffer, dw.buffer, db.buffer],
    uni,
    [Math.max(1, Math.ceil(Math.max(B * G, C) / 64))],
  );
  if (dx && x.size > 0) {
    dispatch(
      pipeline(groupNormWgsl, "backward_input"),
      [x.buffer, dy.buffer, stats.buffer, weight.buffer, bias.buffer, sums.buffer, dx.buffer],
      uni,
      groups(x.size),
    );
  }
  planes.dispose();
  sums.dispose();
  if (!weight.requiresGrad) dw.dispose(), dw = null;
  if (!bias.requiresGrad) db.dispose(), db = null;
  return [dx, dw, db];
}
