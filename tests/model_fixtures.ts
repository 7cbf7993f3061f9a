// A VMambAR and tokenizer quantizer small enough for Mesa's CPU driver, with random batches.
import { batchCaptionIds } from "../lib/data/text.ts";
import type { ModelConfig } from "../lib/model/config.ts";
import { MODEL_PRESETS } from "../lib/model/config.ts";
import { Init } from "../lib/nn/module.ts";
import { TOKENIZER_PRESETS, type TokenizerConfig } from "../lib/tokenizer/config.ts";
import { ResidualQuantizer } from "../lib/tokenizer/quantizer.ts";
import { rng } from "./helpers.ts";

export const TINY_TOKENS: TokenizerConfig = {
  ...TOKENIZER_PRESETS.tiny64,
  cvae: 4,
  vocab: 17,
  scales: [1, 2, 3],
};

export function tinyModelConfig(over: Partial<ModelConfig> = {}): ModelConfig {
  return {
    ...MODEL_PRESETS.tiny64,
    d: 32,
    n_layers: 4,
    gsa_every: 2,
    heads: 2,
    text_layers: 1,
    text_length: 8,
    scales: TINY_TOKENS.scales,
    vocab: TINY_TOKENS.vocab,
    cvae: TINY_TOKENS.cvae,
    ...over,
  };
}

export const tinyQuantizer = (seed = 5, cfg = TINY_TOKENS) =>
  new ResidualQuantizer(new Init(seed), cfg);

/** Captions of varied length (one empty, one cut at T) and random indices [B·L]. */
export function randomBatch(c: ModelConfig, B: number, seed: number) {
  const r = rng(seed);
  const words = ["a", "red", "circle", "on", "blue", "two", "squares"];
  const captions = Array.from(
    { length: B },
    (_, b) =>
      b === 0
        ? ""
        : Array.from({ length: 1 + Math.floor(r() * 4) }, () => words[Math.floor(r() * 7)]).join(
          " ",
        ),
  );
  const L = c.scales.reduce((a, p) => a + p * p, 0);
  const indices = Int32Array.from({ length: B * L }, () => Math.floor(r() * c.vocab));
  return { textIds: batchCaptionIds(captions, c.text_length), indices, captions };
}
