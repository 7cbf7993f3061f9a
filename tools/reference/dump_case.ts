// Writes a cross-check case for tools/reference/check.py: a preset's VMambAR with seeded random
// weights and a random quantizer, random captions and indices, and what the WebGPU model computes
// from them: the logits, the loss, every parameter's gradient, and the logits of scale-by-scale
// generation fed the same indices (teacher-forced), which must equal the full pass.
// Run: deno run -A tools/reference/dump_case.ts --preset tiny64 [--batch 8] --out case.safetensors
import { parseArgs } from "node:util";
import { initGpu, upload } from "../../lib/gpu/mod.ts";
import { batchCaptionIds } from "../../lib/data/text.ts";
import { mulberry32 } from "../../lib/data/random.ts";
import { tensorsToHost } from "../../lib/io/checkpoint.ts";
import { stTensor, writeSafetensors } from "../../lib/io/safetensors.ts";
import { imageTokens, modelConfig } from "../../lib/model/config.ts";
import { generateScales } from "../../lib/model/generate.ts";
import { scaleIndices, teacherFeatures } from "../../lib/model/inputs.ts";
import { Sequence, VMambAR } from "../../lib/model/vmambar.ts";
import { Init } from "../../lib/nn/module.ts";
import { backward } from "../../lib/tensor/autograd.ts";
import { keep, type Tensor, tidyAsync } from "../../lib/tensor/tensor.ts";
import { TOKENIZER_PRESETS } from "../../lib/tokenizer/config.ts";
import { ResidualQuantizer } from "../../lib/tokenizer/quantizer.ts";

const { values } = parseArgs({
  options: {
    preset: { type: "string", default: "tiny64" },
    set: { type: "string", default: "" },
    batch: { type: "string" },
    seed: { type: "string", default: "1" },
    out: { type: "string", default: "case.safetensors" },
  },
});
await initGpu();
const cfg = modelConfig(values.preset!, values.set);
const B = Number(values.batch ?? (values.preset === "base256" ? 4 : 8));
const seed = Number(values.seed);
const L = imageTokens(cfg), T = cfg.text_length;
const tokCfg = {
  ...TOKENIZER_PRESETS.tiny64,
  scales: cfg.scales,
  vocab: cfg.vocab,
  cvae: cfg.cvae,
};
const quantizer = new ResidualQuantizer(new Init(seed + 1), tokCfg);
const rng = mulberry32(seed);
// Codes of ordinary size (a trained codebook's), so the image inputs carry signal.
upload(
  quantizer.codebook.buffer,
  Float32Array.from({ length: quantizer.codebook.size }, () => 2 * rng() - 1),
);
const model = new VMambAR(cfg, seed);
const words = ["a", "large", "red", "circle", "to", "the", "left", "of", "two", "blue", "squares"];
const captions = Array.from(
  { length: B },
  (_, b) =>
    b === 0 ? "" : Array.from(
      { length: 2 + Math.floor(rng() * 12) },
      () => words[Math.floor(rng() * words.length)],
    ).join(" "),
);
const textIds = batchCaptionIds(captions, T);
const indices = Int32Array.from({ length: B * L }, () => Math.floor(rng() * cfg.vocab));

const named = model.namedParameters();
const out = await tidyAsync(async () => {
  const seq = new Sequence(cfg, textIds);
  const logits = model.forward(seq, teacherFeatures(quantizer, indices, B));
  const loss = VMambAR.loss(logits, indices);
  backward(loss);
  // Generation's path, fed the same indices: per-scale conditional logits [B·pn², V].
  const truth = scaleIndices(indices, B, cfg.scales);
  const perScale: Tensor[] = [];
  generateScales(model, quantizer, textIds, 0, (k, cond) => {
    perScale.push(keep(cond));
    return truth[k].reshape([-1]);
  });
  const inc = new Float32Array(B * L * cfg.vocab);
  let off = 0;
  for (const [k, pn] of cfg.scales.entries()) {
    const n = pn * pn, V = cfg.vocab;
    const data = (await perScale[k].read()) as Float32Array;
    perScale[k].dispose();
    for (let b = 0; b < B; b++) {
      inc.set(data.subarray(b * n * V, (b + 1) * n * V), (b * L + off) * V);
    }
    off += n;
  }
  return {
    logits: (await logits.read()) as Float32Array,
    loss: (await loss.read()) as Float32Array,
    inc,
  };
});
const tensors = await tensorsToHost([
  ...named,
  ...quantizer.namedParameters().map(([n, t]): [string, Tensor] => [`tokenizer.quantize.${n}`, t]),
  ...named.map(([n, t]): [string, Tensor] => [`grad.${n}`, t.grad!]),
]);
tensors.set("input.text_ids", stTensor(textIds, [B, T]));
tensors.set("input.indices", stTensor(indices, [B, L]));
tensors.set("out.logits", stTensor(out.logits, [B, L, cfg.vocab]));
tensors.set("out.loss", stTensor(out.loss, [1]));
tensors.set("out.logits_incremental", stTensor(out.inc, [B, L, cfg.vocab]));
await writeSafetensors(values.out!, tensors, {
  format: "vmambar",
  kind: "case",
  config: JSON.stringify({
    ...cfg,
    quant_resi: tokCfg.quantResi,
    share_quant_resi: tokCfg.shareQuantResi,
  }),
});
console.log(`wrote ${values.out}: ${cfg.arch} ${values.preset}, batch ${B}, loss ${out.loss[0]}`);
model.dispose();
quantizer.dispose();
