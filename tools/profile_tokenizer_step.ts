// Where a tokenizer training step's dispatches go, and what recording them costs on the host.
// Run: deno run -A tools/profile_tokenizer_step.ts [--preset tiny64] [--batch 4] [--steps 3]
//        [--conv implicit|implicit-v1|im2col] [--gn-backward 1|2] [--compare [--variants …]]
//        [--gpu] [--gpu-tiles]
// Prints dispatches per step by pipeline (its generator key or its WGSL file's first words, then
// the entry point), and the host time of trainStep(): recording and CPU work, timed with the GPU
// idle (a sync before each step), so a software adapter's threads don't share the CPU with it.
// That host figure is what bounds a step on a fast GPU; the wall figure includes the GPU.
// --gpu then times `steps` more steps with a timestamp around every dispatch (each in a pass of
// its own, so the sum runs a little above a normal step) and prints GPU ms per step by pipeline.
// --gpu-tiles: on a CPU adapter, the GEMM tiles a GPU would get instead of cpuTile's.
// --conv picks conv2d's path (default implicit GEMMs, their second generation; implicit-v1 the
// first), --gn-backward groupNorm's backward pass (2, one pass of plane sums, by default).
// --compare profiles several variants in one run (--variants, comma-separated, default
// "new,v1,im2col": new = implicit + groupNorm's one-pass statistics and backward, v1 =
// implicit-v1 + groupNorm's first kernels (the step before the second generation), im2col =
// im2col + groupNorm's first kernels; or any conv method, with ":1"/":2" for groupNorm's kernels,
// then "+forward1", "+dx1", "+dw1", "+bias1", "+gnstats1", "+gnbackward1" to keep one kernel on
// its first generation, e.g. new+dw1 ("+forward2", "+dx2", "+dw2" or "+gen2" keep the GEMMs on
// their second instead of the third), or "+nosplit" for forward and dx GEMMs without their K
// split on small grids (setConvSplitK; on by default), then times `steps` back-to-back steps of each (one sync
// at the end, so the GPU never waits on the host between them), twice in alternation, and
// prints each one's time and its ratio to the first.
import { parseArgs } from "node:util";
import {
  gpuProfile,
  initGpu,
  recorderStats,
  startGpuProfile,
  stopGpuProfile,
  sync,
} from "../lib/gpu/mod.ts";
import {
  CONV2D_METHODS,
  type Conv2dMethod,
  type ImplicitGenerations,
  setConv2dMethod,
  setImplicitGenerations,
} from "../lib/tensor/conv2d.ts";
import { setConvSplitK } from "../lib/tensor/conv2d_implicit.ts";
import {
  type GroupNormBackward,
  type GroupNormStats,
  setGroupNormBackward,
  setGroupNormStats,
} from "../lib/tensor/group_norm.ts";
import { setCpuTiles } from "../lib/tensor/matmul.ts";
import { type Tensor, tensor } from "../lib/tensor/tensor.ts";
import { TOKENIZER_PRESETS } from "../lib/tokenizer/config.ts";
import { DEFAULT_TOKENIZER_SETTINGS, TokenizerTrainer } from "../lib/train/tokenizer_trainer.ts";

const { values } = parseArgs({
  options: {
    preset: { type: "string", default: "tiny64" },
    batch: { type: "string", default: "4" },
    steps: { type: "string", default: "3" },
    conv: { type: "string", default: "implicit" },
    "gn-backward": { type: "string", default: "2" },
    compare: { type: "boolean", default: false },
    variants: { type: "string", default: "new,v1,im2col" },
    gpu: { type: "boolean", default: false },
    "gpu-tiles": { type: "boolean", default: false },
  },
});

/** A configuration of the step's kernels. */
interface Variant {
  name: string;
  conv: Conv2dMethod;
  /** groupNorm's statistics and backward pass (setGroupNormStats, setGroupNormBackward). */
  gn: { stats: GroupNormStats; backward: GroupNormBackward };
  /** Method implicit's kernel generations (setImplicitGenerations). */
  gens: ImplicitGenerations;
  /** Forward and dx GEMMs split K on small grids (setConvSplitK). */
  splitK: boolean;
}

const GEN_KEYS = ["forward", "dx", "dw", "bias"] as const;

/**
 * "new", "v1", or METHOD[:1|:2] (groupNorm's kernels; default 2 for implicit, else 1), each
 * optionally followed by +forward1, +dx1, +dw1, +bias1 (one of implicit's kernels on its first
 * generation), +gnstats1 or +gnbackward1 (one of groupNorm's), e.g. "new+dw1".
 */
function variant(spec: string): Variant {
  const [head, ...mods] = spec.split("+");
  const fail = () => {
    console.error(
      `variant '${spec}': expected new, v1 or one of ${CONV2D_METHODS.join(", ")}, optionally ` +
        `with :1 or :2 (groupNorm's kernels), then +forwardG, +dxG, +dwG (G 1, 2 or 3), +bias1, ` +
        `+gen2, +gnstats1, +gnbackward1, +nosplit or +split`,
    );
    Deno.exit(2);
  };
  const gens: ImplicitGenerations = { forward: 3, dx: 3, dw: 3, bias: 2 };
  const [conv0, g] = head === "new"
    ? ["implicit", "2"]
    : head === "v1"
    ? ["implicit-v1", "1"]
    : head.split(":");
  if (!(CONV2D_METHODS as readonly string[]).includes(conv0) || (g && g !== "1" && g !== "2")) {
    fail();
  }
  const conv = conv0 as Conv2dMethod;
  const gn0 = (g ? Number(g) : conv === "implicit" ? 2 : 1) as 1 | 2;
  const gn = { stats: gn0, backward: gn0 };
  let splitK = true;
  for (const m of mods) {
    const gm = /^(forward|dx|dw|bias)([123])$/.exec(m);
    if (gm && !(gm[1] === "bias" && gm[2] === "3")) {
      (gens as unknown as Record<string, number>)[gm[1]] = Number(gm[2]);
    } else if (m === "gen2") Object.assign(gens, { forward: 2, dx: 2, dw: 2 });
    else if (m === "gnstats1") gn.stats = 1;
    else if (m === "gnbackward1") gn.backward = 1;
    else if (m === "split") splitK = true;
    else if (m === "nosplit") splitK = false;
    else fail();
  }
  return { name: spec, conv, gn, gens, splitK };
}

const single = variant(`${values.conv}:2${values["gn-backward"] === "1" ? "+gnbackward1" : ""}`);
await initGpu();
if (values["gpu-tiles"]) setCpuTiles(false);
const cfg = TOKENIZER_PRESETS[values.preset!];
const batch = Number(values.batch), steps = Number(values.steps);
const trainer = new TokenizerTrainer(cfg, { ...DEFAULT_TOKENIZER_SETTINGS, batchSize: batch });
const n = batch * 3 * cfg.image * cfg.image;
const x = tensor(Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37)), [
  batch,
  3,
  cfg.image,
  cfg.image,
]);

/** Dispatch counts, host and wall time, and with --gpu GPU time by pipeline; GPU ms or NaN. */
function use(v: Variant) {
  setConv2dMethod(v.conv);
  setImplicitGenerations(v.gens);
  setGroupNormStats(v.gn.stats);
  setGroupNormBackward(v.gn.backward);
  setConvSplitK(v.splitK);
}

async function profile(x: Tensor, v: Variant): Promise<number> {
  const gens = v.conv === "implicit"
    ? ` (${GEN_KEYS.map((k) => `${k} ${v.gens[k]}`).join(", ")})`
    : "";
  console.log(
    `\n== ${v.name}: conv2d ${v.conv}${gens}, groupNorm statistics ${v.gn.stats}, ` +
      `backward ${v.gn.backward}`,
  );
  use(v);
  await trainer.trainStep(x); // compiles every pipeline
  await sync();
  recorderStats.byLabel = new Map();
  const before = { ...recorderStats };
  let host = 0;
  const t0 = performance.now();
  for (let s = 0; s < steps; s++) {
    await sync();
    const h = performance.now();
    await trainer.trainStep(x);
    host += performance.now() - h;
  }
  await sync();
  const wall = performance.now() - t0;
  const per = (k: "dispatches" | "submits" | "readbacks" | "bindGroupHits") =>
    (recorderStats[k] - before[k]) / steps;
  const rows = [...recorderStats.byLabel.entries()].sort((a, b) => b[1] - a[1]);
  for (const [label, count] of rows) {
    console.log(`${(count / steps).toFixed(0).padStart(6)}  ${label}`);
  }
  console.log(
    `${values.preset} batch ${batch}: ${per("dispatches")} dispatches, ${
      per("submits")
    } submits, ` +
      `${per("readbacks")} readbacks per step, ${per("bindGroupHits")} bind groups cached; host ${
        (host / steps).toFixed(1)
      } ms/step ` +
      `(${((host / steps) * 1000 / per("dispatches")).toFixed(1)} µs/dispatch), ` +
      `wall with GPU ${(wall / steps).toFixed(1)} ms/step`,
  );
  if (!values.gpu) return NaN;
  if (!startGpuProfile()) {
    console.log("--gpu: this adapter has no timestamp-query feature");
    return NaN;
  }
  for (let s = 0; s < steps; s++) await trainer.trainStep(x);
  stopGpuProfile();
  const times = [...(await gpuProfile()).entries()].sort((a, b) => b[1].ms - a[1].ms);
  const total = times.reduce((a, [, t]) => a + t.ms, 0);
  console.log("\nGPU time per step by pipeline (ms, share, dispatches):");
  for (const [label, t] of times) {
    console.log(
      `${(t.ms / steps).toFixed(3).padStart(10)}  ${(100 * t.ms / total).toFixed(1).padStart(5)}%` +
        `  ${(t.count / steps).toFixed(0).padStart(5)}  ${label}`,
    );
  }
  console.log(`${(total / steps).toFixed(3).padStart(10)}  total GPU ms per step`);
  return total / steps;
}

/** ms per step over `steps` steps recorded back to back, with one sync at the end. */
async function stepTime(v: Variant): Promise<number> {
  use(v);
  await trainer.trainStep(x);
  await sync();
  const t0 = performance.now();
  for (let s = 0; s < steps; s++) await trainer.trainStep(x);
  await sync();
  return (performance.now() - t0) / steps;
}

if (values.compare) {
  const vs = values.variants!.split(",").map(variant);
  // Two steps of each first: every pipeline compiled and the host code JIT-warm, so the first
  // variant's host time isn't the warm-up's.
  for (const v of vs) {
    use(v);
    for (let s = 0; s < 2; s++) await trainer.trainStep(x);
  }
  await sync();
  const gpuMs: number[] = [];
  for (const v of vs) gpuMs.push(await profile(x, v));
  const best = vs.map(() => Infinity);
  for (let round = 0; round < 2; round++) {
    for (let i = 0; i < vs.length; i++) best[i] = Math.min(best[i], await stepTime(vs[i]));
  }
  const line = (what: string, ms: number[]) =>
    console.log(
      `${what}: ` +
        vs.map((v, i) => `${v.name} ${ms[i].toFixed(2)} ms (${(ms[i] / ms[0]).toFixed(2)}×)`)
          .join(", "),
    );
  console.log(
    `\n${values.preset} batch ${batch}, ${steps} steps each, best of 2 rounds; ratios to ${
      vs[0].name
    }`,
  );
  line("step (wall, back to back)", best);
  if (values.gpu) line("GPU time (a pass per dispatch)", gpuMs);
} else await profile(x, single);
trainer.dispose();
x.dispose();
