// Causal depthwise conv1d (Mamba's conv1d), with the stateful entry generation uses: the last
// K-1 inputs are carried from one chunk of tokens to the next.
import { ShapeError } from "../errors.ts";
import { dispatch, grid, pipeline } from "../gpu/mod.ts";
import conv1dWgsl from "../../kernels/conv1d.wgsl" with { type: "text" };
import { slice, sum } from "./ops.ts";
import { isGradEnabled, record, Tensor } from "./tensor.ts";

const ROWS_PER_PART = 64;
const fmt = (t: Tensor) => `[${t.shape.join(", ")}]`;
const groups = (n: number) => grid(Math.ceil(n / 256));

export interface Conv1dResult {
  y: Tensor;
  /** The last K-1 inputs [B, K-1, D], to pass as `state` with the next chunk. */
  state: Tensor;
}

/** Generation's fusions (no backward: refused where one would be recorded). */
export interface Conv1dOptions {
  /** y = silu(conv): Mamba's activation in the same pass. */
  silu?: boolean;
  /**
   * x is [B, L, S], S ≥ D, and the conv reads its first D channels in place (Mamba's xs, the
   * first half of the in_proj output), with row stride S.
   */
  prefix?: boolean;
}

/**
 * y[b,t,d] = bias[d] + Σ_k w[d,k]·x[b,t-(K-1)+k,d] over x [B, L, D], w [D, K], bias [D];
 * `state` [B, K-1, D] supplies the inputs before t = 0 (zeros without it).
 */
export function causalConv1d(
  x: Tensor,
  w: Tensor,
  bias: Tensor,
  state?: Tensor,
  opts: Conv1dOptions = {},
): Conv1dResult {
  const desc = `x ${fmt(x)}, w ${fmt(w)}, bias ${fmt(bias)}${state ? `, state ${fmt(state)}` : ""}`;
  if ([x, w, bias, state].some((t) => t && t.dtype !== "f32")) {
    throw new ShapeError(`causalConv1d: needs f32 (${desc})`);
  }
  if (x.shape.length !== 3 || w.shape.length !== 2) {
    throw new ShapeError(`causalConv1d: needs x [B, L, D] and w [D, K], got ${desc}`);
  }
  const [B, L, S] = x.shape;
  const [D, K] = w.shape;
  const ok = (opts.prefix ? S >= D : S === D) && K >= 1 && bias.shape.join() === `${D}` &&
    (!state || state.shape.join() === [B, K - 1, D].join());
  if (!ok) throw new ShapeError(`causalConv1d: shapes disagree: ${desc}`);
  if ((opts.silu || opts.prefix) && isGradEnabled() && [x, w, bias].some((t) => t.requiresGrad)) {
    throw new ShapeError(
      "causalConv1d: the silu and prefix options have no backward; run them without gradients",
    );
  }
  const hasState = state ? 1 : 0;
  const uni = [B, L, D, K, hasState, ROWS_PER_PART, S, opts.silu ? 1 : 0];
  const y = new Tensor([B, L, D], "f32", undefined, "causalConv1d");
  const next = new Tensor([B, K - 1, D], "f32", undefined, "causalConv1d");
  const stateBuf = (state ?? bias).buffer;
  // One dispatch writes y and the next state.
  const threads = Math.max(y.size, next.size);
  if (threads > 0) {
    dispatch(
      pipeline(conv1dWgsl, "forward"),
      [x.buffer, w.buffer, bias.buffer, stateBuf, y.buffer, next.buffer],
      uni,
      groups(threads),
    );
  }
  if (opts.silu || opts.prefix) return { y, state: next };
  record(y, "causalConv1d", [x, w, bias], (g) => {
    const dx = new Tensor([B, L, D], "f32");
    if (dx.size > 0) {
      dispatch(
        pipeline(conv1dWgsl, "backward_input"),
        [g.buffer, w.buffer, dx.buffer],
        uni,
        groups(dx.size),
      );
    }
    const parts = Math.max(1, Math.ceil((B * L) / ROWS_PER_PART));
    const part = new Tensor([parts, D, K + 1], "f32");
    dispatch(
      pipeline(conv1dWgsl, "backward_weight"),
      [g.buffer, x.buffer, stateBuf, part.buffer],
      uni,
      groups(part.size),
    );
    // Taps 0..K-1 are dw, tap K is dbias.
    const total = sum(part, 0);
    const dw = slice(total, 1, 0, K);
    const db = slice(total, 1, K, K + 1).reshape([D]);
    return [dx, dw, db];
  });
  return { y, state: next };
}
