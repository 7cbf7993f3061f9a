// conv2d over NCHW tensors (VQGAN's convolutions, DESIGN §3), by one of three paths:
//   implicit     the tiled matmul reads patches straight from the maps
//                (lib/tensor/conv2d_implicit.ts), its GEMMs' second generation
//   implicit-v1  the same with the first generation of those GEMMs and the bias gradient
//   im2col       column buffers + the plain matmul (lib/tensor/conv2d_im2col.ts), the reference
// All compute y = w · patches + bias, dx = the transposed convolution of g, dw = g · patchesᵀ and
// db = Σ g; "implicit" is the default, the others stay for comparison and timing.
import { ShapeError } from "../errors.ts";
import type { MatmulTile } from "../../kernels/matmul.ts";
import { biasGrad, im2colBackward, im2colForward } from "./conv2d_im2col.ts";
import {
  convBiasGrad,
  implicitBackward,
  implicitFits,
  implicitForward,
} from "./conv2d_implicit.ts";
import { noGrad, record, type Tensor } from "./tensor.ts";

/** [top, bottom, left, right], as F.pad's (left, right, top, bottom) reordered to rows first. */
export type Padding = number | readonly [number, number, number, number];

/**
 * How conv2d computes: implicit GEMMs (their first generation: "implicit-v1"), or im2col +
 * matmul (the reference to time against).
 */
export type Conv2dMethod = "implicit" | "implicit-v1" | "im2col";

export const CONV2D_METHODS: readonly Conv2dMethod[] = ["implicit", "implicit-v1", "im2col"];

export interface Conv2dOptions {
  stride?: number;
  /** Zero padding: one size for every side, or [top, bottom, left, right]. */
  padding?: Padding;
  /** The path for this call (default: setConv2dMethod's, "implicit" unless changed). */
  method?: Conv2dMethod;
  /** im2col: cap on one unit's column buffer in bytes (tests force image and row chunking). */
  columnBytes?: number;
  /** implicit: forces every GEMM's tile (tests and benchmarks; default chooseTile's). */
  tile?: MatmulTile;
  /** Blocks the weight gradient's K (the pixels) is split into (default: enough to fill a GPU). */
  splits?: number;
  /**
   * implicit: slabs the forward and dx GEMMs' K is split into, summed after (default: on a GPU,
   * enough for ~512 workgroups where the grid is under 256, else 1; setConvSplitK(false) turns
   * that off). dx splits only at stride 1.
   */
  kSplits?: number;
}

/** VQGAN's Downsample: F.pad(x, (0, 1, 0, 1)) then a 3×3 stride-2 conv without padding. */
export const DOWNSAMPLE = { stride: 2, padding: [0, 1, 0, 1] } as const satisfies Conv2dOptions;

let defaultMethod: Conv2dMethod = "implicit";

/**
 * The generation of each kernel method "implicit" runs (3 for the GEMMs where it applies, else 2,
 * unless changed; 1 is implicit-v1's):
 * the forward GEMM, the dx GEMMs, the dW GEMM, and the bias gradient (2: plane sums, then
 * channel sums; 1: kernels/conv2d.wgsl's bias_grad). For timing one change at a time.
 */
export interface ImplicitGenerations {
  forward: 1 | 2 | 3;
  dx: 1 | 2 | 3;
  dw: 1 | 2 | 3;
  bias: 1 | 2;
}
const GEN1: ImplicitGenerations = { forward: 1, dx: 1, dw: 1, bias: 1 };
let implicitGens: ImplicitGenerations = { forward: 3, dx: 3, dw: 3, bias: 2 };

/** Sets some of method "implicit"'s kernel generations; returns the previous ones. */
export function setImplicitGenerations(g: Partial<ImplicitGenerations>): ImplicitGenerations {
  const previous = implicitGens;
  implicitGens = { ...implicitGens, ...g };
  return previous;
}

/** Sets the path of every conv2d that doesn't name one (benchmarks); returns the previous one. */
export function setConv2dMethod(method: Conv2dMethod): Conv2dMethod {
  const previous = defaultMethod;
  defaultMethod = method;
  return previous;
}

export interface ConvGeometry {
  B: number;
  Cin: number;
  H: number;
  W: number;
  Cout: number;
  kh: number;
  kw: number;
  stride: number;
  pad: readonly [number, number, number, number];
  Ho: number;
  Wo: number;
}

const fmt = (t: Tensor) => `[${t.shape.join(", ")}]`;

/** PyTorch's output size of one spatial dim. */
function outSize(n: number, k: number, before: number, after: number, stride: number) {
  return Math.floor((n + before + after - k) / stride) + 1;
}

function geometry(x: Tensor, w: Tensor, bias: Tensor | undefined, o: Conv2dOptions): ConvGeometry {
  const stride = o.stride ?? 1;
  const p = o.padding ?? 0;
  const pad = typeof p === "number" ? [p, p, p, p] as const : p;
  const desc = `x ${fmt(x)}, w ${fmt(w)}${bias ? `, bias ${fmt(bias)}` : ""}, stride ${stride}, ` +
    `padding [${pad}]`;
  const fail = (why: string) => new ShapeError(`conv2d: ${why} (${desc})`);
  if ([x, w, bias].some((t) => t && t.dtype !== "f32")) throw fail("needs f32 tensors");
  if (x.shape.length !== 4 || w.shape.length !== 4) {
    throw fail("needs x [B, Cin, H, W] and w [Cout, Cin, kh, kw]");
  }
  const [B, Cin, H, W] = x.shape;
  const [Cout, wCin, kh, kw] = w.shape;
  if (wCin !== Cin) throw fail(`x has ${Cin} channels, w expects ${wCin}`);
  if (bias && (bias.shape.length !== 1 || bias.shape[0] !== Cout)) {
    throw fail(`bias must be [${Cout}]`);
  }
  if (!Number.isInteger(stride) || stride < 1) throw fail("stride must be a positive integer");
  if (pad.length !== 4 || !pad.every((v) => Number.isInteger(v) && v >= 0)) {
    throw fail("padding must be non-negative integers");
  }
  if (kh < 1 || kw < 1 || Cout < 1 || Cin < 1) throw fail("empty kernel");
  const Ho = outSize(H, kh, pad[0], pad[1], stride);
  const Wo = outSize(W, kw, pad[2], pad[3], stride);
  if (Ho < 1 || Wo < 1) throw fail("the kernel is larger than the padded input");
  return { B, Cin, H, W, Cout, kh, kw, stride, pad, Ho, Wo };
}

/**
 * 2-D convolution (cross-correlation, as PyTorch's F.conv2d): x [B, Cin, H, W], w [Cout, Cin, kh,
 * kw], bias [Cout] → [B, Cout, Ho, Wo], with Ho = ⌊(H + top + bottom − kh) / stride⌋ + 1.
 */
export function conv2d(x: Tensor, w: Tensor, bias?: Tensor, opts: Conv2dOptions = {}): Tensor {
  const g = geometry(x, w, bias, opts);
  const method = opts.method ?? defaultMethod;
  const gen = method === "implicit" ? implicitGens : GEN1;
  // A batch too wide for one dispatch's grid takes the im2col path, which cuts it into units.
  const implicit = method !== "im2col" && implicitFits(g);
  const y = noGrad(() =>
    implicit
      ? implicitForward(x, w, bias, g, opts, gen.forward)
      : im2colForward(x, w, bias, g, opts)
  );
  const inputs = bias ? [x, w, bias] : [x, w];
  return record(y, "conv2d", inputs, (gy) => {
    const { dx, dw } = implicit
      ? implicitBackward(x, w, gy, g, opts, gen)
      : im2colBackward(x, w, gy, g, opts);
    const grads = [dx, dw];
    if (bias) {
      grads.push(
        bias.requiresGrad ? (gen.bias === 2 ? convBiasGrad(gy, g) : biasGrad(gy, g)) : null,
      );
    }
    return grads;
  });
}
