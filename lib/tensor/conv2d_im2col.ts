// conv2d as im2col + the tiled matmul (the reference path; lib/tensor/conv2d.ts picks the path):
//   cols = im2col(x)            [Cin·kh·kw, columns]   one column per output pixel
//   y    = w[Cout, Cin·kh·kw] · cols                    placed into NCHW, plus bias
//   dx   = col2im(wᵀ · g)       dw = g · colsᵀ          db = Σ g
// The matmul is the project's tuned GEMM; the price is the column buffer, Cin·kh·kw times the
// output map. Work is cut into units (a few whole images, or bands of output rows of one image)
// whose column buffer stays under a budget, so 256×256 maps with hundreds of channels fit any
// device. Columns are recomputed in backward instead of being kept, and split into blocks along
// the pixels so that dw's matmul, whose K is the pixel count, still has enough workgroups.
// Layout details: kernels/conv2d.wgsl.
import { dispatch, gpu, grid, pipeline } from "../gpu/mod.ts";
import conv2dWgsl from "../../kernels/conv2d.wgsl" with { type: "text" };
import type { Conv2dOptions, ConvGeometry } from "./conv2d.ts";
import { matmul } from "./matmul.ts";
import { addInPlace, sum, zeros } from "./ops.ts";
import { Tensor } from "./tensor.ts";

/** Images [b0, b0 + nb) and output rows [oy0, oy0 + rows), columns split as S × KS. */
interface Unit {
  b0: number;
  nb: number;
  oy0: number;
  rows: number;
  S: number;
  KS: number;
  total: number;
}

const DEFAULT_COLUMN_BYTES = 256 * 2 ** 20;
const groups = (n: number) => grid(Math.ceil(n / 256));

/** Cuts the work into units whose column buffers stay under the budget. */
function planUnits(g: ConvGeometry, o: Conv2dOptions): Unit[] {
  const rowsOf = Math.max(g.Cin * g.kh * g.kw, g.Cout);
  const limit = Math.min(gpu().limits.maxStorageBufferBindingSize, gpu().limits.maxBufferSize);
  const budget = Math.min(o.columnBytes ?? DEFAULT_COLUMN_BYTES, limit);
  const rowBytes = rowsOf * g.Wo * 4;
  const perImage = rowBytes * g.Ho;
  const units: Unit[] = [];
  const add = (b0: number, nb: number, oy0: number, rows: number) => {
    const total = nb * rows * g.Wo;
    // dw's matmul has ceil(Cout/128)·ceil(Cin·kh·kw/128) tiles per block: aim for ~256 in all,
    // with blocks of at least 1024 pixels.
    const tiles = Math.ceil(g.Cout / 128) * Math.ceil((g.Cin * g.kh * g.kw) / 128);
    const auto = Math.min(Math.ceil(256 / tiles), Math.floor(total / 1024));
    const want = Math.max(1, Math.min(o.splits ?? auto, total));
    // Blocks of whole 128-column matmul tiles when they are that wide, else of whole vec4s.
    const align = total >= 128 * want ? 128 : 4;
    const KS = Math.ceil(total / want / align) * align;
    units.push({ b0, nb, oy0, rows, S: Math.ceil(total / KS), KS, total });
  };
  // Equal shares: n things in the fewest pieces of at most `most`.
  const share = (n: number, most: number) => Math.ceil(n / Math.ceil(n / Math.max(1, most)));
  if (perImage <= budget) {
    const nb = share(g.B, Math.floor(budget / perImage));
    for (let b0 = 0; b0 < g.B; b0 += nb) add(b0, Math.min(nb, g.B - b0), 0, g.Ho);
  } else {
    const rows = share(g.Ho, Math.floor(budget / rowBytes));
    for (let b0 = 0; b0 < g.B; b0++) {
      for (let oy0 = 0; oy0 < g.Ho; oy0 += rows) add(b0, 1, oy0, Math.min(rows, g.Ho - oy0));
    }
  }
  return units;
}

/** The uniform block of kernels/conv2d.wgsl for one unit; C is the rows of a place/take matrix. */
function params(
  g: ConvGeometry,
  u: Unit,
  hasBias = false,
  iy0 = 0,
  iyRows = 0,
  fresh = false,
): number[] {
  return [
    g.Cin,
    g.H,
    g.W,
    g.Cout,
    g.kh,
    g.kw,
    g.stride,
    g.pad[0],
    g.pad[2],
    g.Ho,
    g.Wo,
    u.b0,
    u.nb,
    u.oy0,
    u.rows,
    u.S,
    u.KS,
    u.total,
    iy0,
    iyRows,
    hasBias ? 1 : 0,
    fresh ? 1 : 0,
  ];
}

function im2col(x: Tensor, g: ConvGeometry, u: Unit): Tensor {
  const R = g.Cin * g.kh * g.kw;
  const cols = new Tensor([u.S, R, u.KS], "f32", undefined, "conv2d");
  dispatch(
    pipeline(conv2dWgsl, "im2col"),
    [x.buffer, cols.buffer],
    params(g, u),
    groups(cols.size),
  );
  return cols;
}

/**
 * Adds the unit's column gradient into dx, over the input rows its columns read; or, when the
 * unit is the whole convolution (`fresh`), writes every element of dx, zeros included.
 */
function col2im(dcols: Tensor, dx: Tensor, g: ConvGeometry, u: Unit, fresh: boolean): void {
  const iy0 = fresh ? 0 : Math.max(0, u.oy0 * g.stride - g.pad[0]);
  const iyEnd = fresh ? g.H : Math.min(g.H, (u.oy0 + u.rows - 1) * g.stride - g.pad[0] + g.kh);
  if (iyEnd <= iy0) return;
  const n = u.nb * g.Cin * (iyEnd - iy0) * g.W;
  dispatch(
    pipeline(conv2dWgsl, "col2im"),
    [dcols.buffer, dx.buffer],
    params(g, u, false, iy0, iyEnd - iy0, fresh),
    groups(n),
  );
}

/** y = conv2d(x, w) + bias through column buffers. */
export function im2colForward(
  x: Tensor,
  w: Tensor,
  bias: Tensor | undefined,
  g: ConvGeometry,
  opts: Conv2dOptions,
): Tensor {
  const R = g.Cin * g.kh * g.kw;
  const y = new Tensor([g.B, g.Cout, g.Ho, g.Wo], "f32", undefined, "conv2d");
  const w2 = w.reshape([g.Cout, R]);
  for (const u of planUnits(g, opts)) {
    const cols = im2col(x, g, u);
    const ycols = matmul(w2, cols);
    const n = u.nb * g.Cout * u.rows * g.Wo;
    dispatch(
      pipeline(conv2dWgsl, "place"),
      [ycols.buffer, (bias ?? ycols).buffer, y.buffer],
      params(g, u, Boolean(bias)),
      groups(n),
    );
    cols.dispose();
    ycols.dispose();
  }
  w2.dispose();
  return y;
}

/** dx (when x needs it) and dw (when w does) for the output gradient gy, through columns. */
export function im2colBackward(
  x: Tensor,
  w: Tensor,
  gy: Tensor,
  g: ConvGeometry,
  opts: Conv2dOptions,
): { dx: Tensor | null; dw: Tensor | null } {
  const units = planUnits(g, opts);
  const R = g.Cin * g.kh * g.kw;
  // One unit covers all of dx, which col2im then writes whole: no zeroing needed.
  const whole = units.length === 1;
  const dx = x.requiresGrad ? (whole ? new Tensor(x.shape, "f32") : zeros(x.shape)) : null;
  let dw: Tensor | null = null;
  const w2 = w.reshape([g.Cout, R]);
  for (const u of units) {
    const gcols = new Tensor([u.S, g.Cout, u.KS], "f32", undefined, "conv2d");
    dispatch(
      pipeline(conv2dWgsl, "take"),
      [gy.buffer, gcols.buffer],
      params(g, u),
      groups(gcols.size),
    );
    if (dx) {
      const dcols = matmul(w2, gcols, { transA: true });
      col2im(dcols, dx, g, u, whole);
      dcols.dispose();
    }
    if (w.requiresGrad) {
      const cols = im2col(x, g, u);
      const blocks = matmul(gcols, cols, { transB: true });
      const part = u.S === 1 ? blocks.reshape([g.Cout, R]) : sum(blocks, 0);
      if (dw) {
        addInPlace(dw, part);
        part.dispose();
      } else dw = part;
      cols.dispose();
      blocks.dispose();
    }
    gcols.dispose();
  }
  w2.dispose();
  let dwShaped: Tensor | null = null;
  if (dw) {
    dwShaped = dw.reshape(w.shape);
    dw.dispose();
  }
  return { dx, dw: dwShaped };
}

/** db = Σ gy over images and pixels (either path). */
export function biasGrad(gy: Tensor, g: ConvGeometry): Tensor {
  const db = new Tensor([g.Cout], "f32", undefined, "conv2d");
  const everything = { b0: 0, nb: g.B, oy0: 0, rows: g.Ho, S: 1, KS: 0, total: 0 };
  dispatch(pipeline(conv2dWgsl, "bias_grad"), [gy.buffer, db.buffer], params(g, everything), [
    g.Cout,
  ]);
  return db;
}
