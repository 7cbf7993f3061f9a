// A random tiny tokenizer and model saved as checkpoints, for CLI tests of generate and bench.
import { join } from "node:path";
import { saveCheckpoint } from "../lib/io/checkpoint.ts";
import { VMambAR } from "../lib/model/vmambar.ts";
import { VQVAE } from "../lib/tokenizer/vqvae.ts";
import { tempDir } from "./data_fixtures.ts";
import { gpuReady } from "./helpers.ts";
import { tinyModelConfig } from "./model_fixtures.ts";
import { TINY_TOKENIZER } from "./tokenizer_fixtures.ts";

/** The tiny model's text length. */
export const TINY_T = 16;
const tinyModel = () =>
  tinyModelConfig({
    scales: TINY_TOKENIZER.scales,
    vocab: TINY_TOKENIZER.vocab,
    cvae: TINY_TOKENIZER.cvae,
    text_length: TINY_T,
  });

/** A random tiny tokenizer and model (no vocabulary recorded) in a temporary folder. */
export async function tinyCheckpoints(name: string) {
  await gpuReady;
  const dir = await tempDir(name);
  const tokenizer = join(dir, "tok.safetensors"), model = join(dir, "model.safetensors");
  const vq = new VQVAE(TINY_TOKENIZER, 1);
  await saveCheckpoint(tokenizer, vq.namedParameters(), "tokenizer", TINY_TOKENIZER);
  vq.dispose();
  const m = new VMambAR(tinyModel(), 3);
  await saveCheckpoint(model, m.namedParameters(), "model", m.cfg);
  m.dispose();
  return { dir, tokenizer, model };
}
