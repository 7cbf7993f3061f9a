// Rotary position embedding (DESIGN.md §4), a separate op applied to q and k before attention
// (the KV cache then holds rotated keys). Pairs are adjacent dims (2j, 2j+1) of an axis's m dims,
// turned by pos·θ^(−2j/m), θ = 10000. 1D (the text encoder): one axis over the whole head dim.
// 2D (GSA): the head's first half turns with the row coordinate, the second with the column.
// The (cos, sin) table is computed in float64 on the host once per layout, so the kernel does no
// transcendental math and large angles lose nothing to GPU range reduction.
import { ShapeError } from "../errors.ts";
import { dispatch, f32bits, grid, pipeline } from "../gpu/mod.ts";
import ropeWgsl from "../../kernels/rope.wgsl" with { type: "text" };
import { record, Tensor, tensor } from "./tensor.ts";

export const ROPE_THETA = 10000;

/** 1D coordinates of `length` text positions: position p → [p]. */
export function textPositions(length: number): number[][] {
  return Array.from({ length }, (_, p) => [p]);
}

/**
 * 2D coordinates of [text prefix (T) ; image tokens of `scales`]: text gets (0, 0), i.e. no
 * rotation; token (r, c) of a pn×pn scale gets ((r+0.5)·P/pn, (c+0.5)·P/pn), P the last pn, so
 * every scale shares one spatial frame.
 */
export function scalePositions(scales: readonly number[], textLength: number): number[][] {
  if (scales.length === 0) throw new ShapeError("scalePositions: no scales");
  const P = scales[scales.length - 1];
  const coords: number[][] = Array.from({ length: textLength }, () => [0, 0]);
  for (const pn of scales) {
    for (let r = 0; r < pn; r++) {
      for (let c = 0; c < pn; c++) coords.push([(r + 0.5) * P / pn, (c + 0.5) * P / pn]);
    }
  }
  return coords;
}

/**
 * The (cos, sin) table [S, Dh/2, 2] for per-position coordinates with A axes: axis a owns dims
 * a·m .. a·m + m − 1 (m = Dh/A) and turns its pair j by coord[a]·θ^(−2j/m).
 */
export function ropeTable(coords: number[][], headDim: number, theta = ROPE_THETA): Tensor {
  const S = coords.length;
  const A = coords[0]?.length ?? 1;
  if (S === 0) throw new ShapeError("ropeTable: no positions");
  if (!Number.isInteger(headDim) || headDim <= 0 || headDim % (2 * A) !== 0) {
    throw new ShapeError(`ropeTable: head dim ${headDim} does not split into ${A} axes of pairs`);
  }
  const m = headDim / A;
  const pairs = headDim / 2;
  const out = new Float32Array(S * pairs * 2);
  coords.forEach((c, s) => {
    if (c.length !== A) {
      throw new ShapeError(`ropeTable: position ${s} has ${c.length} coordinates, not ${A}`);
    }
    for (let a = 0; a < A; a++) {
      for (let j = 0; j < m / 2; j++) {
        const angle = c[a] * Math.pow(theta, (-2 * j) / m);
        const i = (s * pairs + a * (m / 2) + j) * 2;
        out[i] = Math.cos(angle);
        out[i + 1] = Math.sin(angle);
      }
    }
  });
  return tensor(out, [S, pairs, 2]);
}

/** The text encoder's table: 1D over the whole head for `length` text positions. */
export const rope1dTable = (length: number, headDim: number) =>
  ropeTable(textPositions(length), headDim);

/** GSA's table: 2D over [text prefix (T, unrotated) ; scales]. */
export const rope2dTable = (scales: readonly number[], textLength: number, headDim: number) =>
  ropeTable(scalePositions(scales, textLength), headDim);

function turn(x: Tensor, table: Tensor, start: number, sign: 1 | -1): Tensor {
  const [, S, H, Dh] = x.shape;
  const out = new Tensor(x.shape, "f32", undefined, "rope");
  const total = x.size / 2;
  if (total > 0) {
    dispatch(
      pipeline(ropeWgsl),
      [x.buffer, table.buffer, out.buffer],
      [Dh / 2, H, S, start, total, f32bits(sign)],
      grid(Math.ceil(total / 256)),
    );
  }
  return out;
}

/**
 * Rotates x [B, S, H, Dh] (f32) by `table` [rows, Dh/2, 2]: row s of x uses table row start + s
 * (start > 0 for new tokens appended to a KV cache). The table gets no gradient.
 */
export function rope(x: Tensor, table: Tensor, start = 0): Tensor {
  if (x.shape.length !== 4 || x.dtype !== "f32") {
    throw new ShapeError(`rope: x must be f32 [B, S, H, Dh], got [${x.shape}] ${x.dtype}`);
  }
  const [, S, , Dh] = x.shape;
  const t = table.shape;
  if (t.length !== 3 || t[2] !== 2 || table.dtype !== "f32" || t[1] * 2 !== Dh) {
    throw new ShapeError(
      `rope: table [${t}] ${table.dtype} does not fit head dim ${Dh}; build it with ropeTable`,
    );
  }
  if (!Number.isInteger(start) || start < 0 || start + S > t[0]) {
    throw new ShapeError(
      `rope: rows [${start}, ${start + S}) are outside the table's ${t[0]} rows`,
    );
  }
  const out = turn(x, table, start, 1);
  return record(out, "rope", [x], (g) => [turn(g, table, start, -1)]);
}
