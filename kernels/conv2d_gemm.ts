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
// Generation 2 (ConvKernel.gen) hoists the row-only index arithmetic out of the K loop: a
// forward thread's pixel (b, oy, ox) and a dx thread's phase pixel are fixed for the whole loop,
// as are a dW thread's tap (ci, ky, kx), so only the K index is decomposed per element. dW's loads
// run along K (its pixels), which is the contiguous axis of both g and x.
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
  /**
   * The generation of the operand loads: 1 (the first, "implicit-v1") decomposes every element's
   * pixel and tap; 2 decomposes each thread's rows once, before the K loop (GemmHooks.rowA/rowB),
   * and loads dW's operands along K (GemmHooks.kMajor: coalesced reads of the pixel axis); 3
   * also moves what is uniform over a K slice out of the per-element loads (GemmHooks.step):
   * forward and dx order K tap-major, (tap, channel), so a slice is one tap and a pixel's bounds
   * check and address are made once a slice (conv3Fits says where), and dW's slices lie in one
   * output row.
   */
  gen?: 1 | 2 | 3;
  /**
   * Forward and dx (generation 2): K is split over z, slab z summing K range [z·kSplit,
   * (z + 1)·kSplit) into its own copy of the output (C offset z·M·N, the bias in slab 0 only),
   * which the caller sums. For grids too small to fill the GPU (the 8×8 256-channel layers).
   */
  splitK?: boolean;
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
  split = false,
): GemmHooks["store"] {
  // Split over K: slab z's copy starts at cBase (a multiple of 4 where vec), the bias in slab 0.
  const at = split ? "cBase + " : "";
  const b = split ? "select(0.0, cbias[m], wid.z == 0u)" : "cbias[m]";
  return (m, n, v) => {
    if (vec) {
      // 4 consecutive columns of one image (planes % 4 == 0): one vec4 store.
      return [
        `if (${n} < N) {`,
        ...pixel(n).map((l) => `  ${l}`),
        `  C[(${at}(q_b * ${u(channels)} + ${m}) * ${u(planes)} + o) >> 2u] = ${v}${
          bias ? ` + vec4<f32>(${b})` : ""
        };`,
        `}`,
      ];
    }
    return ["x", "y", "z", "w"].flatMap((c, j) => [
      `if (${n} + ${j}u < N) {`,
      ...pixel(`(${n} + ${j}u)`).map((l) => `  ${l}`),
      `  C[${at}(q_b * ${u(channels)} + ${m}) * ${u(planes)} + o] = ${v}.${c}${
        bias ? ` + ${b}` : ""
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

/** Whether every tap of every output pixel lies inside x (no padding ever read). */
function insideAlways(c: ConvShape): boolean {
  return c.pt === 0 && c.pl === 0 && (c.Ho - 1) * c.stride + c.kh <= c.H &&
    (c.Wo - 1) * c.stride + c.kw <= c.W;
}

/** y = w · x̂ + bias, straight into y [B, Cout, Ho, Wo]. A = w [Cout, Cin·kh·kw], B = x. */
export function convForwardWgsl(c: ConvShape, k: ConvKernel, bias: boolean): string {
  if (k.gen === 3) return convForwardWgsl3(c, k, bias);
  const KK = c.kh * c.kw, HW = c.H * c.W;
  const hoist: GemmHooks = k.gen !== 2
    ? { loadB: (r, row, kk) => patchLoad(c, "B", r, kk, row) }
    : {
      rowB: (p, row) => [
        ...forwardRow(c, p, row),
        ...(insideAlways(c)
          ? [`let ${p}at = ${p}base + u32(${p}iy) * ${u(c.W)} + u32(${p}ix);`]
          : []),
      ],
      loadB: (r, _row, kk, p) => {
        const tap = [`let ci = ${kk} / ${u(KK)}; let tap = ${kk} % ${u(KK)};`];
        if (insideAlways(c)) {
          return [
            ...tap,
            `${r} = B[${p}at + ci * ${u(HW)} + tap / ${u(c.kw)} * ${u(c.W)} + tap % ${u(c.kw)}];`,
          ];
        }
        return [
          ...tap,
          `let iy = ${p}iy + i32(tap / ${u(c.kw)}); let ix = ${p}ix + i32(tap % ${u(c.kw)});`,
          `if (u32(iy) < ${u(c.H)} && u32(ix) < ${u(c.W)}) {`,
          `  ${r} = B[${p}base + ci * ${u(HW)} + u32(iy) * ${u(c.W)} + u32(ix)];`,
          `}`,
        ];
      },
    };
  return matmulWgsl(kernelOf(k, false), { ...hoist, ...forwardEpilogue(c, k, bias) });
}

/**
 * A forward pixel row's values (generations 2 and 3): its image's base and the top-left tap's
 * position (row, column).
 */
function forwardRow(c: ConvShape, p: string, row: string): string[] {
  const P = c.Ho * c.Wo;
  return [
    `let ${p}b = ${row} / ${u(P)}; let ${p}pix = ${row} % ${u(P)};`,
    `let ${p}iy = i32(${p}pix / ${u(c.Wo)} * ${u(c.stride)}) - ${c.pt};`,
    `let ${p}ix = i32(${p}pix % ${u(c.Wo)} * ${u(c.stride)}) - ${c.pl};`,
    `let ${p}base = ${p}b * ${u(c.Cin * c.H * c.W)};`,
  ];
}

/** The forward's bias binding, K split and NCHW store into y (every generation's). */
function forwardEpilogue(c: ConvShape, k: ConvKernel, bias: boolean): GemmHooks {
  const P = c.Ho * c.Wo;
  return {
    decls: bias ? ["@group(0) @binding(4) var<storage, read> cbias: array<f32>;"] : [],
    splitK: Boolean(k.splitK),
    store: nchwStore(
      c.Cout,
      P,
      k.vecC,
      (q) => [`let q_b = ${q} / ${u(P)}; let o = ${q} % ${u(P)};`],
      bias,
      k.splitK,
    ),
  };
}

/**
 * dx's epilogue: the GEMM's rows are input channels, its columns the phase's input pixels (whose
 * (q_b, iy, ix) `pixelOf` declares), stored NCHW.
 */
function dxStore(c: ConvShape, k: ConvKernel, pixelOf: (q: string) => string[]) {
  return nchwStore(
    c.Cin,
    c.H * c.W,
    k.vecC,
    (q) => [...pixelOf(q), `let o = iy * ${u(c.W)} + ix;`],
    false,
    k.splitK,
  );
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
  if (k.gen === 2) return convDxWgsl2(c, ph, k);
  if (k.gen === 3) return convDxWgsl3(c, k);
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
    store: dxStore(c, k, pixelOf),
  });
}

/** convDxWgsl with each thread's rows (ci of ŵ, the phase pixel of ĝ) decomposed once. */
function convDxWgsl2(c: ConvShape, ph: DxPhase, k: ConvKernel): string {
  const s = c.stride, KK = c.kh * c.kw, Po = c.Ho * c.Wo;
  const T = Math.max(1, ph.nky * ph.nkx), nkx = Math.max(1, ph.nkx);
  // A phase without pixels (H or W below the stride) dispatches nothing; no division by 0 either.
  const PP = Math.max(1, ph.Hp * ph.Wp), Wp = Math.max(1, ph.Wp);
  const tapOf = (kk: string) => [
    `let co = ${kk} / ${u(T)}; let t = ${kk} % ${u(T)};`,
    `let jy = t / ${u(nkx)}; let jx = t % ${u(nkx)};`,
  ];
  const pixelOf = (q: string) => [
    `let q_b = ${q} / ${u(PP)}; let t_q = ${q} % ${u(PP)};`,
    `let iy = ${u(ph.py)} + ${u(s)} * (t_q / ${u(Wp)});`,
    `let ix = ${u(ph.px)} + ${u(s)} * (t_q % ${u(Wp)});`,
  ];
  return matmulWgsl(kernelOf({ ...k, vecA: false }, false), {
    // ŵ[ci, (co, jy, jx)] = w[co, ci, ky0 + s·jy, kx0 + s·jx].
    rowA: (p, row) => [`let ${p}off = ${row} * ${u(KK)} + ${u(ph.ky0 * c.kw + ph.kx0)};`],
    loadA: (r, _row, kk, p) => [
      ...tapOf(kk),
      `${r} = A[co * ${u(c.Cin * KK)} + ${p}off + jy * ${u(s * c.kw)} + jx * ${u(s)}];`,
    ],
    // Tap (jy, jx) reaches input pixel (iy, ix) = (py + s·ty, px + s·tx) from output
    // (oy0 − jy, ox0 − jx), oy0 = (iy + pt − ky0) / s = ty + (py + pt − ky0) / s: exact and ≥ 0,
    // as ky0 = (py + pt) mod s.
    rowB: (p, row) => [
      `let ${p}q_b = ${row} / ${u(PP)}; let ${p}t = ${row} % ${u(PP)};`,
      `let ${p}oy = i32(${p}t / ${u(Wp)} + ${u((ph.py + c.pt - ph.ky0) / s)});`,
      `let ${p}ox = i32(${p}t % ${u(Wp)} + ${u((ph.px + c.pl - ph.kx0) / s)});`,
      `let ${p}base = ${p}q_b * ${u(c.Cout * Po)};`,
    ],
    loadB: (r, _row, kk, p) => [
      ...tapOf(kk),
      `let oy = ${p}oy - i32(jy); let ox = ${p}ox - i32(jx);`,
      `if (u32(oy) < ${u(c.Ho)} && u32(ox) < ${u(c.Wo)}) {`,
      `  ${r} = B[${p}base + co * ${u(Po)} + u32(oy) * ${u(c.Wo)} + u32(ox)];`,
      `}`,
    ],
    splitK: Boolean(k.splitK),
    store: dxStore(c, k, pixelOf),
  });
}

/**
 * Partial dW sums: slab z of C [S, Cout, Cin·kh·kw] is g · x̂ᵀ over pixels q in
 * [z·kSplit, (z + 1)·kSplit). A = g [B, Cout, Ho, Wo] read as [Cout, B·Ho·Wo], B = x.
 */
export function convDwWgsl(c: ConvShape, k: ConvKernel): string {
  const P = c.Ho * c.Wo;
  if (k.gen === 2) return convDwWgsl2(c, k);
  if (k.gen === 3) return convDwWgsl3(c, k);
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

/** convDwWgsl with both operands loaded along K (the pixels) and the taps decomposed once. */
function convDwWgsl2(c: ConvShape, k: ConvKernel): string {
  const P = c.Ho * c.Wo, KK = c.kh * c.kw, HW = c.H * c.W, s = c.stride;
  const inside = insideAlways(c);
  const pixel = (kk: string) => [
    `let b = ${kk} / ${u(P)}; let pix = ${kk} % ${u(P)};`,
    `let oy = pix / ${u(c.Wo)}; let ox = pix % ${u(c.Wo)};`,
  ];
  return matmulWgsl(kernelOf({ ...k, vecA: false }, true), {
    splitK: true,
    kMajor: { A: true, B: true },
    // g[b, co, pix]: a warp reads 8 consecutive pixels of 4 channels.
    rowA: (p, row) => [`let ${p}off = ${row} * ${u(P)};`],
    loadA: (r, _row, kk, p) => [
      `${r} = A[${kk} / ${u(P)} * ${u(c.Cout * P)} + ${p}off + ${kk} % ${u(P)}];`,
    ],
    // x̂[(ci, ky, kx), (b, oy, ox)] = x[b, ci, oy·s + ky − pt, ox·s + kx − pl].
    rowB: (p, row) => [
      `let ${p}ci = ${row} / ${u(KK)}; let ${p}tap = ${row} % ${u(KK)};`,
      `let ${p}ky = i32(${p}tap / ${u(c.kw)}) - ${c.pt}; let ${p}kx = i32(${p}tap % ${
        u(c.kw)
      }) - ${c.pl};`,
      inside
        ? `let ${p}off = ${p}ci * ${u(HW)} + u32(${p}ky) * ${u(c.W)} + u32(${p}kx);`
        : `let ${p}off = ${p}ci * ${u(HW)};`,
    ],
    loadB: (r, _row, kk, p) => {
      if (inside) {
        return [
          ...pixel(kk),
          `${r} = B[b * ${u(c.Cin * HW)} + ${p}off + oy * ${u(s * c.W)} + ox * ${u(s)}];`,
        ];
      }
      return [
        ...pixel(kk),
        `let iy = i32(oy * ${u(s)}) + ${p}ky; let ix = i32(ox * ${u(s)}) + ${p}kx;`,
        `if (u32(iy) < ${u(c.H)} && u32(ix) < ${u(c.W)}) {`,
        `  ${r} = B[b * ${u(c.Cin * HW)} + ${p}off + u32(iy) * ${u(c.W)} + u32(ix)];`,
        `}`,
      ];
    },
  });
}

// ---------------------------------------------------------------- generation 3

/**
 * Whether generation 3 can run a pass with this tile (else the caller uses 2): forward and dx
 * need each K slice inside one tap (channels summed over a multiple of BK; dx only at stride 1,
 * one phase), dW needs each slice inside one output row (Wo a multiple of BK). `kSplit` (0: no
 * split) must keep the slices aligned too.
 */
export function conv3Fits(
  pass: "forward" | "dx" | "dw",
  c: ConvShape,
  tile: MatmulTile,
  kSplit = 0,
): boolean {
  const bk = tile.bk;
  if (kSplit % bk !== 0) return false;
  if (pass === "forward") return c.Cin % bk === 0;
  if (pass === "dx") return c.stride === 1 && c.Cout % bk === 0;
  return c.Wo % bk === 0;
}

/**
 * y = w' · x̂ + bias with K ordered (tap, ci): A = w' [Cout, kh·kw, Cin] (w permuted), B = x.
 * A slice is one tap (Cin % BK == 0), so each pixel row's tap position, bounds check and address
 * are made once a slice, and an element's load is one add.
 */
function convForwardWgsl3(c: ConvShape, k: ConvKernel, bias: boolean): string {
  const HW = c.H * c.W;
  return matmulWgsl(kernelOf(k, false), {
    rowB: (p, row) => forwardRow(c, p, row),
    step: () => [
      `let s_tap = k0 / ${u(c.Cin)}; let s_ci = k0 % ${u(c.Cin)};`,
      `let s_ky = i32(s_tap / ${u(c.kw)}); let s_kx = i32(s_tap % ${u(c.kw)});`,
    ],
    stepRowB: (p) => [
      `let ${p}y = ${p}iy + s_ky; let ${p}x = ${p}ix + s_kx;`,
      `let ${p}ok = u32(${p}y) < ${u(c.H)} && u32(${p}x) < ${u(c.W)};`,
      `let ${p}at = ${p}base + s_ci * ${u(HW)} + u32(${p}y) * ${u(c.W)} + u32(${p}x);`,
    ],
    loadB: (r, _row, _kk, p, kOff) => [`if (${p}ok) { ${r} = B[${p}at + (${kOff}) * ${u(HW)}]; }`],
    ...forwardEpilogue(c, k, bias),
  });
}

/**
 * dx = ŵ · ĝ at stride 1 with K ordered (tap, co): A = w'' [Cin, kh·kw, Cout] (w permuted),
 * B = g. Input pixel (iy, ix) takes g at (iy + pt − ky, ix + pl − kx); a slice is one tap.
 */
function convDxWgsl3(c: ConvShape, k: ConvKernel): string {
  if (c.stride !== 1) throw new Error("convDxWgsl3: stride 1 only");
  const Po = c.Ho * c.Wo, HW = c.H * c.W;
  return matmulWgsl(kernelOf(k, false), {
    rowB: (p, row) => [
      `let ${p}q_b = ${row} / ${u(HW)}; let ${p}t = ${row} % ${u(HW)};`,
      `let ${p}oy = i32(${p}t / ${u(c.W)}) + ${c.pt}; let ${p}ox = i32(${p}t % ${
        u(c.W)
      }) + ${c.pl};`,
      `let ${p}base = ${p}q_b * ${u(c.Cout * Po)};`,
    ],
    step: () => [
      `let s_tap = k0 / ${u(c.Cout)}; let s_co = k0 % ${u(c.Cout)};`,
      `let s_ky = i32(s_tap / ${u(c.kw)}); let s_kx = i32(s_tap % ${u(c.kw)});`,
    ],
    stepRowB: (p) => [
      `let ${p}y = ${p}oy - s_ky; let ${p}x = ${p}ox - s_kx;`,
      `let ${p}ok = u32(${p}y) < ${u(c.Ho)} && u32(${p}x) < ${u(c.Wo)};`,
      `let ${p}at = ${p}base + s_co * ${u(Po)} + u32(${p}y) * ${u(c.Wo)} + u32(${p}x);`,
    ],
    loadB: (r, _row, _kk, p, kOff) => [`if (${p}ok) { ${r} = B[${p}at + (${kOff}) * ${u(Po)}]; }`],
    splitK: Boolean(k.splitK),
    store: dxStore(c, k, (q) => [
      `let q_b = ${q} / ${u(HW)}; let t_q = ${q} % ${u(HW)};`,
      `let iy = t_q / ${u(c.W)}; let ix = t_q % ${u(c.W)};`,
    ]),
  });
}

/**
 * convDwWgsl2 with each K slice inside one output row (Wo % BK == 0): the slice's image, row and
 * first column are made once, and so is each tap row's bounds check along y.
 */
function convDwWgsl3(c: ConvShape, k: ConvKernel): string {
  const P = c.Ho * c.Wo, KK = c.kh * c.kw, HW = c.H * c.W, s = c.stride;
  return matmulWgsl(kernelOf({ ...k, vecA: false }, true), {
    splitK: true,
    kMajor: { A: true, B: true },
    step: () => [
      `let s_b = k0 / ${u(P)}; let s_pix = k0 % ${u(P)};`,
      `let s_oy = s_pix / ${u(c.Wo)}; let s_ox = s_pix % ${u(c.Wo)};`,
      `let s_a = s_b * ${u(c.Cout * P)} + s_pix; let s_x = s_b * ${u(c.Cin * HW)};`,
    ],
    rowA: (p, row) => [`let ${p}off = ${row} * ${u(P)};`],
    loadA: (r, _row, _kk, p, kOff) => [`${r} = A[s_a + ${p}off + ${kOff}];`],
    rowB: (p, row) => [
      `let ${p}ci = ${row} / ${u(KK)}; let ${p}tap = ${row} % ${u(KK)};`,
      `let ${p}ky = i32(${p}tap / ${u(c.kw)}) - ${c.pt}; let ${p}kx = i32(${p}tap % ${
        u(c.kw)
      }) - ${c.pl};`,
      `let ${p}off = ${p}ci * ${u(HW)};`,
    ],
    stepRowB: (p) => [
      `let ${p}y = i32(s_oy * ${u(s)}) + ${p}ky; let ${p}x0 = i32(s_ox * ${u(s)}) + ${p}kx;`,
      `let ${p}yok = u32(${p}y) < ${u(c.H)};`,
      `let ${p}at = s_x + ${p}off + u32(${p}y) * ${u(c.W)};`,
    ],
    loadB: (r, _row, _kk, p, kOff) => [
      `let ix = ${p}x0 + i32((${kOff}) * ${u(s)});`,
      `if (${p}yok && u32(ix) < ${u(c.W)}) { ${r} = B[${p}at + u32(ix)]; }`,
    ],
  });
}
