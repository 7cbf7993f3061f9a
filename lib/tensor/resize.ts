// Resizing NCHW maps: VQGAN's nearest ×2 upsampling, and DESIGN §3's area_resize (adaptive
// average pooling) and bicubic_resize (PyTorch's, align_corners = False). Kernels in
// kernels/resize.wgsl; each backward is a deterministic gather.
import { ShapeError } from "../errors.ts";
import { dispatch, grid, pipeline } from "../gpu/mod.ts";
import resizeWgsl from "../../kernels/resize.wgsl" with { type: "text" };
import { record, Tensor } from "./tensor.ts";

const groups = (n: number) => grid(Math.ceil(n / 256));

/** Checks x [..., H, W] (rank ≥ 2, f32) and the output size; returns the kernel's uniforms. */
function plan(op: string, x: Tensor, outH: number, outW: number): number[] {
  const desc = `x [${x.shape.join(", ")}] → ${outH}×${outW}`;
  if (x.dtype !== "f32") throw new ShapeError(`${op}: needs f32, got ${x.dtype} (${desc})`);
  if (x.shape.length < 2) throw new ShapeError(`${op}: needs x [..., H, W] (${desc})`);
  const [H, W] = x.shape.slice(-2);
  const sizes = [H, W, outH, outW];
  if (!sizes.every((v) => Number.isInteger(v) && v >= 1)) {
    throw new ShapeError(`${op}: sizes must be positive integers (${desc})`);
  }
  // The kernels index with 32-bit integer products n·(2o + 1) of input and output sizes.
  if (2 * H * outH >= 2 ** 31 || 2 * W * outW >= 2 ** 31) {
    throw new ShapeError(`${op}: sizes too large for 32-bit index arithmetic (${desc})`);
  }
  return [x.size / (H * W), H, W, outH, outW];
}

/** One recorded resize: `forward` and `backward` are entry points of kernels/resize.wgsl. */
function resize(
  op: string,
  x: Tensor,
  outH: number,
  outW: number,
  forward: string,
  backward: string,
): Tensor {
  const uni = plan(op, x, outH, outW);
  const y = new Tensor([...x.shape.slice(0, -2), outH, outW], "f32", undefined, op);
  if (y.size > 0) {
    dispatch(pipeline(resizeWgsl, forward), [x.buffer, y.buffer], uni, groups(y.size));
  }
  return record(y, op, [x], (g) => {
    const dx = new Tensor(x.shape, "f32");
    if (dx.size > 0) {
      dispatch(pipeline(resizeWgsl, backward), [g.buffer, dx.buffer], uni, groups(dx.size));
    }
    return [dx];
  });
}

/** F.interpolate(x, scale_factor=2, mode="nearest") over x [..., H, W] → [..., 2H, 2W]. */
export function upsampleNearest2x(x: Tensor): Tensor {
  const [H, W] = x.shape.length >= 2 ? x.shape.slice(-2) : [0, 0];
  return resize("upsampleNearest2x", x, 2 * H, 2 * W, "nearest2x", "nearest2x_backward");
}

/**
 * F.adaptive_avg_pool2d(x, (outH, outW)) over x [..., H, W]: each output averages the window
 * [⌊o·H/outH⌋, ⌈(o+1)·H/outH⌉) (same along W); any sizes, windows overlap when ratios are not
 * integers (16 → 13), and the same size is the identity.
 */
export function areaResize(x: Tensor, outH: number, outW: number = outH): Tensor {
  return resize("areaResize", x, outH, outW, "area", "area_backward");
}

/**
 * F.interpolate(x, size=(outH, outW), mode="bicubic", align_corners=False) over x [..., H, W]:
 * a = −0.75, source indices clamped to the border, any sizes (13 → 16, 1 → 16, 16 → 13).
 */
export function bicubicResize(x: Tensor, outH: number, outW: number = outH): Tensor {
  return resize("bicubicResize", x, outH, outW, "bicubic", "bicubic_backward");
}
