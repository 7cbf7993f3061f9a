// Where a VMambAR training step's time goes: dispatches per step by pipeline, the host time of
// trainStep (GPU idle before each step), the wall time and image tokens/s, and with --gpu the GPU
// time per step by pipeline (timestamp queries, each dispatch in a pass of its own). Then the
// time to generate one image (and a batch) scale by scale, without decoding.
// Run: deno run -A tools/profile_model_step.ts [--preset tiny64] [--set …] [--batch 8] [--steps 3] [--gpu]
import { parseArgs } from "node:util";
import {
  gpuProfile,
  initGpu,
  poolStats,
  recorderStats,
  startGpuProfile,
  stopGpuProfile,
  sync,
} from "../lib/gpu/mod.ts";
import { batchCaptionIds } from "../lib/data/text.ts";
import { imageTokens, modelConfig } from "../lib/model/config.ts";
import { generateScales } from "../lib/model/generate.ts";
import { Init } from "../lib/nn/module.ts";
import { sampleTokens } from "../lib/tensor/sample.ts";
import { tidyAsync } from "../lib/tensor/tensor.ts";
import { TOKENIZER_PRESETS } from "../lib/tokenizer/config.ts";
import { ResidualQuantizer } from "../lib/tokenizer/quantizer.ts";
import { DEFAULT_MODEL_SETTINGS, ModelTrainer } from "../lib/train/model_trainer.ts";

const { values } = parseArgs({
  options: {
    preset: { type: "string", default: "tiny64" },
    set: { type: "string", default: "" },
    batch: { type: "string", default: "8" },
    steps: { type: "string", default: "3" },
    gpu: { type: "boolean", default: false },
    generate: { type: "string", default: "1,16" },
  },
});
await initGpu();
const cfg = modelConfig(values.preset!, values.set);
const B = Number(values.batch), steps = Number(values.steps), L = imageTokens(cfg);
const tokCfg = {
  ...TOKENIZER_PRESETS.tiny64,
  scales: cfg.scales,
  vocab: cfg.vocab,
  cvae: cfg.cvae,
};
const quantizer = new ResidualQuantizer(new Init(1), tokCfg);
const settings = { ...DEFAULT_MODEL_SETTINGS, batchSize: B, microBatch: B };
const trainer = new ModelTrainer(cfg, settings, quantizer);
const captions = Array.from(
  { length: B },
  (_, i) => `a ${["red", "blue"][i % 2]} circle in the top left ${i}`,
);
const batch = {
  size: B,
  indices: Int32Array.from({ length: B * L }, (_, i) => (i * 7919) % cfg.vocab),
  textIds: batchCaptionIds(captions, cfg.text_length),
  position: { epoch: 0, offset: 0 },
};
trainer.trainStep([batch]); // compiles every pipeline
await sync();
recorderStats.byLabel = new Map();
const before = { ...recorderStats };
let host = 0;
const t0 = performance.now();
for (let s = 0; s < steps; s++) {
  await sync();
  const h = performance.now();
  trainer.trainStep([batch]);
  host += performance.now() - h;
}
await sync();
const wall = (performance.now() - t0) / steps;
const per = (k: "dispatches" | "submits" | "readbacks") => (recorderStats[k] - before[k]) / steps;
const rows = [...recorderStats.byLabel.entries()].sort((a, b) => b[1] - a[1]).slice(0, 25);
for (const [label, count] of rows) {
  console.log(`${(count / steps).toFixed(0).padStart(6)}  ${label}`);
}
recorderStats.byLabel = null;
const params = trainer.model.parameterCount();
console.log(
  `${values.preset}${values.set ? ` (${values.set})` : ""}, ${
    (params / 1e6).toFixed(2)
  } M parameters, ` +
    `batch ${B}: ${per("dispatches")} dispatches, ${per("submits")} submits, ${per("readbacks")} ` +
    `readbacks per step; host ${(host / steps).toFixed(1)} ms/step, wall ${
      wall.toFixed(1)
    } ms/step, ` +
    `${((B * L) / (wall / 1000)).toFixed(0)} image tokens/s; GPU memory held by the buffer pool ` +
    `${(poolStats.allocatedBytes / 2 ** 20).toFixed(0)} MiB (its high-water mark: weights, ` +
    `optimizer state and the largest step's activations)`,
);
if (values.gpu) {
  if (!startGpuProfile()) console.log("--gpu: this adapter has no timestamp-query feature");
  else {
    for (let s = 0; s < steps; s++) trainer.trainStep([batch]);
    stopGpuProfile();
    const times = [...(await gpuProfile()).entries()].sort((a, b) => b[1].ms - a[1].ms);
    const total = times.reduce((a, [, t]) => a + t.ms, 0);
    console.log("\nGPU time per step by pipeline (ms, share, dispatches):");
    for (const [label, t] of times.slice(0, 25)) {
      console.log(
        `${(t.ms / steps).toFixed(3).padStart(10)}  ${
          (100 * t.ms / total).toFixed(1).padStart(5)
        }%  ` +
          `${(t.count / steps).toFixed(0).padStart(5)}  ${label}`,
      );
    }
    console.log(`${(total / steps).toFixed(3).padStart(10)}  total GPU ms per step`);
  }
}
// Generation: every scale with guidance (cfg 3), tokens sampled on the GPU, one readback.
for (const n of values.generate!.split(",").filter(Boolean).map(Number)) {
  const ids = batchCaptionIds(new Array(n).fill("a red circle in the top left"), cfg.text_length);
  const run = () =>
    tidyAsync(async () => {
      const g = generateScales(trainer.ema, quantizer, ids, 3, (k, c, u, t) =>
        sampleTokens(c, u, { guidance: t, seed: 1, stream: k, topK: 100 }));
      await g.indices.at(-1)!.read();
    });
  await run();
  const times: number[] = [];
  for (let r = 0; r < 5; r++) {
    const s = performance.now();
    await run();
    times.push(performance.now() - s);
  }
  times.sort((a, b) => a - b);
  console.log(
    `generate ${n} image${n > 1 ? "s" : ""} (tokens only, cfg 3): median ${times[2].toFixed(1)} ms`,
  );
}
trainer.dispose();
quantizer.dispose();
