// Attention forward and forward+backward at the base256 shapes (DESIGN.md §4: batch 8, 128 text +
// 680 image positions, 16 heads of 128, block-causal mask with text padding). First validates one
// (batch, head) slice of out, dq, dk and dv against the float64 reference, then times many
// iterations recorded into one submit (median of repeats, after a warm-up).
//   deno run -A tools/bench_attention.ts --json OUT [--small] [--iters N] [--repeats N]
// tools/torch_attention.py times PyTorch's SDPA on the same shapes and mask and prints both.
import { parseArgs } from "node:util";
import { initGpu, sync } from "../lib/gpu/mod.ts";
import { attention, blockCausalMask, disposeMask } from "../lib/tensor/attention.ts";
import { noGrad, parameter, tensor, tidy } from "../lib/tensor/tensor.ts";
import { type Geometry, refAttention, refGrads } from "../tests/attention_ref.ts";
import { relErr } from "../tests/helpers.ts";

const SCALES = [1, 2, 3, 4, 5, 6, 8, 10, 13, 16];
const TEXT = 128;
/** PADs at the start of batch row b's caption (shared with tools/torch_attention.py). */
const pads = (B: number) => Array.from({ length: B }, (_, b) => (b * 29) % 100);

const { values } = parseArgs({
  options: {
    json: { type: "string" },
    small: { type: "boolean", default: false },
    iters: { type: "string" },
    repeats: { type: "string", default: "5" },
  },
});

const gpu = await initGpu();
const small = values.small || gpu.isCpu;
const [B, H, Dh] = small ? [1, 2, 128] : [8, 16, 128];
const iters = Number(values.iters ?? (small ? 2 : 30));
const repeats = Number(values.repeats);

const mask = blockCausalMask(
  SCALES,
  pads(B).map((p) => Array.from({ length: TEXT }, (_, i) => i >= p)),
);
const S = mask.length;
const shape = [B, S, H, Dh];
const n = B * S * H * Dh;
// Uniform inputs in [-2, 2]: logits of a few units, as a trained model's, so the check is not
// dominated by one key per row.
const random = () => Float32Array.from({ length: n }, () => Math.random() * 4 - 2);
const host = [random(), random(), random()];
const dout = random();
const [q, k, v] = host.map((x) => parameter(x, shape));
const doutT = tensor(dout, shape);

// ---- validation: one (batch, head) against float64 ------------------------------------------
const [vb, vh] = [B - 1, H - 1];
const headOf = (x: ArrayLike<number>) => {
  const out = new Float64Array(S * Dh);
  for (let s = 0; s < S; s++) {
    for (let d = 0; d < Dh; d++) out[s * Dh + d] = x[((vb * S + s) * H + vh) * Dh + d];
  }
  return out;
};
const errors = await (async () => {
  const out = attention(q, k, v, mask);
  const grads = out.node!.backward(doutT);
  const got = await Promise.all([out, ...grads].map((t) => t!.toArray()));
  const g: Geometry = {
    B: 1,
    sq: S,
    sk: S,
    H: 1,
    Dh,
    qStart: 0,
    mask: { levels: mask.levels, keyLevels: mask.keyLevels.slice(vb * S, (vb + 1) * S), length: S },
  };
  const xs = host.map(headOf);
  const ref = [refAttention(g, xs), ...refGrads(g, xs, headOf(dout))];
  const names = ["out", "dq", "dk", "dv"];
  const e = Object.fromEntries(names.map((name, i) => [name, relErr(headOf(got[i]), ref[i])]));
  for (const t of [out, ...grads]) t?.dispose();
  return e;
})();
for (const [name, e] of Object.entries(errors)) {
  if (!(e < 1e-4)) throw new Error(`validation failed: ${name} relative error ${e}`);
}

// ---- timing ---------------------------------------------------------------------------------
async function time(step: () => void): Promise<number> {
  step();
  await sync();
  const ms: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const t0 = performance.now();
    for (let i = 0; i < iters; i++) step();
    await sync();
    ms.push((performance.now() - t0) / iters);
  }
  return ms.sort((a, b) => a - b)[Math.floor(ms.length / 2)];
}

const forwardMs = await time(() => tidy(() => void noGrad(() => attention(q, k, v, mask))));
const forwardBackwardMs = await time(() =>
  tidy(() => void attention(q, k, v, mask).node!.backward(doutT))
);
// Where the backward's time goes: with only dK, dV wanted the dQ pass is skipped, and vice versa.
q.requiresGrad = false;
const withoutDqMs = await time(() =>
  tidy(() => void attention(q, k, v, mask).node!.backward(doutT))
);
[q.requiresGrad, k.requiresGrad, v.requiresGrad] = [true, false, false];
const withoutDkDvMs = await time(() =>
  tidy(() => void attention(q, k, v, mask).node!.backward(doutT))
);

// Work actually visible through the mask: 4·Dh flops per (query, key) pair forward (FA2's count),
// 2.5× that backward.
let pairs = 0;
for (let b = 0; b < B; b++) {
  for (let i = 0; i < S; i++) {
    for (let j = 0; j < S; j++) if (mask.keyLevels[b * S + j] <= mask.levels[i]) pairs++;
  }
}
const fwdFlops = 4 * Dh * pairs * H;
const result = {
  device: gpu.name,
  shape: { B, S, H, Dh, text: TEXT, scales: SCALES, pads: pads(B) },
  visibleFraction: pairs / (B * S * S),
  validation: errors,
  forwardMs,
  forwardBackwardMs,
  dkdvPassMs: withoutDqMs - forwardMs,
  dqPassMs: withoutDkDvMs - forwardMs,
  forwardTflops: fwdFlops / forwardMs / 1e9,
  forwardBackwardTflops: (3.5 * fwdFlops) / forwardBackwardMs / 1e9,
  iters,
  repeats,
};
console.log(
  `${gpu.name}: attention [${shape}] block-causal (${
    (100 * result.visibleFraction).toFixed(1)
  }% visible)\n` +
    `  validation rel. err: ${
      Object.entries(errors).map(([k, e]) => `${k} ${e.toExponential(1)}`).join(", ")
    }\n` +
    `  forward ${forwardMs.toFixed(3)} ms (${result.forwardTflops.toFixed(3)} TFLOP/s visible), ` +
    `forward+backward ${forwardBackwardMs.toFixed(3)} ms (${
      result.forwardBackwardTflops.toFixed(3)
    } TFLOP/s)\n` +
    `  backward passes (incl. delta): dK/dV ${result.dkdvPassMs.toFixed(3)} ms, dQ ${
      result.dqPassMs.toFixed(3)
    } ms`,
);
if (values.json) Deno.writeTextFileSync(values.json, JSON.stringify(result, null, 2));
for (const t of [q, k, v, doutT]) t.dispose();
disposeMask(mask);
