// Where a tokenizer training step's dispatches go, and what recording them costs on the host.
// Run: deno run -A tools/profile_tokenizer_step.ts [--preset tiny64] [--batch 4] [--steps 3]
//        [--conv implicit|im2col] [--compare] [--gpu] [--gpu-tiles]
// Prints dispatches per step by pipeline (its generator key or its WGSL file's first words, then
// the entry point), and the host time of trainStep(): recording and CPU work, timed with the GPU
// idle (a sync before each step), so a software adapter's threads don't share the CPU with it.
// That host figure is what bounds a step on a fast GPU; the wall figure includes the GPU.
// --gpu then times `steps` more steps with a timestamp around every dispatch (each in a pass of
// its own, so the sum runs a little above a normal step) and prints GPU ms per step by pipeline.
// --gpu-tiles: on a CPU adapter, the GEMM tiles a GPU would get instead of cpuTile's.
// --conv picks conv2d's path (default implicit GEMMs). --compare profiles both paths in one run,
// then times `steps` back-to-back steps of each (one sync at the end, so the GPU never waits on
// the host between them), twice in alternation, and prints both and im2col's time over implicit's.
import { parseArgs } from "node:util";
import {
  gpuProfile,
  initGpu,
  recorderStats,
  startGpuProfile,
  stopGpuProfile,
  sync,
} from "../lib/gpu/mod.ts";
import { type Conv2dMethod, setConv2dMethod } from "../lib/tensor/conv2d.ts";
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
    compare: { type: "boolean", default: false },
    gpu: { type: "boolean", default: false },
    "gpu-tiles": { type: "boolean", default: false },
  },
});
if (values.conv !== "implicit" && values.conv !== "im2col") {
  console.error(`--conv ${values.conv}: expected implicit or im2col`);
  Deno.exit(2);
}
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
async function profile(x: Tensor, method: Conv2dMethod): Promise<number> {
  console.log(`\n== conv2d ${method}`);
  setConv2dMethod(method);
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
async function stepTime(method: Conv2dMethod): Promise<number> {
  setConv2dMethod(method);
  await trainer.trainStep(x);
  await sync();
  const t0 = performance.now();
  for (let s = 0; s < steps; s++) await trainer.trainStep(x);
  await sync();
  return (performance.now() - t0) / steps;
}

if (values.compare) {
  const gpuMs = { implicit: await profile(x, "implicit"), im2col: await profile(x, "im2col") };
  const best = { implicit: Infinity, im2col: Infinity };
  for (let round = 0; round < 2; round++) {
    for (const m of ["implicit", "im2col"] as const) best[m] = Math.min(best[m], await stepTime(m));
  }
  const line = (what: string, a: number, b: number) =>
    console.log(
      `${what}: implicit ${a.toFixed(2)} ms, im2col ${b.toFixed(2)} ms, im2col / implicit ${
        (b / a).toFixed(2)
      }×`,
    );
  console.log(`\n${values.preset} batch ${batch}, ${steps} steps each, best of 2 rounds`);
  line("step (wall, back to back)", best.implicit, best.im2col);
  if (values.gpu) line("GPU time (a pass per dispatch)", gpuMs.implicit, gpuMs.im2col);
} else await profile(x, values.conv);
trainer.dispose();
x.dispose();
