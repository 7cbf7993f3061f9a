// sampleTokens against a float64 reference on fresh random inputs of awkward sizes: greedy ties,
// guidance, top-k and top-p kept sets, the inverse-CDF pick with the kernel's own uniform, the
// empirical distribution over many rows, and reproducibility by seed and stream. Then reranking:
// the candidates' scores and the choice of each caption's best draw.
import { compileErrors, gpu } from "../lib/gpu/mod.ts";
import sampleWgsl from "../kernels/sample.wgsl" with { type: "text" };
import { bestRows, type SampleOptions, sampleTokens, sampleUniform } from "../lib/tensor/sample.ts";
import { tensor, tidy, tidyAsync } from "../lib/tensor/tensor.ts";
import { validateModelConfig } from "../lib/model/config.ts";
import { generateScales } from "../lib/model/generate.ts";
import {
  AUTO_CANDIDATES,
  bestCandidates,
  candidateCount,
  DEFAULT_SAMPLING,
  repeatCaptions,
  RERANK_PMI,
  rerankPmi,
  rerankScales,
  rerankScores,
  sampleFeatures,
  samplingPicker,
} from "../lib/model/sample.ts";
import { VMambAR } from "../lib/model/vmambar.ts";
import { randomBatch, tinyModelConfig, tinyQuantizer } from "./model_fixtures.ts";
import { assert, assertThrows, f32, freshSeed, gpuReady, randn, rng } from "./helpers.ts";

/**
 * A reference pick is judged "ambiguous" when f32 rounding on the GPU could change it: u within
 * MARGIN of a CDF boundary, a top-p cumulative within MARGIN of p, or (guided logits, which the
 * GPU rounds to f32) two logits within MARGIN·scale at a threshold or at the maximum.
 */
const MARGIN = 1e-5;

// ---------------------------------------------------------------------------------------------
// float64 reference

interface RefPick {
  id: number;
  ambiguous: boolean;
  /** The kept set, widened by MARGIN where rounding could widen it: a draw must lie inside. */
  loose: Set<number>;
  /** Each token's probability after temperature, top-k and top-p (0 outside the kept set). */
  probs: Float64Array;
}

function guidedRef(
  cond: Float64Array,
  uncond: Float64Array | null,
  t: number,
  row: number,
  v: number,
): Float64Array {
  const g = cond.slice(row * v, row * v + v);
  if (t !== 0 && uncond) {
    for (let c = 0; c < v; c++) g[c] = (1 + t) * g[c] - t * uncond[row * v + c];
  }
  return g;
}

/** Tokens with g ≥ the largest threshold keeping ≥ `need` of `measure` (ties all kept). */
function thresholdSet(
  g: Float64Array,
  candidates: number[],
  measure: (c: number) => number,
  need: number,
): number {
  const order = [...candidates].sort((a, b) => g[b] - g[a]);
  let acc = 0;
  for (let i = 0; i < order.length; i++) {
    acc += measure(order[i]);
    const groupEnds = i === order.length - 1 || g[order[i + 1]] !== g[order[i]];
    if (groupEnds && acc >= need) return g[order[i]];
  }
  return g[order.at(-1)!];
}

/** The options that shape the distribution (seed and stream only choose u). */
type Knobs = Omit<SampleOptions, "seed" | "stream">;

function sampleRef(g: Float64Array, guided: boolean, opts: Knobs, u: number): RefPick {
  const { temperature = 1, topK = 0, topP = 1 } = opts;
  const v = g.length;
  const all = [...g.keys()];
  const gMax = Math.max(...g);
  // The GPU's guided logits carry f32 rounding of (1 + t)·cond and t·uncond.
  const tol = guided ? MARGIN * (1 + Math.max(...g.map(Math.abs))) : 0;
  const near = (a: number, b: number) => guided && Math.abs(a - b) <= tol;
  const probs = new Float64Array(v);
  if (temperature === 0) {
    const id = all.find((c) => g[c] === gMax)!;
    probs[id] = 1;
    const ambiguous = all.some((c) => c !== id && near(g[c], gMax));
    return { id, ambiguous, loose: new Set(all.filter((c) => g[c] >= gMax - tol)), probs };
  }
  const w = g.map((x) => Math.exp((x - gMax) / temperature));
  let ambiguous = false;
  let kept = all, loose = all;
  if (topK > 0 && topK < v) {
    const tau = thresholdSet(g, all, () => 1, topK);
    kept = all.filter((c) => g[c] >= tau);
    loose = all.filter((c) => g[c] >= tau - tol);
    ambiguous ||= all.some((c) => g[c] !== tau && near(g[c], tau));
  }
  if (topP < 1) {
    const mass = (set: number[]) => set.reduce((s, c) => s + w[c], 0);
    const pTau = thresholdSet(g, kept, (c) => w[c], topP * mass(kept));
    const wideTau = thresholdSet(g, loose, (c) => w[c], (topP + MARGIN) * mass(loose));
    // Ambiguous when a cumulative mass over the sorted kept set lies within MARGIN of p.
    const zk = mass(kept);
    let acc = 0;
    for (const c of [...kept].sort((a, b) => g[b] - g[a])) {
      acc += w[c];
      if (Math.abs(acc / zk - topP) < MARGIN) ambiguous = true;
      if (near(g[c], pTau) && g[c] !== pTau) ambiguous = true;
    }
    kept = kept.filter((c) => g[c] >= pTau);
    loose = loose.filter((c) => g[c] >= wideTau - tol);
  }
  const z = kept.reduce((s, c) => s + w[c], 0);
  let cum = 0, id = -1;
  for (const c of kept) {
    cum += w[c];
    probs[c] = w[c] / z;
    if (id < 0 && cum / z > u) id = c;
    if (Math.abs(cum / z - u) < MARGIN) ambiguous = true;
  }
  return { id, ambiguous, loose: new Set(loose), probs };
}

// ---------------------------------------------------------------------------------------------
// Running

async function gpuSample(
  cond: Float64Array,
  uncond: Float64Array | null,
  shape: [number, number],
  opts: SampleOptions,
): Promise<number[]> {
  return await tidyAsync(async () => {
    const u = uncond ? tensor(uncond, shape) : null;
    const ids = sampleTokens(tensor(cond, shape), u, opts);
    assert(ids.dtype === "i32" && ids.shape.join() === `${shape[0]}`, `ids ${ids}`);
    const got = await ids.toArray();
    const bad = got.findIndex((id) => !(id >= 0 && id < shape[1]));
    assert(bad < 0, `row ${bad} drew id ${got[bad]}, outside [0, ${shape[1]})`);
    return got;
  });
}

/** Random f32 logits; `scale` sets how peaked each row's softmax is. */
const logits = (n: number, v: number, scale = 2) => f32(randn(n * v, freshSeed(), scale));

/** Runs `opts` on fresh logits and compares every row with the reference; returns rows skipped. */
async function checkAgainstRef(n: number, v: number, opts: SampleOptions): Promise<number> {
  const cond = logits(n, v);
  const uncond = opts.guidance ? logits(n, v) : null;
  const got = await gpuSample(cond, uncond, [n, v], opts);
  let skipped = 0;
  for (let row = 0; row < n; row++) {
    const g = guidedRef(cond, uncond, opts.guidance ?? 0, row, v);
    const ref = sampleRef(g, uncond !== null, opts, sampleUniform(opts.seed, opts.stream, row));
    const where = `${JSON.stringify(opts)} [${n}, ${v}] row ${row}`;
    assert(ref.loose.has(got[row]), `${where}: ${got[row]} is outside the kept set`);
    if (ref.ambiguous) skipped++;
    else assert(got[row] === ref.id, `${where}: drew ${got[row]}, reference ${ref.id}`);
  }
  return skipped;
}

const SHAPES: [number, number][] = [[7, 1], [7, 3], [7, 513], [7, 4097], [40, 37]];
const newSeed = () => ({ seed: freshSeed(), stream: freshSeed() % 64 });

// ---------------------------------------------------------------------------------------------
// Tests

Deno.test("sample kernel compiles on this adapter", async () => {
  await gpuReady;
  const errors = await compileErrors(sampleWgsl);
  assert(errors.length === 0, errors.join("\n"));
});

Deno.test("greedy picks the argmax, ties to the lowest index, whatever top-k and top-p say", async () => {
  await gpuReady;
  for (const [n, v] of [...SHAPES, [5, 256], [3, 257]] as [number, number][]) {
    // Small integers, so most rows tie at their maximum; row 0 is constant, row 1 peaks last.
    const r = rng(freshSeed());
    const cond = Float64Array.from({ length: n * v }, () => Math.floor(r() * 4) - 2);
    cond.fill(-1.5, 0, v);
    cond.fill(-3, v, 2 * v);
    cond[2 * v - 1] = 7;
    for (const extra of [{}, { topK: 2, topP: 0.3 }]) {
      const opts = { temperature: 0, ...extra, ...newSeed() };
      const got = await gpuSample(cond, null, [n, v], opts);
      for (let row = 0; row < n; row++) {
        const { id } = sampleRef(guidedRef(cond, null, 0, row, v), false, opts, 0);
        assert(got[row] === id, `[${n}, ${v}] row ${row}: greedy ${got[row]}, argmax ${id}`);
      }
    }
  }
});

Deno.test("guidance: t = 0 is cond alone; t ≠ 0 moves the argmax to (1 + t)·cond − t·uncond's", async () => {
  await gpuReady;
  const [n, v] = [64, 50];
  const cond = logits(n, v), uncond = logits(n, v);
  for (const temperature of [0, 1]) {
    const opts = { temperature, ...newSeed() };
    const alone = await gpuSample(cond, null, [n, v], opts);
    const unguided = await gpuSample(cond, uncond, [n, v], { ...opts, guidance: 0 });
    assert(alone.join() === unguided.join(), `T ${temperature}: t = 0 with uncond differs`);
  }
  for (const guidance of [2, -0.5]) {
    const opts = { guidance, temperature: 0, ...newSeed() };
    const got = await gpuSample(cond, uncond, [n, v], opts);
    let moved = 0, checked = 0;
    for (let row = 0; row < n; row++) {
      const ref = sampleRef(guidedRef(cond, uncond, guidance, row, v), true, opts, 0);
      if (ref.ambiguous) continue;
      checked++;
      const plain = sampleRef(guidedRef(cond, null, 0, row, v), false, opts, 0);
      if (ref.id !== plain.id) moved++;
      assert(got[row] === ref.id, `t ${guidance} row ${row}: ${got[row]}, predicted ${ref.id}`);
    }
    assert(checked > n / 2 && moved > 0, `t ${guidance}: ${checked} rows checked, ${moved} moved`);
  }
});

Deno.test("top-k = 1 is the argmax at any temperature", async () => {
  await gpuReady;
  for (const [n, v] of SHAPES) {
    const cond = logits(n, v);
    const opts = { topK: 1, temperature: 1.7, ...newSeed() };
    const got = await gpuSample(cond, null, [n, v], opts);
    for (let row = 0; row < n; row++) {
      const { id } = sampleRef(guidedRef(cond, null, 0, row, v), false, { temperature: 0 }, 0);
      assert(got[row] === id, `[${n}, ${v}] row ${row}: top-1 drew ${got[row]}, argmax ${id}`);
    }
  }
});

Deno.test("each draw is the reference's inverse-CDF pick with the same uniform", async () => {
  await gpuReady;
  const configs: Knobs[] = [
    {},
    { temperature: 0.6, topK: 5 },
    { temperature: 1.4, topP: 0.7 },
    { guidance: 1.5, temperature: 0.9, topK: 20, topP: 0.9 },
    { guidance: 3, topP: 0.5 },
    { topK: 300, topP: 0.999 },
  ];
  let rows = 0, skipped = 0;
  for (const config of configs) {
    for (const [n, v] of SHAPES) {
      skipped += await checkAgainstRef(n, v, { ...config, ...newSeed() });
      rows += n;
    }
  }
  assert(skipped < rows / 5, `${skipped} of ${rows} rows too close to a boundary to judge`);
});

Deno.test("top-k and top-p never draw outside the kept set", async () => {
  await gpuReady;
  // Flat rows (scale 0.5) spread the draws over the whole kept set, and beyond it if it leaked.
  const [n, v] = [256, 67];
  for (
    const config of [
      { topK: 3 },
      { topK: 30, temperature: 2 },
      { topP: 0.2 },
      { topP: 0.6, temperature: 3 },
      { topK: 10, topP: 0.5, guidance: 0.5 },
    ]
  ) {
    const opts = { ...config, ...newSeed() };
    const cond = logits(n, v, 0.5);
    const uncond = opts.guidance ? logits(n, v, 0.5) : null;
    const got = await gpuSample(cond, uncond, [n, v], opts);
    for (let row = 0; row < n; row++) {
      const g = guidedRef(cond, uncond, opts.guidance ?? 0, row, v);
      const { loose } = sampleRef(g, uncond !== null, opts, 0);
      assert(loose.has(got[row]), `${JSON.stringify(config)} row ${row}: ${got[row]} not kept`);
    }
  }
});

/**
 * Bernstein's inequality with a union bound over the v bins: a bin's count of M iid draws with
 * probability q misses M·q by more than the returned s with probability below δ / v.
 */
function countTolerance(m: number, q: number, v: number, delta: number): number {
  const l = Math.log((2 * v) / delta);
  return l / 3 + Math.sqrt((l * l) / 9 + 2 * m * q * (1 - q) * l);
}

Deno.test("many rows of the same logits draw each token at its softmax frequency", async () => {
  await gpuReady;
  // The searches of top-k and top-p make rows dearer on a CPU adapter: fewer rows there.
  const configs: [number, Knobs][] = [[20000, {}], [3000, {
    temperature: 0.8,
    topK: 5,
    topP: 0.9,
  }]];
  const v = 8;
  for (const [m, config] of configs) {
    let row: Float64Array, ref: RefPick;
    do { // logits whose kept set rounding cannot change
      row = f32(randn(v, freshSeed(), 1.5));
      ref = sampleRef(row, false, config, 0.5);
    } while (ref.ambiguous && config.topP);
    const cond = new Float64Array(m * v);
    for (let i = 0; i < m; i++) cond.set(row, i * v);
    const got = await gpuSample(cond, null, [m, v], { ...config, ...newSeed() });
    const counts = new Array(v).fill(0);
    for (const id of got) counts[id]++;
    for (let c = 0; c < v; c++) {
      const want = m * ref.probs[c];
      // δ = 1e-9 over the bins: draws of correct probabilities fail this once in 10⁹ runs.
      const tol = countTolerance(m, ref.probs[c], v, 1e-9);
      assert(
        Math.abs(counts[c] - want) <= tol,
        `${JSON.stringify(config)} token ${c}: ${counts[c]} draws, expected ${want.toFixed(1)} ± ` +
          `${tol.toFixed(1)} (counts ${counts})`,
      );
    }
  }
});

Deno.test("same seed and stream give identical ids; another seed or stream others", async () => {
  await gpuReady;
  const [n, v] = [512, 64];
  const cond = logits(n, v, 1);
  const base = { temperature: 1, topK: 48, seed: freshSeed(), stream: 3 };
  const first = await gpuSample(cond, null, [n, v], base);
  const again = await gpuSample(cond, null, [n, v], base);
  assert(first.join() === again.join(), "the same seed drew different ids");
  // Two independent draws agree on a row with probability Σq² < 0.1 here, so fewer than half the
  // rows differing cannot happen by chance.
  for (const other of [{ seed: (base.seed + 1) >>> 0 }, { stream: 4 }]) {
    const ids = await gpuSample(cond, null, [n, v], { ...base, ...other });
    const differ = ids.filter((id, i) => id !== first[i]).length;
    assert(differ > n / 2, `${JSON.stringify(other)}: only ${differ} of ${n} rows differ`);
  }
});

Deno.test("sampleUniform lies in [0, 1) and depends on seed, stream and row", () => {
  const seen = new Set<number>();
  for (let i = 0; i < 1000; i++) {
    const u = sampleUniform(i % 10, (i / 10) % 10 | 0, (i / 100) | 0);
    assert(u >= 0 && u < 1 && Number.isInteger(u * 2 ** 24), `u = ${u}`);
    seen.add(u);
  }
  assert(seen.size > 990, `${seen.size} distinct uniforms of 1000`);
});

Deno.test("sampleTokens refuses bad shapes and options in one line", async () => {
  await gpuReady;
  await tidyAsync(async () => {
    const c = tensor(new Float32Array(6), [2, 3]);
    const s = { seed: 1, stream: 0 };
    const cases: [() => unknown, RegExp][] = [
      [() => sampleTokens(tensor(new Float32Array(6), [6]), null, s), /cond must be f32 \[N, V\]/],
      [() => sampleTokens(tensor([], [2, 0]), null, s), /V ≥ 1/],
      [() => sampleTokens(tensor([1, 2], [1, 2], "i32"), null, s), /cond must be f32/],
      [() => sampleTokens(c, tensor(new Float32Array(4), [2, 2]), s), /uncond .* does not match/],
      [() => sampleTokens(c, null, { ...s, guidance: 2 }), /needs uncond/],
      [() => sampleTokens(c, c, { ...s, guidance: NaN }), /guidance must be finite/],
      [() => sampleTokens(c, null, { ...s, temperature: -1 }), /temperature/],
      [() => sampleTokens(c, null, { ...s, topK: 1.5 }), /topK/],
      [() => sampleTokens(c, null, { ...s, topK: -1 }), /topK/],
      [() => sampleTokens(c, null, { ...s, topP: 0 }), /topP/],
      [() => sampleTokens(c, null, { ...s, topP: 1.1 }), /topP/],
      [() => sampleTokens(c, null, { seed: -1, stream: 0 }), /seed/],
      [() => sampleTokens(c, null, { seed: 0, stream: 2 ** 32 }), /stream/],
    ];
    for (const [fn, pattern] of cases) assertThrows(fn, pattern, String(pattern));
    // An empty batch is fine.
    assert((await sampleTokens(tensor([], [0, 5]), null, s).toArray()).length === 0, "N = 0");
  });
});

// ---------------------------------------------------------------------------------------------
// Reranking candidates (lib/model/sample.ts)

Deno.test("rerankScores: log p(x|c) + λ·PMI; bestCandidates: each caption's first best row", () => {
  const cond = [5, 3, 4, 9], uncond = [6, 7, 4, 8];
  const s = rerankScores(cond, uncond, 2);
  assert(s.join() === [-5 + 2, -3 + 8, -4 + 0, -9 - 2].join(), `scores ${[...s]}`);
  assert(rerankScores(cond, null, 2).join() === "-5,-3,-4,-9", "unguided: −nll alone");
  assert(rerankScores(cond, uncond, 0).join() === "-5,-3,-4,-9", "λ 0: −nll alone");
  assert(bestCandidates(s, 2).join() === "1,2", `pairs ${bestCandidates(s, 2)}`);
  assert(bestCandidates(s, 4).join() === "1", "one caption of 4");
  assert(bestCandidates(Float64Array.of(1, 1, 0), 3).join() === "0", "ties: the first");
  assert(bestCandidates(s, 1).join() === "0,1,2,3", "n 1: every row");
  assert(rerankPmi(undefined) === RERANK_PMI && RERANK_PMI === -0.5, "λ −½ by default");
  assert(rerankPmi("0.5") === 0.5, "λ from the environment");
  for (const bad of ["", "x", "NaN", "Infinity"]) {
    assertThrows(() => rerankPmi(bad), /VMAMBAR_RERANK_PMI must be a number/, `'${bad}'`);
  }
  assert(
    rerankScales(undefined) === true && rerankScales("3") === 3,
    "scales from the environment",
  );
  for (const bad of ["", "0", "1.5", "-2", "x"]) {
    assertThrows(() => rerankScales(bad), /VMAMBAR_RERANK_SCALES must be/, `'${bad}'`);
  }
});

Deno.test("bestRows: each group's best-scored row on the GPU, as rerankScores and bestCandidates", async () => {
  await gpuReady;
  const r = rng(freshSeed());
  const shapes: [number, number, number[]][] = [[3, 5, [2, 3]], [1, 1, [7]], [4, 2, []], [
    2,
    7,
    [1, 259],
  ]];
  for (const [G, n, inner] of shapes) {
    const total = G * n, width = inner.reduce((a, b) => a * b, 1);
    const rows = f32(randn(total * width));
    // Scores on a coarse grid, so that some tie and the first of them must win.
    const cond = f32(Array.from({ length: total }, () => Math.floor(r() * 4)));
    const uncond = f32(Array.from({ length: total }, () => Math.floor(r() * 4)));
    const settings: [number, boolean][] = [[0, true], [1, true], [-0.5, true], [-1, true], [
      2,
      false,
    ]];
    for (const [lambda, guided] of settings) {
      const want = bestCandidates(rerankScores(cond, guided ? uncond : null, lambda), n)
        .flatMap((row) => [...rows.subarray(row * width, (row + 1) * width)]);
      const got = await tidyAsync(async () =>
        await bestRows(
          tensor(rows, [total, ...inner]),
          n,
          tensor(cond, [total]),
          guided ? tensor(uncond, [total]) : null,
          lambda,
        ).toArray()
      );
      assert(
        got.length === want.length && got.every((x, i) => x === want[i]),
        `G ${G}, n ${n}, λ ${lambda}, guided ${guided}`,
      );
    }
  }
  tidy(() => {
    const rows = tensor(f32(randn(12)), [6, 2]), s = tensor(f32(randn(6)), [6]);
    assert(bestRows(rows, 3, s, null, 1).shape.join() === "2,2", "shape [G, ...]");
    assertThrows(() => bestRows(rows, 4, s, null, 1), /not groups of 4/, "groups");
    assertThrows(() => bestRows(rows, 3, tensor(f32(randn(5)), [5]), null, 1), /cond/, "cond");
    assertThrows(() => bestRows(rows, 3, s, s, NaN), /lambda/, "lambda");
    assertThrows(() => bestRows(rows, 0, s, null, 1), /n ≥ 1/, "n 0");
  });
});

Deno.test("candidateCount: the options' own count, else 4 on a GPU and 1 on a CPU adapter", async () => {
  await gpuReady;
  const auto = gpu().isCpu ? AUTO_CANDIDATES.cpu : AUTO_CANDIDATES.gpu;
  assert(AUTO_CANDIDATES.gpu === 4 && AUTO_CANDIDATES.cpu === 1, "the documented counts");
  assert(candidateCount(DEFAULT_SAMPLING) === auto, "auto by default");
  assert(candidateCount({ ...DEFAULT_SAMPLING, candidates: 3 }) === 3, "given");
  assert(candidateCount({ ...DEFAULT_SAMPLING, candidates: 0 }) === 1, "at least one");
  assert(candidateCount({ ...DEFAULT_SAMPLING, sequential: 2 }) === 1, "auto with --sequential");
});

Deno.test("repeatCaptions repeats each caption's ids n times in a row", () => {
  const ids = Int32Array.of(1, 2, 3, 4, 5, 6);
  assert(repeatCaptions(ids, 3, 2).join() === "1,2,3,1,2,3,4,5,6,4,5,6", "T 3, n 2");
  assert(repeatCaptions(ids, 2, 1).join() === ids.join(), "n 1: unchanged");
});

Deno.test("sampleFeatures keeps each caption's best-scored draw; one candidate is plain sampling", async () => {
  await gpuReady;
  const c = validateModelConfig(tinyModelConfig(), "test");
  const model = new VMambAR(c, 3);
  const q = tinyQuantizer();
  const { textIds } = randomBatch(c, 2, 4);
  const T = c.text_length, n = 3;
  const o = { ...DEFAULT_SAMPLING, cfg: 1, seed: 9 };
  await tidyAsync(async () => {
    const plain = await generateScales(model, q, textIds, o.cfg, samplingPicker(o)).fHat.toArray();
    const one = await (await sampleFeatures(model, q, textIds, { ...o, candidates: 1 }))
      .toArray();
    assert(one.join() === plain.join(), "candidates 1: the plain draw");
    const all = generateScales(
      model,
      q,
      repeatCaptions(textIds, T, n),
      o.cfg,
      samplingPicker(o),
      true,
    );
    const cond = await all.nll!.cond.toArray(), uncond = await all.nll!.uncond!.toArray();
    const rows = bestCandidates(rerankScores(cond, uncond), n);
    const got = await (await sampleFeatures(model, q, textIds, { ...o, candidates: n })).toArray();
    const fHat = await all.fHat.toArray(), per = fHat.length / (2 * n);
    const want = rows.flatMap((r) => fHat.slice(r * per, (r + 1) * per));
    assert(got.length === want.length && got.every((x, i) => x === want[i]), `rows ${rows}`);
    assert(new Set(cond).size === 2 * n, "the candidates differ");
  });
  q.dispose();
  model.dispose();
});
