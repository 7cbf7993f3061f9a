// The selective scan op (Mamba-1, DESIGN §4): the sequential walks of kernels/scan_sequence.ts (or
// the chunked passes of kernels/scan.ts, kept for comparison and for d_state over 16) and the
// chunked gradient pass, with a stateful entry for generation: start from a given SSM state,
// return the state after the chunk.
import { ShapeError } from "../errors.ts";
import { dispatch, generated, grid, pipeline } from "../gpu/mod.ts";
import {
  carryWgsl,
  chunkGradStateWgsl,
  chunkGradsWgsl,
  chunkOutputWgsl,
  chunkStateWgsl,
  LC,
} from "../../kernels/scan.ts";
import {
  SEQ_MAX_N,
  SEQ_WG,
  sequenceGradCarryWgsl,
  sequenceScanWgsl,
} from "../../kernels/scan_sequence.ts";
import { sum } from "./ops.ts";
import { isGradEnabled, record, Tensor } from "./tensor.ts";

export interface ScanOptions {
  /** SSM state [B, D, N] to start from (generation carries it from one scale to the next). */
  h0?: Tensor;
  /**
   * "sequence" (the default where d_state ≤ 16): a one-pass forward, a thread per batch and
   * channel walking L, and the backward's dh carry across chunks as the same walk in reverse.
   * "chunked": the three-pass forward over LC-step chunks and the backward's chunk-local and carry
   * passes (kept for d_state over 16 and for benchmarks to compare). Both save the same chunk
   * states, and both backwards end with the chunked gradient pass (with "sequence", its sums over
   * states read workgroup memory without bank conflicts).
   */
  kernels?: "sequence" | "chunked";
}

export interface ScanResult {
  /** y [B, L, D] with y_t = C_t · h_t (the D·u skip and the gate are applied by the block). */
  y: Tensor;
  /** The state after the last step, [B, D, N]. */
  state: Tensor;
}

const fmt = (t: Tensor) => `[${t.shape.join(", ")}]`;

function check(u: Tensor, delta: Tensor, A: Tensor, Bm: Tensor, Cm: Tensor, h0?: Tensor) {
  const all = [u, delta, A, Bm, Cm, ...(h0 ? [h0] : [])];
  const desc = () =>
    `u ${fmt(u)}, delta ${fmt(delta)}, A ${fmt(A)}, B ${fmt(Bm)}, C ${fmt(Cm)}` +
    (h0 ? `, h0 ${fmt(h0)}` : "");
  if (all.some((t) => t.dtype !== "f32")) {
    throw new ShapeError(`selectiveScan: needs f32 (${desc()})`);
  }
  if (u.shape.length !== 3 || A.shape.length !== 2) {
    throw new ShapeError(`selectiveScan: needs u [B, L, D] and A [D, N], got ${desc()}`);
  }
  const [b, l, d] = u.shape;
  const n = A.shape[1];
  const ok = delta.shape.join() === u.shape.join() && A.shape[0] === d &&
    Bm.shape.join() === [b, l, n].join() && Cm.shape.join() === [b, l, n].join() &&
    (!h0 || h0.shape.join() === [b, d, n].join());
  if (!ok) throw new ShapeError(`selectiveScan: shapes disagree: ${desc()}`);
  if (!(n >= 1 && n <= 256 && 256 % n === 0)) {
    throw new ShapeError(`selectiveScan: d_state must divide 256, got ${n}`);
  }
  return { b, l, d, n };
}

/**
 * h_t = exp(Δ_t·A) ⊙ h_{t-1} + Δ_t·B_t·u_t, y_t = C_t·h_t over u, Δ [B, L, D], A [D, N],
 * B, C [B, L, N]. Gradients flow to u, Δ, A, B and C (not to h0).
 */
export function selectiveScan(
  u: Tensor,
  delta: Tensor,
  A: Tensor,
  Bm: Tensor,
  Cm: Tensor,
  opts: ScanOptions = {},
): ScanResult {
  const { b, l, d, n } = check(u, delta, A, Bm, Cm, opts.h0);
  const nC = Math.max(1, Math.ceil(l / LC));
  const dg = 256 / n;
  const groups: [number, number, number] = [Math.ceil(d / dg), nC, b];
  const uni = [b, l, d, nC, opts.h0 ? 1 : 0];
  const chunkShape = [b, nC, d, n];

  const kernels = opts.kernels ?? (n <= SEQ_MAX_N ? "sequence" : "chunked");
  if (kernels === "sequence" && n > SEQ_MAX_N) {
    throw new ShapeError(`selectiveScan: the sequence kernels need d_state ≤ ${SEQ_MAX_N}`);
  }
  const wantsGrad = isGradEnabled() && [u, delta, A, Bm, Cm].some((t) => t.requiresGrad);
  // Chunk start states, kept for backward; without one the sequence forward writes none (the
  // stand-in holds one vec4, the least a vec4 binding accepts).
  const start = new Tensor(
    kernels === "sequence" && !wantsGrad ? [4] : chunkShape,
    "f32",
    undefined,
    "selectiveScan",
  );
  const state = new Tensor([b, d, n], "f32");
  const y = new Tensor([b, l, d], "f32", undefined, "selectiveScan");
  if (l > 0 && d > 0 && b > 0 && kernels === "sequence") {
    dispatch(
      pipeline(generated(`sequenceScanWgsl:${n}`, () => sequenceScanWgsl(n))),
      [
        u.buffer,
        delta.buffer,
        A.buffer,
        Bm.buffer,
        Cm.buffer,
        (opts.h0 ?? A).buffer,
        y.buffer,
        start.buffer,
        state.buffer,
      ],
      [...uni, wantsGrad ? 1 : 0],
      [Math.ceil(d / SEQ_WG), b, 1],
    );
  } else if (l > 0 && d > 0 && b > 0) {
    const decay = new Tensor(chunkShape, "f32");
    const hEnd = new Tensor(chunkShape, "f32");
    dispatch(
      pipeline(generated(`chunkStateWgsl:${n}`, () => chunkStateWgsl(n))),
      [u.buffer, delta.buffer, A.buffer, Bm.buffer, decay.buffer, hEnd.buffer],
      uni,
      groups,
    );
    dispatch(
      pipeline(generated(`carry:${n}:fwd`, () => carryWgsl(n, false))),
      [decay.buffer, hEnd.buffer, (opts.h0 ?? decay).buffer, start.buffer, state.buffer],
      uni,
      grid(Math.ceil((b * d * n) / 256)),
    );
    dispatch(
      pipeline(generated(`chunkOutputWgsl:${n}`, () => chunkOutputWgsl(n))),
      [u.buffer, delta.buffer, A.buffer, Bm.buffer, Cm.buffer, start.buffer, y.buffer],
      uni,
      groups,
    );
    decay.dispose();
    hEnd.dispose();
  }

  record(y, "selectiveScan", [u, delta, A, Bm, Cm], (dy) => {
    const carryIn = new Tensor(chunkShape, "f32");
    if (kernels === "sequence") {
      dispatch(
        pipeline(generated(`sequenceGradCarryWgsl:${n}`, () => sequenceGradCarryWgsl(n))),
        [delta.buffer, A.buffer, Cm.buffer, dy.buffer, carryIn.buffer],
        [...uni, 1],
        [Math.ceil(d / SEQ_WG), b, 1],
      );
    } else {
      const gDecay = new Tensor(chunkShape, "f32");
      const carryOut = new Tensor(chunkShape, "f32");
      const unused = new Tensor([b, d, n], "f32");
      dispatch(
        pipeline(generated(`chunkGradStateWgsl:${n}`, () => chunkGradStateWgsl(n))),
        [delta.buffer, A.buffer, Cm.buffer, dy.buffer, gDecay.buffer, carryOut.buffer],
        uni,
        groups,
      );
      dispatch(
        pipeline(generated(`carry:${n}:bwd`, () => carryWgsl(n, true))),
        [gDecay.buffer, carryOut.buffer, gDecay.buffer, carryIn.buffer, unused.buffer],
        [b, l, d, nC, 0],
        grid(Math.ceil((b * d * n) / 256)),
      );
      for (const t of [gDecay, carryOut, unused]) t.dispose();
    }
    const nG = Math.ceil(d / dg);
    const du = new Tensor([b, l, d], "f32");
    const dDelta = new Tensor([b, l, d], "f32");
    const dAPart = new Tensor([b * nC, d * n], "f32");
    const dBPart = new Tensor([b, nG, l * n], "f32");
    const dCPart = new Tensor([b, nG, l * n], "f32");
    dispatch(
      pipeline(
        generated(
          `chunkGradsWgsl:${n}:${kernels}`,
          () => chunkGradsWgsl(n, kernels === "sequence"),
        ),
      ),
      [
        u.buffer,
        delta.buffer,
        A.buffer,
        Bm.buffer,
        Cm.buffer,
        start.buffer,
        carryIn.buffer,
        dy.buffer,
        du.buffer,
        dDelta.buffer,
        dAPart.buffer,
        dBPart.buffer,
        dCPart.buffer,
      ],
      [...uni, nG],
      groups,
    );
    carryIn.dispose();
    const dA = sum(dAPart, 0).reshape([d, n]);
    const dB = sum(dBPart, 1).reshape([b, l, n]);
    const dC = sum(dCPart, 1).reshape([b, l, n]);
    for (const t of [dAPart, dBPart, dCPart]) t.dispose();
    return [du, dDelta, dA, dB, dC];
  });
  if (!y.node) start.dispose();
  return { y, state };
}
