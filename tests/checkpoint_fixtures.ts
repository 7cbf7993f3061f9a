// A random tiny tokenizer and model saved as checkpoints, and a tiny token set, for CLI tests of
// generate, bench and train.
import { join } from "node:path";
import { batchCaptionIds } from "../lib/data/text.ts";
import { writeTokenShard } from "../lib/data/token_shards.ts";
import { saveCheckpoint } from "../lib/io/checkpoint.ts";
import { VMambAR } from "../lib/model/vmambar.ts";
import { fileSha256 } from "../lib/tokenizer/load.ts";
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

/**
 * A random tiny tokenizer and one token shard of `captions` (text length TINY_T) whose indices
 * follow (i·mul + add) mod V, in a temporary folder: what `vmambar train` needs.
 */
export async function tinyTokenData(name: string, captions: string[], mul: number, add: number) {
  await gpuReady;
  const dir = await tempDir(name);
  const tokenizer = join(dir, "tok.safetensors");
  const vq = new VQVAE(TINY_TOKENIZER, 1);
  await saveCheckpoint(tokenizer, vq.namedParameters(), "tokenizer", TINY_TOKENIZER);
  vq.dispose();
  const L = TINY_TOKENIZER.scales.reduce((a, p) => a + p * p, 0);
  const tokens = join(dir, "tokens");
  await Deno.mkdir(tokens);
  const indices = Int32Array.from(
    { length: captions.length * L },
    (_, i) => (i * mul + add) % TINY_TOKENIZER.vocab,
  );
  const info = {
    tokenizerSha256: await fileSha256(tokenizer),
    scales: TINY_TOKENIZER.scales,
    vocab: TINY_TOKENIZER.vocab,
    textLength: TINY_T,
    source: "test",
  };
  await writeTokenShard(
    join(tokens, "00000.safetensors"),
    info,
    indices,
    batchCaptionIds(captions, TINY_T),
  );
  return { dir, tokenizer, tokens, indices };
}
