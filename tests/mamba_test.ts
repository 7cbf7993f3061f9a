// The Mamba block as a whole: carried state, PAD transparency, and gradients of every parameter.
import { Mamba, type MambaCache } from "../lib/nn/mamba.ts";
import { recorderStats, upload } from "../lib/gpu/mod.ts";
import { Init } from "../lib/nn/module.ts";
import { abs, mul, slice, sumAll } from "../lib/tensor/ops.ts";
import { noGrad, tensor, tidyAsync } from "../lib/tensor/tensor.ts";
import { assert, assertClose, assertDirectionalGrads, f32, gpuReady, randn } from "./helpers.ts";

Deno.test("Mamba block: running in pieces with the carried cache equals one full pass", async () => {
  await gpuReady;
  const [b, l, d] = [2, 41, 24];
  const block = new Mamba(new Init(1), { dModel: d });
  const x = f32(randn(b * l * d));
  await tidyAsync(async () => {
    const want = await noGrad(() => block.forward(tensor(x, [b, l, d])).y).toArray();
    const got = new Float64Array(want.length);
    let cache: MambaCache | undefined;
    const cuts = [0, 1, 5, 21, 41];
    for (let c = 0; c + 1 < cuts.length; c++) {
      const [s, e] = [cuts[c], cuts[c + 1]];
      const piece: number[] = [];
      for (let bi = 0; bi < b; bi++) piece.push(...x.slice((bi * l + s) * d, (bi * l + e) * d));
      const r = noGrad(() => block.forward(tensor(piece, [b, e - s, d]), undefined, cache));
      cache = r.cache;
      const ys = await r.y.toArray();
      for (let bi = 0; bi < b; bi++) {
        got.set(ys.slice(bi * (e - s) * d, (bi + 1) * (e - s) * d), (bi * l + s) * d);
      }
    }
    assertClose(got, want, 1e-5, "Mamba pieces vs full pass");
  });
  block.dispose();
});

Deno.test("Mamba block: left PAD positions change nothing at the real tokens", async () => {
  await gpuReady;
  const [l, pad, d] = [13, 5, 16];
  const block = new Mamba(new Init(2), { dModel: d });
  const real = f32(randn(l * d));
  const junk = f32(randn(pad * d, undefined, 10));
  await tidyAsync(async () => {
    const alone = await noGrad(() => block.forward(tensor(real, [1, l, d])).y).toArray();
    const mask = tensor([...new Array(pad).fill(0), ...new Array(l).fill(1)], [1, pad + l, 1]);
    const padded = noGrad(() =>
      slice(block.forward(tensor([...junk, ...real], [1, pad + l, d]), mask).y, 1, pad, pad + l)
    );
    assertClose(await padded.toArray(), alone, 1e-5, "padded vs unpadded");
  });
  block.dispose();
});

Deno.test("Mamba block: every parameter's gradient agrees with a directional difference", async () => {
  await gpuReady;
  const [b, l, d] = [2, 19, 16];
  const block = new Mamba(new Init(3), { dModel: d });
  // mamba's init gives Δ in [0.001, 0.1], where the output barely depends on dt_proj and A_log
  // (gradients ~1e-4 against a loss whose f32 rounding is ~1e-5): Δ in [0.3, 1] makes them
  // measurable by differences.
  const dt = Float32Array.from({ length: block.dInner }, (_, i) => 0.3 + (0.7 * i) / block.dInner);
  upload(block.dtProj.bias!.buffer, dt.map((v) => v + Math.log(-Math.expm1(-v))));
  const x = tensor(f32(randn(b * l * d)), [b, l, d]);
  const r = tensor(f32(randn(b * l * d)), [b, l, d]);
  const loss = () => sumAll(mul(block.forward(x).y, r));
  const mass = await tidyAsync(() => noGrad(() => sumAll(abs(mul(block.forward(x).y, r)))).item());
  await assertDirectionalGrads(block.namedParameters(), loss, { eps: 1e-2, mass });
  block.dispose();
  x.dispose();
  r.dispose();
});

/**
 * mamba_simple.Mamba's reference path (selective_scan_ref) in float64, on our block's weights:
 * in_proj → x, z; causal depthwise conv1d + bias, SiLU → u; x_proj → dt, B, C;
 * Δ = softplus(dt_proj(dt)); h ← exp(Δ·A)·h + Δ·B·u with A = −exp(A_log); y = C·h + D·u;
 * y·SiLU(z) → out_proj.
 */
async function mambaRef(block: Mamba, x: Float64Array, b: number, l: number, d: number) {
  const p = new Map<string, number[]>();
  for (const [name, t] of block.namedParameters()) p.set(name, await t.toArray());
  const [di, n, r, k] = [block.dInner, block.dState, block.dtRank, block.dConv];
  const get = (name: string) => p.get(name)!;
  const [wIn, convW, convB, wX, wDt, bDt, aLog, dSkip, wOut] = [
    "in_proj.weight",
    "conv1d.weight",
    "conv1d.bias",
    "x_proj.weight",
    "dt_proj.weight",
    "dt_proj.bias",
    "A_log",
    "D",
    "out_proj.weight",
  ].map(get);
  const silu = (v: number) => v / (1 + Math.exp(-v));
  const softplus = (v: number) => (v > 20 ? v : Math.log1p(Math.exp(v)));
  const matvec = (w: number[], rows: number, cols: number, v: ArrayLike<number>, off = 0) =>
    Array.from({ length: rows }, (_, i) => {
      let s = 0;
      for (let j = 0; j < cols; j++) s += w[i * cols + j] * v[off + j];
      return s;
    });
  const out = new Float64Array(b * l * d);
  for (let bi = 0; bi < b; bi++) {
    const xz = Array.from({ length: l }, (_, t) => matvec(wIn, 2 * di, d, x, (bi * l + t) * d));
    const u = Array.from({ length: l }, (_, t) =>
      Array.from({ length: di }, (_, i) => {
        let s = convB[i];
        for (let j = 0; j < k; j++) {
          const src = t - (k - 1) + j;
          if (src >= 0) s += convW[i * k + j] * xz[src][i];
        }
        return silu(s);
      }));
    const h = new Float64Array(di * n);
    for (let t = 0; t < l; t++) {
      const xDbl = matvec(wX, r + 2 * n, di, u[t]);
      const delta = matvec(wDt, di, r, xDbl).map((v, i) => softplus(v + bDt[i]));
      const y = new Array(di).fill(0);
      for (let i = 0; i < di; i++) {
        for (let s = 0; s < n; s++) {
          const a = -Math.exp(aLog[i * n + s]);
          h[i * n + s] = Math.exp(delta[i] * a) * h[i * n + s] + delta[i] * xDbl[r + s] * u[t][i];
          y[i] += xDbl[r + n + s] * h[i * n + s];
        }
        y[i] = (y[i] + dSkip[i] * u[t][i]) * silu(xz[t][di + i]);
      }
      out.set(matvec(wOut, d, di, y), (bi * l + t) * d);
    }
  }
  return out;
}

Deno.test("Mamba block forward equals mamba_simple's reference path in float64", async () => {
  await gpuReady;
  const [b, l, d] = [2, 37, 24];
  const block = new Mamba(new Init(4), { dModel: d });
  // D and A_log start as constants (1, log 1..16): make them random so a lost or swapped term
  // shows.
  upload(block.D.buffer, Float32Array.from(randn(block.D.size)));
  upload(block.ALog.buffer, Float32Array.from(randn(block.ALog.size), (v) => 0.5 * v));
  const x = f32(randn(b * l * d));
  const got = await tidyAsync(async () =>
    await noGrad(() => block.forward(tensor(x, [b, l, d])).y).toArray()
  );
  assertClose(got, await mambaRef(block, x, b, l, d), 1e-5, "Mamba block vs reference");
  block.dispose();
});

Deno.test("Mamba block: generation's fused path (no gradients) equals the recorded one, in pieces with PAD", async () => {
  await gpuReady;
  const [b, l, d] = [2, 23, 24];
  const block = new Mamba(new Init(5), { dModel: d });
  upload(block.D.buffer, Float32Array.from(randn(block.D.size)));
  upload(block.ALog.buffer, Float32Array.from(randn(block.ALog.size), (v) => 0.5 * v));
  const x = f32(randn(b * l * d));
  // Row 1 starts with 4 PAD positions, across the first cut.
  const mask = Float32Array.from({ length: b * l }, (_, i) => (i >= l && i < l + 4 ? 0 : 1));
  const cuts = [0, 3, 4, 23];
  const run = (grad: boolean) =>
    tidyAsync(async () => {
      const out = new Float64Array(b * l * d);
      const dispatches: number[] = [];
      let cache: MambaCache | undefined;
      for (let c = 0; c + 1 < cuts.length; c++) {
        const [s, e] = [cuts[c], cuts[c + 1]];
        const piece: number[] = [], m: number[] = [];
        for (let bi = 0; bi < b; bi++) {
          piece.push(...x.slice((bi * l + s) * d, (bi * l + e) * d));
          m.push(...mask.slice(bi * l + s, bi * l + e));
        }
        const [xt, mt] = [tensor(piece, [b, e - s, d]), tensor(m, [b, e - s, 1])];
        const before = recorderStats.dispatches;
        const r = grad ? block.forward(xt, mt, cache) : noGrad(() => block.forward(xt, mt, cache));
        dispatches.push(recorderStats.dispatches - before);
        assert(r.y.requiresGrad === grad, `piece ${c}: recorded ${r.y.requiresGrad}`);
        // The constants (A = −exp(A_log), the folded weights) are carried without gradients (made
        // once, then passed on) and never with.
        if (grad) {
          assert(r.cache.consts === undefined, `piece ${c}: constants carried with gradients`);
        } else {
          assert(
            r.cache.consts && (c === 0 || r.cache.consts === cache!.consts),
            `piece ${c}: constants not carried`,
          );
        }
        cache = r.cache;
        const ys = await r.y.toArray();
        for (let bi = 0; bi < b; bi++) {
          out.set(ys.slice(bi * (e - s) * d, (bi + 1) * (e - s) * d), (bi * l + s) * d);
        }
      }
      const states = [...await cache!.conv.toArray(), ...await cache!.ssm.toArray()];
      return { out, states, dispatches };
    });
  const recorded = await run(true);
  const fused = await run(false);
  assertClose(fused.out, recorded.out, 1e-6, "fused vs recorded Mamba output");
  assertClose(fused.states, recorded.states, 1e-6, "fused vs recorded carried states");
  // Per piece with carried constants: exp and neg, the z and xs slices, silu twice, mul, add and
  // mul (9) become the gate's one kernel; up to 32 rows, x_proj, its three slices and dt_proj (5)
  // also become three matmuls (piece 1: 2 rows; piece 2: 38, the unfolded path).
  for (let c = 1; c < cuts.length - 1; c++) {
    const saved = recorded.dispatches[c] - fused.dispatches[c];
    const want = b * (cuts[c + 1] - cuts[c]) <= 32 ? 10 : 8;
    assert(saved === want, `piece ${c}: the fused path saved ${saved} dispatches, want ${want}`);
  }
  block.dispose();
});

Deno.test("Mamba block: generation's one-token step (two dispatches) equals the float64 reference, states too", async () => {
  await gpuReady;
  // Awkward sizes: d 72 (two column tiles, the second partial; d_inner 144, dt_rank 5), d_state 8,
  // 3 rows; 6 positions by forward, then 3 by step, each h + Mamba(RMSNorm(u)).
  const [b, l0, steps, d] = [3, 6, 3, 72];
  const l = l0 + steps;
  const block = new Mamba(new Init(6), { dModel: d, dState: 8 });
  upload(block.D.buffer, Float32Array.from(randn(block.D.size)));
  upload(block.ALog.buffer, Float32Array.from(randn(block.ALog.size), (v) => 0.5 * v));
  const u = f32(randn(b * l * d)), h = f32(randn(b * l * d));
  const normW = f32(randn(d).map((v) => 1 + 0.3 * v));
  const xHat = new Float64Array(b * l * d);
  for (let row = 0; row < b * l; row++) {
    let ss = 0;
    for (let j = 0; j < d; j++) ss += u[row * d + j] ** 2;
    const rstd = 1 / Math.sqrt(ss / d + 1e-6);
    for (let j = 0; j < d; j++) xHat[row * d + j] = u[row * d + j] * rstd * normW[j];
  }
  const want = await mambaRef(block, xHat, b, l, d);
  const rows = (a: Float64Array, s: number, e: number) => {
    const out: number[] = [];
    for (let bi = 0; bi < b; bi++) out.push(...a.slice((bi * l + s) * d, (bi * l + e) * d));
    return out;
  };
  await tidyAsync(async () => {
    const norm = tensor(normW, [d]);
    const full = noGrad(() => block.forward(tensor(xHat, [b, l, d])));
    let cache = noGrad(() => block.forward(tensor(rows(xHat, 0, l0), [b, l0, d]))).cache;
    const got: number[] = [], wanted: number[] = [];
    for (let t = l0; t < l; t++) {
      const ut = tensor(rows(Float64Array.from(u), t, t + 1), [b, 1, d]);
      const ht = tensor(rows(Float64Array.from(h), t, t + 1), [b, 1, d]);
      assert(noGrad(() => block.canStep(ut, cache)), "canStep refused a one-token pass");
      assert(!block.canStep(ut, cache), "canStep took a pass that records gradients");
      const before = recorderStats.dispatches;
      const r = noGrad(() => block.step(ut, ht, norm, cache));
      const n = recorderStats.dispatches - before;
      // The first step also packs the weights (transposes and a concat), once.
      assert(t > l0 ? n === 2 : n >= 2, `step ${t - l0}: ${n} dispatches, want 2`);
      assert(r.cache.consts === cache.consts, "step: constants not carried");
      cache = r.cache;
      got.push(...await r.h.toArray());
      const hRows = rows(Float64Array.from(h), t, t + 1), yRows = rows(want, t, t + 1);
      wanted.push(...hRows.map((v, i) => v + yRows[i]));
    }
    assertClose(got, wanted, 1e-5, "Mamba step vs float64 reference");
    const states = [...await cache.conv.toArray(), ...await cache.ssm.toArray()];
    const fullStates = [...await full.cache.conv.toArray(), ...await full.cache.ssm.toArray()];
    assertClose(states, fullStates, 1e-5, "Mamba step's carried states vs one full pass");
    const two = tensor(rows(xHat, 0, 2), [b, 2, d]), one = tensor(rows(xHat, 0, 1), [b, 1, d]);
    assert(!noGrad(() => block.canStep(two, cache)), "canStep took 2 positions");
    assert(!noGrad(() => block.canStep(one)), "canStep took no cache");
  });
  block.dispose();
});
