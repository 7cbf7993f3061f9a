// Vector-quantisation ops of DESIGN §3's residual quantizer: the nearest code of each vector,
// codebook lookup (with its gradient into the codebook), and code usage. Vectors are rows of
// [N, C] or the pixels of an NCHW map [B, C, H, W]; the codebook is [V, C]. Kernels in
// kernels/vq.wgsl.
import { ShapeError } from "../errors.ts";
import { dispatch, grid, pipeline } from "../gpu/mod.ts";
import vqWgsl from "../../kernels/vq.wgsl" with { type: "text" };
import { zeros } from "./ops.ts";
import { record, Tensor } from "./tensor.ts";

/** lookup_backward gives each (code, channel) pair of a workgroup of 256 its own thread. */
export const MAX_CODE_DIM = 256;

const fmt = (t: Tensor) => `[${t.shape.join(", ")}]`;
const groups = (n: number) => grid(Math.ceil(n / 256));

function checkCodebook(op: string, codebook: Tensor, desc: string): [number, number] {
  if (codebook.dtype !== "f32" || codebook.shape.length !== 2) {
    throw new ShapeError(`${op}: the codebook must be f32 [V, C] (${desc})`);
  }
  const [V, C] = codebook.shape;
  if (V < 1 || C < 1 || C > MAX_CODE_DIM) {
    throw new ShapeError(`${op}: needs V ≥ 1 codes of 1…${MAX_CODE_DIM} channels (${desc})`);
  }
  return [V, C];
}

/**
 * The nearest code of each vector by squared L2 distance, ties to the lowest index (as
 * torch.argmin): z [N, C] → i32 [N], or z [B, C, H, W] → i32 [B, H, W]. Not differentiable.
 */
export function nearestCode(z: Tensor, codebook: Tensor): Tensor {
  const desc = `z ${fmt(z)}, codebook ${fmt(codebook)}`;
  const [V, C] = checkCodebook("nearestCode", codebook, desc);
  const rank = z.shape.length;
  if (z.dtype !== "f32" || (rank !== 2 && rank !== 4) || z.shape[1] !== C) {
    throw new ShapeError(`nearestCode: needs f32 z [N, ${C}] or [B, ${C}, H, W] (${desc})`);
  }
  const HW = rank === 4 ? z.shape[2] * z.shape[3] : 0;
  const N = z.size / C;
  const shape = rank === 4 ? [z.shape[0], z.shape[2], z.shape[3]] : [N];
  const idx = new Tensor(shape, "i32", undefined, "nearestCode");
  if (N > 0) {
    dispatch(
      pipeline(vqWgsl, "nearest_code"),
      [z.buffer, codebook.buffer, idx.buffer],
      [N, C, V, HW],
      grid(Math.ceil(N / 64)),
    );
  }
  return idx;
}

/**
 * Codebook rows at the indices: i32 [N] → [N, C], or i32 [B, H, W] → NCHW [B, C, H, W] (indices
 * outside [0, V) give zeros). The gradient flows into the codebook rows, summed in a fixed order.
 */
export function lookupCodes(codebook: Tensor, indices: Tensor): Tensor {
  const desc = `codebook ${fmt(codebook)}, indices ${fmt(indices)} ${indices.dtype}`;
  const [V, C] = checkCodebook("lookupCodes", codebook, desc);
  const rank = indices.shape.length;
  if (indices.dtype !== "i32" || (rank !== 1 && rank !== 3)) {
    throw new ShapeError(`lookupCodes: needs i32 indices [N] or [B, H, W] (${desc})`);
  }
  const N = indices.size;
  const HW = rank === 3 ? indices.shape[1] * indices.shape[2] : 0;
  const shape = rank === 3 ? [indices.shape[0], C, indices.shape[1], indices.shape[2]] : [N, C];
  const uni = [N, C, V, HW];
  const out = new Tensor(shape, "f32", undefined, "lookupCodes");
  if (out.size > 0) {
    dispatch(
      pipeline(vqWgsl, "lookup"),
      [codebook.buffer, indices.buffer, out.buffer],
      uni,
      groups(out.size),
    );
  }
  return record(out, "lookupCodes", [codebook], (g) => {
    const d = new Tensor([V, C], "f32");
    dispatch(
      pipeline(vqWgsl, "lookup_backward"),
      [g.buffer, indices.buffer, d.buffer],
      uni,
      grid(Math.ceil(V / Math.floor(256 / C))),
    );
    return [d];
  });
}

/**
 * How many indices name each of V codes (codebook usage): u32 [V]; others are ignored. With
 * `into`, the counts are added to that u32 [V] tensor (usage over many steps, read back rarely).
 */
export function codeUsage(indices: Tensor, V: number, into?: Tensor): Tensor {
  if (indices.dtype !== "i32" || !Number.isInteger(V) || V < 1) {
    throw new ShapeError(
      `codeUsage: needs i32 indices and V ≥ 1 (indices ${fmt(indices)} ${indices.dtype}, V ${V})`,
    );
  }
  if (into && (into.dtype !== "u32" || into.size !== V)) {
    throw new ShapeError(`codeUsage: into must be u32 [${V}], got ${fmt(into)} ${into.dtype}`);
  }
  const counts = into ?? zeros([V], "u32");
  if (indices.size > 0) {
    dispatch(
      pipeline(vqWgsl, "code_usage"),
      [indices.buffer, counts.buffer],
      [indices.size, 1, V, 0],
      groups(indices.size),
    );
  }
  return counts;
}
