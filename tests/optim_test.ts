import { AdamW, emaUpdate } from "../lib/train/optim.ts";
import { parameter, tensor } from "../lib/tensor/tensor.ts";
import { assertClose, assertCloseToMass, f32, gpuReady, randn } from "./helpers.ts";

/** torch.optim.AdamW in float64, with global-norm clipping first. */
function adamwRef(
  params: Float64Array[],
  gradsPerStep: (Float64Array | null)[][],
  o: { lr: number; beta1: number; beta2: number; eps: number; wd: number[]; maxNorm: number },
) {
  const m = params.map((p) => new Float64Array(p.length));
  const v = params.map((p) => new Float64Array(p.length));
  const norms: number[] = [];
  gradsPerStep.forEach((grads, s) => {
    const t = s + 1;
    const norm = Math.sqrt(
      grads.reduce((a, g) => a + (g ?? new Float64Array()).reduce((b, x) => b + x * x, 0), 0),
    );
    norms.push(norm);
    const c = o.maxNorm > 0 ? Math.min(1, o.maxNorm / (norm + 1e-6)) : 1;
    params.forEach((p, k) => {
      const gk = grads[k];
      if (!gk) return; // no gradient this step: untouched, moments too
      for (let i = 0; i < p.length; i++) {
        const g = gk[i] * c;
        m[k][i] = o.beta1 * m[k][i] + (1 - o.beta1) * g;
        v[k][i] = o.beta2 * v[k][i] + (1 - o.beta2) * g * g;
        p[i] *= 1 - o.lr * o.wd[k];
        const denom = Math.sqrt(v[k][i]) / Math.sqrt(1 - o.beta2 ** t) + o.eps;
        p[i] -= (o.lr / (1 - o.beta1 ** t)) * m[k][i] / denom;
      }
    });
  });
  return norms;
}

Deno.test("AdamW with clipping matches a float64 torch.optim.AdamW over several steps", async () => {
  await gpuReady;
  // Awkward sizes: one element, a tail past 256, one over 64 workgroups of 256 (partials stride),
  // and a parameter that has no gradient on some steps. 1, 3 and the device's most tensors per
  // dispatch split the same 9 tensors into different groups.
  const shapes = [[7, 13], [1], [1030], [3, 5, 7], [64 * 256 + 77], [2], [255], [257], [9, 9]];
  const wd = [0.1, 0, 0.01, 0, 0.05, 0, 0.2, 0.01, 0];
  for (
    const [maxNorm, perDispatch] of [[0, undefined], [0.5, undefined], [0.5, 1], [3, 3]] as const
  ) {
    const init = shapes.map((s) => f32(randn(s.reduce((a, b) => a * b, 1))));
    const ps = shapes.map((s, k) => parameter(init[k], s));
    const opt = new AdamW(ps.map((param, k) => ({ param, weightDecay: wd[k] })), {
      lr: 0.01,
      beta1: 0.9,
      beta2: 0.95,
      eps: 1e-8,
      maxGradNorm: maxNorm,
      tensorsPerDispatch: perDispatch,
    });
    const steps = 4;
    const grads = Array.from(
      { length: steps },
      (_, s) => init.map((x, k) => (k === 3 && s % 2 === 1 ? null : f32(randn(x.length)))),
    );
    for (let s = 0; s < steps; s++) {
      ps.forEach((p, k) => {
        p.grad?.dispose();
        const g = grads[s][k];
        p.grad = g ? tensor(g, p.shape) : null;
      });
      opt.update();
    }
    const ref = init.map((x) => Float64Array.from(x));
    const norms = adamwRef(ref, grads, {
      lr: 0.01,
      beta1: 0.9,
      beta2: 0.95,
      eps: 1e-8,
      wd,
      maxNorm,
    });
    const what = `maxNorm ${maxNorm}, ${perDispatch ?? "most"} per dispatch`;
    // Judged against the terms' magnitude (|p₀| + the updates, each about lr): a weight that the
    // updates carry to near 0 keeps p₀'s f32 rounding, which relative to its value can be large.
    for (let k = 0; k < ps.length; k++) {
      const mass = Array.from(init[k], (x, i) => Math.abs(x) + Math.abs(ref[k][i]) + steps * 0.01);
      assertCloseToMass(await ps[k].toArray(), ref[k], mass, 1e-6, `AdamW param ${k} (${what})`);
    }
    const [norm, scale] = await opt.stats.toArray();
    assertClose([norm], [norms.at(-1)!], 1e-6, `grad norm (${what})`);
    const want = maxNorm > 0 ? Math.min(1, maxNorm / (norms.at(-1)! + 1e-6)) : 1;
    assertClose([scale], [want], 1e-6, `clip scale (${what})`);
    opt.dispose();
    for (const p of ps) {
      p.grad?.dispose();
      p.dispose();
    }
  }
});

Deno.test("emaUpdate: e + (1 − decay)(p − e) over many tensors of awkward sizes", async () => {
  await gpuReady;
  const sizes = [1, 7, 300, 1025, 3, 17, 9, 64, 2, 5, 11, 13, 19, 23, 29, 31, 37, 41];
  const e0 = sizes.map((n) => f32(randn(n)));
  const p0 = sizes.map((n) => f32(randn(n)));
  const ema = e0.map((d, i) => tensor(d, [sizes[i]]));
  const ps = p0.map((d, i) => tensor(d, [sizes[i]]));
  emaUpdate(ema, ps, 0.9);
  emaUpdate(ema, ps, 0.5);
  for (let i = 0; i < sizes.length; i++) {
    const want = e0[i].map((e, j) => {
      const a = e + 0.1 * (p0[i][j] - e);
      return a + 0.5 * (p0[i][j] - a);
    });
    assertClose(await ema[i].toArray(), want, 1e-6, `ema of tensor ${i} (${sizes[i]})`);
  }
  for (const t of [...ema, ...ps]) t.dispose();
});
