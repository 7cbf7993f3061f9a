// Where the time to one image goes, the shipped model by default, for each candidate count given:
// dispatches and submits per phase, the host time to record the text encoder and every scale (no
// wait), the time until the GPU has done them (one wait, which costs ~11 ms by itself in Deno's
// WebGPU: see tools/BENCHMARKS.md), the decoder's, and with --gpu the GPU time per pipeline
// (timestamp queries, each dispatch in a pass of its own, so the total is inflated).
// Run: deno run -A tools/profile_generate.ts [--candidates 1,4] [--runs 10] [--gpu] [--model M]
import { parseArgs } from "node:util";
import {
  gpuProfile,
  initGpu,
  recorderStats,
  startGpuProfile,
  stopGpuProfile,
  sync,
} from "../lib/gpu/mod.ts";
import { DEFAULT_MODEL, DEFAULT_TOKENIZER } from "../lib/cli/defaults.ts";
import { BENCH_PROMPT, median } from "../lib/cli/bench_generate.ts";
import { batchCaptionIds } from "../lib/data/text.ts";
import { encodeText, generateFromText } from "../lib/model/generate.ts";
import { loadModel } from "../lib/model/load.ts";
import {
  bestCandidate,
  candidateBatch,
  DEFAULT_SAMPLING,
  samplingPicker,
} from "../lib/model/sample.ts";
import { noGrad, tidyAsync } from "../lib/tensor/tensor.ts";
import { loadTokenizer } from "../lib/tokenizer/load.ts";

const { values } = parseArgs({
  options: {
    candidates: { type: "string", default: "1,4" },
    runs: { type: "string", default: "10" },
    gpu: { type: "boolean", default: false },
    model: { type: "string", default: DEFAULT_MODEL },
    tokenizer: { type: "string", default: DEFAULT_TOKENIZER },
  },
});
const runs = Number(values.runs);
const counts = values.candidates!.split(",").map(Number);
if (!(Number.isInteger(runs) && runs >= 1) || !counts.every((n) => Number.isInteger(n) && n >= 1)) {
  console.error("profile_generate: --runs and --candidates take whole numbers ≥ 1 (1,4)");
  Deno.exit(1);
}
const g = await initGpu();
const { model, cfg } = await loadModel(values.model!);
const tok = await loadTokenizer(values.tokenizer!);
const ids = batchCaptionIds([BENCH_PROMPT], cfg.text_length);
console.log(`${g.name}: ${values.model}, "${BENCH_PROMPT}", medians of ${runs} runs`);

/** One image's work: text, every scale, the best candidate, the decoder. */
function record(n: number) {
  const o = { ...DEFAULT_SAMPLING, candidates: n };
  const b = candidateBatch(model, ids, o);
  const encoded = encodeText(model, b.ids, o.cfg);
  const dText = recorderStats.dispatches;
  const gen = generateFromText(model, tok.vq.quantize, encoded, o.cfg, samplingPicker(o), b.score);
  return { encoded, dText, fHat: bestCandidate(gen, b.n) };
}

for (const n of counts) {
  const host: number[] = [], done: number[] = [], decode: number[] = [];
  let tally = "";
  for (let r = 0; r <= runs; r++) {
    await tidyAsync(async () => {
      await sync();
      const d0 = recorderStats.dispatches, s0 = recorderStats.submits;
      const t0 = performance.now();
      const { encoded, dText, fHat } = record(n);
      const d1 = recorderStats.dispatches;
      const t1 = performance.now();
      await sync();
      const t2 = performance.now();
      noGrad(() => tok.vq.decodeMap(fHat));
      const d2 = recorderStats.dispatches;
      await sync();
      const t3 = performance.now();
      encoded.dispose();
      if (r === 0) return; // compiles the pipelines
      host.push(t1 - t0);
      done.push(t2 - t0);
      decode.push(t3 - t2);
      tally = `dispatches: text ${dText - d0}, tokens ${d1 - dText}, decode ${d2 - d1}; ` +
        `submits ${recorderStats.submits - s0}`;
    });
  }
  console.log(
    `best of ${n}: ${tally}; text and tokens: recorded in ${median(host).toFixed(1)} ms, ` +
      `GPU done at ${median(done).toFixed(1)} ms (one wait); decode ${
        median(decode).toFixed(1)
      } ms (one wait)`,
  );
  if (values.gpu && startGpuProfile()) {
    const rows = await tidyAsync(async () => {
      const { encoded, fHat } = record(n);
      noGrad(() => tok.vq.decodeMap(fHat));
      stopGpuProfile();
      const prof = await gpuProfile();
      encoded.dispose();
      return [...prof.entries()].sort((a, b) => b[1].ms - a[1].ms);
    });
    const total = rows.reduce((s, [, e]) => s + e.ms, 0);
    const count = rows.reduce((s, [, e]) => s + e.count, 0);
    console.log(`  GPU time ${total.toFixed(2)} ms over ${count} dispatches (profiled); top:`);
    for (const [label, e] of rows.slice(0, 16)) {
      const each = (1000 * e.ms) / e.count;
      console.log(
        `  ${e.ms.toFixed(3).padStart(8)} ms ${String(e.count).padStart(5)} × ${
          each.toFixed(1).padStart(6)
        } µs  ${label.slice(0, 60)}`,
      );
    }
  } else if (values.gpu) console.log("  (no timestamp queries on this adapter)");
}
model.dispose();
tok.vq.dispose();
