// The cpu32 and cpu16 presets of README's "A first run on the CPU": they validate, fit together, and a
// couple of training steps of each run with a finite, falling-or-not loss (batch 2: kept tiny).
import { MODEL_PRESETS, modelConfig } from "../lib/model/config.ts";
import { tensor } from "../lib/tensor/tensor.ts";
import { tokenCount, TOKENIZER_PRESETS, validateTokenizerConfig } from "../lib/tokenizer/config.ts";
import { VQVAE } from "../lib/tokenizer/vqvae.ts";
import { DEFAULT_MODEL_SETTINGS, ModelTrainer } from "../lib/train/model_trainer.ts";
import { DEFAULT_TOKENIZER_SETTINGS, TokenizerTrainer } from "../lib/train/tokenizer_trainer.ts";
import { assert, gpuReady } from "./helpers.ts";
import { randomBatch } from "./model_fixtures.ts";

const TOK = TOKENIZER_PRESETS.cpu32;

Deno.test("cpu32: the tokenizer and model presets validate and share one token grid", () => {
  validateTokenizerConfig(TOK, "cpu32");
  assert(TOK.image === 32 && tokenCount(TOK) === 85, `${TOK.image} px, ${tokenCount(TOK)} tokens`);
  const m = modelConfig("cpu32");
  assert(m.d === MODEL_PRESETS.cpu32.d && m.n_layers <= 4, `d ${m.d}, ${m.n_layers} layers`);
  assert(
    m.scales.join() === TOK.scales.join() && m.vocab === TOK.vocab && m.cvae === TOK.cvae,
    `model grid ${m.scales}/${m.vocab}/${m.cvae}, tokenizer ${TOK.scales}/${TOK.vocab}/${TOK.cvae}`,
  );
  // ≥ 2 channels in every GroupNorm group (ch 16 and 32), where VAR's 32 groups leave one.
  assert(TOK.normGroups === 8, `cpu32 normGroups ${TOK.normGroups}`);
});

Deno.test("cpu16: 16-px images onto cpu32's token grid, so the cpu32 model preset fits it", () => {
  const t16 = validateTokenizerConfig(TOKENIZER_PRESETS.cpu16, "cpu16");
  assert(t16.image === 16 && t16.chMult.length === 2, `${t16.image} px, ${t16.chMult}`);
  const m = modelConfig("cpu32");
  assert(
    m.scales.join() === t16.scales.join() && m.vocab === t16.vocab && m.cvae === t16.cvae,
    `model grid ${m.scales}/${m.vocab}/${m.cvae}, cpu16 ${t16.scales}/${t16.vocab}/${t16.cvae}`,
  );
  assert(t16.normGroups === 4, `cpu16 normGroups ${t16.normGroups}`);
});

Deno.test("cpu32: two tokenizer training steps run with a finite loss", async () => {
  await gpuReady;
  const B = 2, n = B * 3 * TOK.image * TOK.image;
  const trainer = new TokenizerTrainer(TOK, { ...DEFAULT_TOKENIZER_SETTINGS, batchSize: B });
  try {
    const x = tensor(Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37)), [
      B,
      3,
      TOK.image,
      TOK.image,
    ]);
    await trainer.trainStep(x);
    await trainer.trainStep(x);
    x.dispose();
    const s = await trainer.readStats();
    assert(s.steps === 2 && Number.isFinite(s.loss) && s.loss > 0, JSON.stringify(s));
  } finally {
    trainer.dispose();
  }
});

Deno.test("cpu32: two model training steps run with a finite loss", async () => {
  await gpuReady;
  const cfg = modelConfig("cpu32");
  const vq = new VQVAE(TOK, 0);
  const B = 2;
  const trainer = new ModelTrainer(
    cfg,
    { ...DEFAULT_MODEL_SETTINGS, batchSize: B, microBatch: B, warmup: 0, steps: 2 },
    vq.quantize,
  );
  try {
    for (let step = 0; step < 2; step++) {
      const { textIds, indices } = randomBatch(cfg, B, step);
      trainer.trainStep([{ size: B, textIds, indices, position: { epoch: 0, offset: 0 } }]);
    }
    const s = await trainer.readStats();
    // Cross-entropy of near-uniform logits over V = 256 codes is about ln 256 ≈ 5.5.
    assert(s.steps === 2 && s.loss > 3 && s.loss < 8, JSON.stringify(s));
  } finally {
    trainer.dispose();
    vq.dispose();
  }
});
