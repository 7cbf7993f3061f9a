// A tokenizer config and shapes set small enough to train on Mesa's CPU driver in seconds.
import { join } from "node:path";
import { writeShapes } from "../lib/data/shapes.ts";
import { TOKENIZER_PRESETS, type TokenizerConfig } from "../lib/tokenizer/config.ts";
import { tempDir } from "./data_fixtures.ts";

/** Small enough for Mesa's CPU driver: 16-px images, a 4 × 4 map, 64 codes over 4 scales. */
export const TINY_TOKENIZER: TokenizerConfig = {
  ...TOKENIZER_PRESETS.tiny64,
  image: 16,
  ch: 8,
  chMult: [1, 2, 2],
  numResBlocks: 1,
  cvae: 8,
  vocab: 64,
  scales: [1, 2, 3, 4],
};

/** A shapes set at 16 px (train and val) and the tiny config as a JSON file. */
export async function tinyWorld(n = 256, val = 32) {
  const dir = await tempDir("tok");
  await writeShapes({ n, side: 16, seed: 3, out: dir, split: "train", perShard: 10000 });
  const valDir = join(dir, "val");
  await Deno.mkdir(valDir);
  await writeShapes({ n: val, side: 16, seed: 3, out: valDir, split: "val", perShard: 10000 });
  const config = join(dir, "tiny.json");
  await Deno.writeTextFile(config, JSON.stringify(TINY_TOKENIZER));
  return { dir, train: dir, val: valDir, config };
}
