// conv2d as implicit GEMMs (lib/tensor/conv2d_implicit.ts): the tiled matmul of kernels/matmul.ts,
// whose operand loads read the NCHW maps themselves, so no column matrix is ever stored.
//
//   forward  y[b, co, p]  = Σ_k w[co, k] · x̂[k, (b, p)] + bias[co]     k = (ci, ky, kx)
//   dx       dx[b, ci, i] = Σ_k ŵ[ci, k] · ĝ[k, (b, i)]                k = (co, ky, kx)
//   dW       dw[co, k]    = Σ_q g[co, q] · x̂[k, q]                     q = (b, p), split over z
//
// x̂ is the patch matrix im2col would have written: element ((ci, ky, kx), (b, oy, ox)) is
// x[b, ci, oy·s − pt + ky, ox·s − pl + kx], 0 in the padding. dx is the transposed convolution in
// gather form: input pixel (iy, ix) takes g at oy = (iy + pt − ky) / s for the taps ky where that
// is a whole number in range. With s > 1 only the taps ky ≡ iy + pt (mod s) ever are, so dx runs
// as s² GEMMs, one per phase (iy mod s, ix mod s) over that phase's pixels and taps: no
// multiplications by structural zeros.
//
// Every size but the batch is a WGSL constant, so the index arithmetic divides by constants
// (multiplies and shifts) and pipelines are cached per layer shape; M, N and K come in the
// matmul's uniforms. Binding 1 is A's buffer, 2 B's, 3 the output, 4 the bias (forward, if any).
import { type GemmHooks, type MatmulKernel, type MatmulTile, matmulWgsl } from "./matmul.ts";

/** A convolution's sizes, without the batch. */
export interface ConvShape {
  Cin: number;
  H: number;
  W: number;
  Cout: number;
  kh: number;
  kw: number;
  stride: number;
  /** Padding before the first row and column (the ones after only shape Ho and Wo). */
  pt: number;
  pl: number;
  Ho: number;
  Wo: number;
}

/** One phase of dx: input pixels iy ≡ py, ix ≡ px (mod stride), and the taps that reach them. */
export interface DxPhase {
  py: number;
  px: number;
  /** Pixels of the phase along each dim: ⌈(H − py) / s⌉, ⌈(W − px) / s⌉. */
  Hp: number;
  Wp: number;
  /** Taps ky = ky0 + s·j for j < nky (likewise kx). */
  ky0: number;
  nky: number;
  kx0: number;
  nkx: number;
}

/** The stride² phases of dx, with their pixel and tap counts (either may be 0). */
export function dxPhases(c: ConvShape): DxPhase[] {
  const s = c.stride, out: DxPhase[] = [];
  const taps = (k: number, first: number) => Math.max(0, Math.ceil((k - first) / s));
  for (let py = 0; py < s; py++) {
    for (let px = 0; px < s; px++) {
      const ky0 = (py + c.pt) % s, kx0 = (px + c.pl) % s;
      out.push({
        py,
        px,
        Hp: Math.max(0, Math.ceil((c.H - py) / s)),
        Wp: Math.max(0, Math.ceil((c.W - px) / s)),
        ky0,
        nky: taps(c.kh, ky0),
        kx0,
        nkx: taps(c.kw, kx0),
      });
    }
  }
  return out;
}

/** The plain matmul kernel the hooks bend: f32, vec where the hooks allow it. */
export interface ConvKernel {
  tile: MatmulTile;
  /** vec4 loads of w (forward) or of g (dW) along K. */
  vecA: boolean;
  /** vec4 stores into y or dx (4 consecutive pixels of one image). */
  vecC: boolean;
}

const u = (n: number) => `${n}u`;

function kernelOf(k: ConvKernel, transB: boolean): MatmulKernel {
  return {
    tile: k.tile,
    dtype: "f32",
    transA: false,
    transB,
    vecA: k.vecA,
    vecB: false,
    vecC: k.vecC,
    bias: false,
    accumulate: false,
  };
}

/**
 * Stores v (outputs m, n…n+3 of a [channels, (b, pixel)] product) into an NCHW map of `planes`
 * pixels per channel, with `pixel(q)` the lines that turn column q into `o`, its offset in a plane.
 */
function nchwStore(
  channels: number,
  planes: number,
  vec: boolean,
  pixel: (q: string) => string[],
  bias: boolean,
): GemmHooks["store"] {
  return (m, n, v) => {
    if (vec) {
      // 4 consecutive columns of one image (planes % 4 == 0): one vec4 store.
      return [
        `if (${n} < N) {`,
        ...pixel(n).map((l) => `  ${l}`),
        `  C[((q_b * ${u(channels)} + ${m}) * ${u(planes)} + o) >> 2u] = ${v}${
          bias ? " + vec4<f32>(cbias[m])" : ""
        };`,
        `}`,
      ];
    }
    return ["x", "y", "z", "w"].flatMap((c, j) => [
      `if (${n} + ${j}u < N) {`,
      ...pixel(`(${n} + ${j}u)`).map((l) => `  ${l}`),
      `  C[(q_b * ${u(channels)} + ${m}) * ${u(planes)} + o] = ${v}.${c}${
        bias ? " + cbias[m]" : ""
      };`,
      `}`,
    ]);
  };
}

/** Lines reading x̂ element (k = (ci, ky, kx), q = (b, oy, ox)) of buffer `buf` into r. */
function patchLoad(c: ConvShape, buf: string, r: string, k: string, q: string): string[] {
  const P = c.Ho * c.Wo, KK = c.kh * c.kw;
  return [
    `let b = ${q} / ${u(P)}; let pix = ${q} % ${u(P)};`,
    `let oy = pix / ${u(c.Wo)}; let ox = pix % ${u(c.Wo)};`,
    `let ci = ${k} / ${u(KK)}; let tap = ${k} % ${u(KK)};`,
    `let iy = i32(oy * ${u(c.stride)} + tap / ${u(c.kw)}) - ${c.pt};`,
    `let ix = i32(ox * ${u(c.stride)} + tap % ${u(c.kw)}) - ${c.pl};`,
    `if (iy >= 0 && iy < ${c.H} && ix >= 0 && ix < ${c.W}) {`,
    `  ${r} = ${buf}[((b * ${u(c.Cin)} + ci) * ${u(c.H)} + u32(iy)) * ${u(c.W)} + u32(ix)];`,
    `}`,
  ];
}

/** y = w · x̂ + bias, straight into y [B, Cout, Ho, Wo]. A = w [Cout, Cin·kh·kw], B = x. */
export function convForwardWgsl(c: ConvShape, k: ConvKernel, bias: boolean): string {
  const P = c.Ho * c.Wo;
  return matmulWgsl(kernelOf(k, false), {
    decls: bias ? ["@group(0) @binding(4) var<storage, read> cbias: array<f32>;"] : [],
    loadB: (r, row, kk) => patchLoad(c, "B", r, kk, row),
    store: nchwStore(
      c.Cout,
      P,
      k.vecC,
      (q) => [`let q_b = ${q} / ${u(P)}; let o = ${q} % ${u(P)};`],
      bias,
    ),
  });
}

/**
 * One phase of dx = ŵ · ĝ into dx [B, Cin, H, W]: M = Cin, N = B·Hp·Wp, K = Cout·nky·nkx.
 * A = w [Cout, Cin, kh, kw] read as ŵ[ci, (co, jy, jx)], B = g [B, Cout, Ho, Wo].
 */
export function convDxWgsl(c: ConvShape, ph: DxPhase, k: ConvKernel): string {
  const s = c.stride;
  // Never 0 in the generated divisions: a phase without taps has K = 0 and loads nothing.
  const T = Math.max(1, ph.nky * ph.nkx), nkx = Math.max(1, ph.nkx);
  const PP = ph.Hp * ph.Wp;
  const tapOf = (kk: string) => [
    `let co = ${kk} / ${u(T)}; let t = ${kk} % ${u(T)};`,
    `let ky = ${u(ph.ky0)} + ${u(s)} * (t / ${u(nkx)}); let kx = ${u(ph.kx0)} + ${u(s)} * (t % ${
      u(nkx)
    });`,
  ];
  const pixelOf = (q: string) => [
    `let q_b = ${q} / ${u(PP)}; let t_q = ${q} % ${u(PP)};`,
    `let iy = ${u(ph.py)} + ${u(s)} * (t_q / ${u(ph.Wp)});`,
    `let ix = ${u(ph.px)} + ${u(s)} * (t_q % ${u(ph.Wp)});`,
  ];
  return matmulWgsl(kernelOf({ ...k, vecA: false }, false), {
    loadA: (r, row, kk) => [
      ...tapOf(kk),
      `${r} = A[((co * ${u(c.Cin)} + ${row}) * ${u(c.kh)} + ky) * ${u(c.kw)} + kx];`,
    ],
    loadB: (r, row, kk) => [
      ...tapOf(kk),
      ...pixelOf(row),
      // iy + pt − ky is a multiple of s by the choice of taps; it may be negative.
      `let ry = i32(iy + ${u(c.pt)}) - i32(ky); let rx = i32(ix + ${u(c.pl)}) - i32(kx);`,
      `if (ry >= 0 && rx >= 0) {`,
      `  let oy = u32(ry) / ${u(s)}; let ox = u32(rx) / ${u(s)};`,
      `  if (oy < ${u(c.Ho)} && ox < ${u(c.Wo)}) {`,
      `    ${r} = B[((q_b * ${u(c.Cout)} + co) * ${u(c.Ho)} + oy) * ${u(c.Wo)} + ox];`,
      `  }`,
      `}`,
    ],
    store: nchwStore(
      c.Cin,
      c.H * c.W,
      k.vecC,
      (q) => [...pixelOf(q), `let o = iy * ${u(c.W)} + ix;`],
      false,
    ),
  });
}

/**
 * Partial dW sums: slab z of C [S, Cout, Cin·kh·kw] is g · x̂ᵀ over pixels q in
 * [z·kSplit, (z + 1)·kSplit). A = g [B, Cout, Ho, Wo] read as [Cout, B·Ho·Wo], B = x.
 */
export function convDwWgsl(c: ConvShape, k: ConvKernel): string {
  const P = c.Ho * c.Wo;
  return matmulWgsl(kernelOf(k, true), {
    splitK: true,
    loadA: (r, row, kk) => {
      const at = `(${kk} / ${u(P)} * ${u(c.Cout)} + ${row}) * ${u(P)} + ${kk} % ${u(P)}`;
      // vec4: P % 4 == 0, so kk…kk+3 lie in one image's plane.
      return [k.vecA ? `${r} = A[(${at}) >> 2u];` : `${r} = A[${at}];`];
    },
    loadB: (r, row, kk) => patchLoad(c, "B", r, row, kk),
  });
}
