// conv2d as implicit GEMMs (the default path; lib/tensor/conv2d.ts picks it): the tiled matmul
// reads patches straight from the NCHW maps and writes NCHW, so no column buffer exists.
//   y  = w · x̂ + bias              one GEMM, bias and the NCHW layout in its epilogue
//   dx = ŵ · ĝ                     the transposed convolution as a gather, one GEMM per phase
//   dw = Σ_z g · x̂ᵀ over pixels    K = the pixel count, split over z when the tiles are few
//   db = Σ g                       a sum per (image, channel) plane, then per channel
// The WGSL: kernels/conv2d_gemm.ts and kernels/conv2d_bias.wgsl. Method "implicit" generates the
// GEMMs' third generation where it applies (ConvKernel.gen 3: K slices uniform in tap or output
// row), else the second (rows decomposed once, dW loaded along its pixels and split for ~512
// workgroups); "implicit-v1" the first (and kernels/conv2d.wgsl's bias_grad), kept to time one
// against the other.
import { dispatch, generated, gpu, grid, pipeline } from "../gpu/mod.ts";
import convBiasWgsl from "../../kernels/conv2d_bias.wgsl" with { type: "text" };
import {
  conv3Fits,
  convDwWgsl,
  convDxWgsl,
  convForwardWgsl,
  type ConvKernel,
  type ConvShape,
  dxPhases,
} from "../../kernels/conv2d_gemm.ts";
import convTiles from "../../kernels/conv_tiles.json" with { type: "json" };
import {
  type MatmulTile,
  parseTile,
  slabMatmulParams,
  tileName,
  tileValid,
  workgroupBytes,
} from "../../kernels/matmul.ts";
import type { Conv2dOptions, ConvGeometry } from "./conv2d.ts";
import { chooseTile, fitTile } from "./matmul.ts";
import { permute, sum } from "./ops.ts";
import { noGrad, Tensor } from "./tensor.ts";

function shapeOf(g: ConvGeometry): ConvShape {
  const { Cin, H, W, Cout, kh, kw, stride, Ho, Wo } = g;
  return { Cin, H, W, Cout, kh, kw, stride, pt: g.pad[0], pl: g.pad[2], Ho, Wo };
}

/** Whether every GEMM's grid fits the device (columns are pixels of the whole batch). */
export function implicitFits(g: ConvGeometry): boolean {
  const most = g.B * Math.max(g.Ho * g.Wo, g.H * g.W);
  return Math.ceil(most / 64) <= gpu().limits.maxComputeWorkgroupsPerDimension;
}

/** The pipeline of one generated convolution GEMM, named for profiles by its layer shape. */
function convPipeline(
  what: string,
  c: ConvShape,
  k: ConvKernel,
  extra: unknown,
  make: () => string,
) {
  const name = `conv2d.${what}${
    k.gen && k.gen > 1 ? k.gen : ""
  } ${c.Cin}>${c.Cout} ${c.H}x${c.W} k${c.kh}s${c.stride} ${tileName(k.tile)}`;
  return pipeline(generated(`${name} ${JSON.stringify([c, k, extra])}`, make));
}

/** A convolution GEMM's pass and layer shape, as tools/tune_conv.ts and conv_tiles.json key it. */
export function convTileKey(pass: "forward" | "dx" | "dw", g: ConvGeometry): string {
  return `${pass} ${g.Cin}>${g.Cout} ${g.H}x${g.W} k${g.kh}s${g.stride}`;
}

/**
 * A GEMM's tile: opts.tile, else one forced by setConvTile, else the measured table's for this
 * layer and pass (on a GPU, batches of 8 or more: it was measured at 32, and a small batch's grid
 * wants chooseTile's smaller tiles), else chooseTile's.
 */
function tileFor(
  opts: Conv2dOptions,
  M: number,
  N: number,
  slabs: number,
  layer?: { pass: "forward" | "dx" | "dw"; g: ConvGeometry },
): MatmulTile {
  const key = layer && convTileKey(layer.pass, layer.g);
  const forced = forcing && (!forcing.keys || (key && forcing.keys.has(key)))
    ? forcing.tile
    : undefined;
  const tuned = key && layer.g.B >= 8 && !gpu().isCpu ? tileTable.get(key) : undefined;
  const t = opts.tile ?? forced ?? tuned;
  return t ? fitTile(t) : chooseTile(M, N, slabs);
}

// tools/tune_conv.ts times whole steps with one tile forced on some layers (keys) or all.
let forcing: { tile: MatmulTile; keys?: Set<string> } | undefined;

/** Forces a tile on the GEMMs whose convTileKey is in keys (all when absent); undefined: none. */
export function setConvTile(tile: MatmulTile | undefined, keys?: Iterable<string>): void {
  forcing = tile ? { tile, keys: keys ? new Set(keys) : undefined } : undefined;
}

// Tiles per layer and pass, measured on a GPU by tools/tune_conv.ts (kernels/conv_tiles.json).
let tileTable = new Map<string, MatmulTile>(
  Object.entries(convTiles.tiles as Record<string, string>).map(([k, t]) => [k, parseTile(t)]),
);

/** Replaces the measured table (tools/tune_conv.ts checks one); returns the old. */
export function setConvTileTable(table: Map<string, MatmulTile>): Map<string, MatmulTile> {
  const previous = tileTable;
  tileTable = table;
  return previous;
}

// On: the tokenizer step measured 62.5 → 61.2 ms on an H100 (profile_tokenizer_step --variants
// new+nosplit,new; tools/BENCHMARKS.md). Only on a GPU; the tests force slabs with opts.kSplits.
let splitKOn = true;

/** Whether forward and dx GEMMs split K on small grids (default on); returns the old. */
export function setConvSplitK(on: boolean): boolean {
  const previous = splitKOn;
  splitKOn = on;
  return previous;
}

/**
 * The slabs a forward or dx GEMM's K is split into, and each slab's K (a multiple of 32): a grid of
 * under 256 workgroups (the 256-channel 8×8 layers at batch 32: 128) leaves most of a big GPU idle,
 * so K is split for about 512, each slab at least 256 long. Generations 2 and 3 only, on a GPU
 * unless opts.kSplits forces it (tests).
 */
function kSlabs(
  opts: Conv2dOptions,
  tile: MatmulTile,
  [M, N, K]: [number, number, number],
  gen: ConvGen,
): { S: number; KS: number } {
  const workgroups = Math.ceil(M / tile.bm) * Math.ceil(N / tile.bn);
  const auto = splitKOn && !gpu().isCpu && workgroups < 256
    ? Math.min(Math.round(512 / workgroups), Math.floor(K / 256))
    : 1;
  const want = gen >= 2 ? Math.max(1, Math.min(opts.kSplits ?? auto, Math.ceil(K / 32))) : 1;
  if (want === 1) return { S: 1, KS: 0 };
  const KS = Math.ceil(K / want / 32) * 32;
  return { S: Math.ceil(K / KS), KS };
}

/** A split GEMM's output: the sum of its slabs [S, ...] (the tensor itself when S is 1). */
function sumSlabs(slabs: Tensor, S: number): Tensor {
  if (S === 1) return slabs;
  const total = sum(slabs, 0);
  slabs.dispose();
  return total;
}

/** Dispatches an M×N (×z slabs) GEMM over its tile grid. */
function run(
  pipe: GPUComputePipeline,
  k: ConvKernel,
  [M, N, K]: [number, number, number],
  buffers: GPUBuffer[],
  z = 1,
  kSplit = 0,
) {
  if (M === 0 || N === 0) return;
  const params = slabMatmulParams(M, N, K, z, kSplit);
  dispatch(pipe, buffers, params, [Math.ceil(N / k.tile.bn), Math.ceil(M / k.tile.bm), z]);
}

/**
 * The GEMMs' generation: 1 for "implicit-v1", else 3 where conv3Fits (2 where it doesn't, or
 * when asked for).
 */
export type ConvGen = 1 | 2 | 3;

// The generation each pass of the latest implicit conv ran at (tests check which path they hit).
const lastGens: { forward?: ConvGen; dx?: ConvGen; dw?: ConvGen } = {};

/** The generations the latest implicit forward, dx and dW GEMMs ran at (dx: its last phase's). */
export function lastConvGenerations(): { forward?: ConvGen; dx?: ConvGen; dw?: ConvGen } {
  return { ...lastGens };
}

/**
 * w [Cout, Cin, kh, kw] with its axes reordered (generation 3's tap-major A operands): "forward"
 * gives [Cout, kh·kw, Cin], "dx" [Cin, kh·kw, Cout]. A copy, to dispose after the dispatch.
 */
function tapMajor(w: Tensor, pass: "forward" | "dx"): Tensor {
  const [Cout, Cin, kh, kw] = w.shape;
  return noGrad(() => {
    const flat = w.reshape([Cout, Cin, kh * kw]);
    const out = permute(flat, pass === "forward" ? [0, 2, 1] : [1, 2, 0]);
    flat.dispose();
    return out;
  });
}

/**
 * Threads that sum one plane of n loads in a 256-thread workgroup: about 4 loads each, a power
 * of two from 16 to 256, so small planes share a workgroup instead of idling most of one.
 */
export function planeThreads(n: number): number {
  let tp = 16;
  while (tp < 256 && tp * 4 < n) tp *= 2;
  return tp;
}

/** db = Σ gy over images and pixels: plane sums [B, Cout], then their sum per channel. */
export function convBiasGrad(gy: Tensor, g: ConvGeometry): Tensor {
  const P = g.Ho * g.Wo, planes = g.B * g.Cout;
  const db = new Tensor([g.Cout], "f32", undefined, "conv2d");
  const partial = new Tensor([g.B, g.Cout], "f32", undefined, "conv2d");
  const vec = P % 4 === 0;
  const tp = planeThreads(vec ? P / 4 : P);
  const uni = [g.B, g.Cout, P, tp];
  dispatch(
    pipeline(convBiasWgsl, vec ? "plane_sums4" : "plane_sums"),
    [gy.buffer, partial.buffer],
    uni,
    grid(Math.ceil(planes / (256 / tp))),
  );
  dispatch(pipeline(convBiasWgsl, "channel_sums"), [partial.buffer, db.buffer], uni, [
    Math.ceil(g.Cout / 64),
  ]);
  partial.dispose();
  return db;
}

export function implicitForward(
  x: Tensor,
  w: Tensor,
  bias: Tensor | undefined,
  g: ConvGeometry,
  opts: Conv2dOptions,
  gen: ConvGen = 3,
): Tensor {
  const c = shapeOf(g), P = g.Ho * g.Wo;
  const [M, N, K] = [g.Cout, g.B * P, g.Cin * g.kh * g.kw];
  const tile = tileFor(opts, M, N, 1, { pass: "forward", g });
  const { S, KS } = kSlabs(opts, tile, [M, N, K], gen);
  const use = gen === 3 && !conv3Fits("forward", c, tile, KS) ? 2 : gen;
  lastGens.forward = use;
  const k: ConvKernel = {
    tile,
    vecA: K % 4 === 0,
    vecC: P % 4 === 0,
    ...(use >= 2 ? { gen: use } : {}),
    ...(S > 1 ? { splitK: true } : {}),
  };
  const pipe = convPipeline("forward", c, k, Boolean(bias), () => {
    return convForwardWgsl(c, k, Boolean(bias));
  });
  const shape = [g.B, g.Cout, g.Ho, g.Wo];
  const y = new Tensor(S > 1 ? [S, ...shape] : shape, "f32", undefined, "conv2d");
  const a = use === 3 ? tapMajor(w, "forward") : w;
  const buffers = [a.buffer, x.buffer, y.buffer, ...(bias ? [bias.buffer] : [])];
  run(pipe, k, [M, N, K], buffers, S, KS);
  if (a !== w) a.dispose();
  return sumSlabs(y, S);
}

/** dx (when x needs it) and dw (when w does) for the output gradient gy. */
export function implicitBackward(
  x: Tensor,
  w: Tensor,
  gy: Tensor,
  g: ConvGeometry,
  opts: Conv2dOptions,
  gens: { dx: ConvGen; dw: ConvGen } = { dx: 3, dw: 3 },
): { dx: Tensor | null; dw: Tensor | null } {
  const c = shapeOf(g), P = g.Ho * g.Wo, R = g.Cin * g.kh * g.kw;
  let dx: Tensor | null = null, dw: Tensor | null = null;
  if (x.requiresGrad) {
    // The phases partition dx's pixels, so together they write every element.
    const phases = dxPhases(c);
    // K is split only where one phase covers dx (stride 1): each slab is then a whole copy.
    const one = phases.length === 1 ? phases[0] : null;
    const { S, KS } = one
      ? kSlabs(
        opts,
        tileFor(opts, g.Cin, g.B * one.Hp * one.Wp, 1, { pass: "dx", g }),
        [g.Cin, g.B * one.Hp * one.Wp, g.Cout * one.nky * one.nkx],
        gens.dx,
      )
      : { S: 1, KS: 0 };
    const out = new Tensor(S > 1 ? [S, ...x.shape] : x.shape, "f32", undefined, "conv2d");
    let permuted: Tensor | null = null;
    for (const ph of phases) {
      const [M, N, K] = [g.Cin, g.B * ph.Hp * ph.Wp, g.Cout * ph.nky * ph.nkx];
      const vecC = g.stride === 1 && (g.H * g.W) % 4 === 0;
      if (N === 0) continue;
      const tile = tileFor(opts, M, N, 1, { pass: "dx", g });
      const use = gens.dx === 3 && !(one && conv3Fits("dx", c, tile, KS)) ? 2 : gens.dx;
      const k: ConvKernel = {
        tile,
        vecA: use === 3 && g.Cout % 4 === 0,
        vecC,
        ...(use >= 2 ? { gen: use } : {}),
        ...(S > 1 ? { splitK: true } : {}),
      };
      lastGens.dx = use;
      if (use === 3) permuted ??= tapMajor(w, "dx");
      const pipe = convPipeline("dx", c, k, ph, () => convDxWgsl(c, ph, k));
      const a = use === 3 ? permuted! : w;
      run(pipe, k, [M, N, K], [a.buffer, gy.buffer, out.buffer], S, KS);
    }
    (permuted as Tensor | null)?.dispose();
    dx = sumSlabs(out, S);
  }
  if (w.requiresGrad) {
    // K is every pixel of the batch: split it over z into slabs of whole 128-pixel blocks (or
    // vec4s), each slab at least 1024 pixels, enough for ~256 workgroups of 128×128 tiles (v1)
    // or ~512 of the tile the split GEMM gets (v2: deeper splits keep more of a big GPU busy).
    const Kp = g.B * P;
    let tiles = Math.ceil(g.Cout / 128) * Math.ceil(R / 128), target = 256;
    const gen = gens.dw;
    if (gen >= 2) {
      const t = tileFor(
        opts,
        g.Cout,
        R,
        Math.max(1, Math.floor(Kp / 1024)),
        { pass: "dw", g },
      );
      tiles = Math.ceil(g.Cout / t.bm) * Math.ceil(R / t.bn);
      target = 512;
    }
    const auto = Math.min(Math.ceil(target / tiles), Math.floor(Kp / 1024));
    const want = Math.max(1, Math.min(opts.splits ?? auto, Kp));
    const align = Kp >= 128 * want ? 128 : 4;
    const KS = Math.ceil(Kp / want / align) * align;
    const S = Math.ceil(Kp / KS);
    let tile = tileFor(opts, g.Cout, R, S, { pass: "dw", g });
    // Generation 2's tiles are padded (K-major loads): where that outgrows workgroup memory,
    // prefetch goes, then BK halves (as fitTile does), else this GEMM stays on generation 1.
    const kMajor = { A: true, B: true };
    const fits = (t: MatmulTile) =>
      tileValid(t) &&
      workgroupBytes(t, "f32", kMajor) <= gpu().limits.maxComputeWorkgroupStorageSize;
    if (gen >= 2 && !fits(tile) && tile.prefetch) tile = { ...tile, prefetch: false };
    while (gen >= 2 && !fits(tile) && tile.bk > 8) tile = { ...tile, bk: tile.bk / 2 };
    const dwGen = gen >= 2 && fits(tile)
      ? (gen === 3 && conv3Fits("dw", c, tile, S > 1 ? KS : 0) ? 3 : 2)
      : 1;
    lastGens.dw = dwGen;
    if (dwGen === 1) tile = tileFor(opts, g.Cout, R, S, { pass: "dw", g });
    const k: ConvKernel = {
      tile,
      vecA: dwGen === 1 && P % 4 === 0,
      vecC: R % 4 === 0,
      ...(dwGen >= 2 ? { gen: dwGen } : {}),
    };
    const pipe = convPipeline("dw", c, k, null, () => convDwWgsl(c, k));
    const slabs = new Tensor([S, g.Cout, R], "f32", undefined, "conv2d");
    run(pipe, k, [g.Cout, R, Kp], [gy.buffer, x.buffer, slabs.buffer], S, KS);
    const total = sumSlabs(slabs, S);
    dw = total.reshape(w.shape);
    total.dispose();
  }
  return { dx, dw };
}
