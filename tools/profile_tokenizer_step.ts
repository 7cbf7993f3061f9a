// Where a tokenizer training step's dispatches go, and what recording them costs on the host.
// Run: deno run -A tools/profile_tokenizer_step.ts [--preset tiny64] [--batch 4] [--steps 3]
// Prints dispatches per step by pipeline (its generator key or its WGSL file's first words, then
// the entry point), and the host time of trainStep(): recording and CPU work, timed with the GPU
// idle (a sync before each step), so a software adapter's threads don't share the CPU with it.
// That host figure is what bounds a step on a fast GPU; the wall figure includes the GPU.
// --gpu then times `steps` more steps with a timestamp around every dispatch (each in a pass of
// its own, so the sum runs a little above a normal step) and prints GPU ms per step by pipeline.
import { parseArgs } from "node:util";
import {
  gpuProfile,
  initGpu,
  recorderStats,
  startGpuProfile,
  stopGpuProfile,
  sync,
} from "../lib/gpu/mod.ts";
import { tensor } from "../lib/tensor/tensor.ts";
import { TOKENIZER_PRESETS } from "../lib/tokenizer/config.ts";
import { DEFAULT_TOKENIZER_SETTINGS, TokenizerTrainer } from "../lib/train/tokenizer_trainer.ts";

const { values } = parseArgs({
  options: {
    preset: { type: "string", default: "tiny64" },
    batch: { type: "string", default: "4" },
    steps: { type: "string", default: "3" },
    gpu: { type: "boolean", default: false },
  },
});
await initGpu();
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
  `${values.preset} batch ${batch}: ${per("dispatches")} dispatches, ${per("submits")} submits, ` +
    `${per("readbacks")} readbacks per step, ${per("bindGroupHits")} bind groups cached; host ${
      (host / steps).toFixed(1)
    } ms/step ` +
    `(${((host / steps) * 1000 / per("dispatches")).toFixed(1)} µs/dispatch), ` +
    `wall with GPU ${(wall / steps).toFixed(1)} ms/step`,
);
if (values.gpu) {
  if (!startGpuProfile()) {
    console.log("--gpu: this adapter has no timestamp-query feature");
  } else {
    for (let s = 0; s < steps; s++) await trainer.trainStep(x);
    stopGpuProfile();
    const times = [...(await gpuProfile()).entries()].sort((a, b) => b[1].ms - a[1].ms);
    const total = times.reduce((a, [, t]) => a + t.ms, 0);
    console.log("\nGPU time per step by pipeline (ms, share, dispatches):");
    for (const [label, t] of times) {
      console.log(
        `${(t.ms / steps).toFixed(3).padStart(10)}  ${
          (100 * t.ms / total).toFixed(1).padStart(5)
        }%` +
          `  ${(t.count / steps).toFixed(0).padStart(5)}  ${label}`,
      );
    }
    console.log(`${(total / steps).toFixed(3).padStart(10)}  total GPU ms per step`);
  }
}
trainer.dispose();
x.dispose();
