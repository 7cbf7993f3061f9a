// Where a tokenizer training step's dispatches go, and what recording them costs on the host.
// Run: deno run -A tools/profile_tokenizer_step.ts [--preset tiny64] [--batch 4] [--steps 3]
// Prints dispatches per step by pipeline (its generator key or its WGSL file's first words, then
// the entry point), and the host time of trainStep(): recording and CPU work, timed with the GPU
// idle (a sync before each step), so a software adapter's threads don't share the CPU with it.
// That host figure is what bounds a step on a fast GPU; the wall figure includes the GPU.
import { parseArgs } from "node:util";
import { initGpu, recorderStats, sync } from "../lib/gpu/mod.ts";
import { tensor } from "../lib/tensor/tensor.ts";
import { TOKENIZER_PRESETS } from "../lib/tokenizer/config.ts";
import { DEFAULT_TOKENIZER_SETTINGS, TokenizerTrainer } from "../lib/train/tokenizer_trainer.ts";

const { values } = parseArgs({
  options: {
    preset: { type: "string", default: "tiny64" },
    batch: { type: "string", default: "4" },
    steps: { type: "string", default: "3" },
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
const per = (k: "dispatches" | "submits" | "readbacks") => (recorderStats[k] - before[k]) / steps;
const rows = [...recorderStats.byLabel.entries()].sort((a, b) => b[1] - a[1]);
for (const [label, count] of rows) {
  console.log(`${(count / steps).toFixed(0).padStart(6)}  ${label}`);
}
console.log(
  `${values.preset} batch ${batch}: ${per("dispatches")} dispatches, ${per("submits")} submits, ` +
    `${per("readbacks")} readbacks per step; host ${(host / steps).toFixed(1)} ms/step ` +
    `(${((host / steps) * 1000 / per("dispatches")).toFixed(1)} µs/dispatch), ` +
    `wall with GPU ${(wall / steps).toFixed(1)} ms/step`,
);
trainer.dispose();
x.dispose();
