// Writes the default checkpoints of models/ from a training run's f32 ones (DESIGN §5: f16
// storage, the loaders widen to f32): the tokenizer, then the model with the f16 tokenizer's
// hash in place of the f32 one it was trained with (the indices are the same codes; the check in
// `generate` then passes), both through writeSafetensors (atomic).
//
// The model also carries its training captions' vocabulary (metadata caption_words, which
// `generate` checks prompts against): the one `vmambar train` recorded, else, with --shapes N,
// the words of the shapes world's first N training captions (what `vmambar data shapes --n N
// --seed S` writes, as tools/default-device.sh trains on).
//   deno run -A tools/ship_default.ts --tokenizer T --model M [--out models] [--shapes N [--seed S]]
// --vocabulary-only rewrites --model's metadata in place with that vocabulary, every tensor's
// bytes unchanged (checked), and touches no tokenizer:
//   deno run -A tools/ship_default.ts --vocabulary-only --model models/model.safetensors \
//     --shapes 20000
import { join } from "node:path";
import { parseArgs } from "node:util";
import { shapesScene } from "../lib/data/shapes.ts";
import { VOCABULARY_KEY, VocabularyCollector, vocabularyMetadata } from "../lib/data/vocabulary.ts";
import {
  readSafetensors,
  type StTensor,
  stTensor,
  toFloat32,
  writeSafetensors,
} from "../lib/io/safetensors.ts";
import { floatToHalf } from "../lib/tensor/tensor.ts";
import { fileSha256 } from "../lib/tokenizer/load.ts";

const { values } = parseArgs({
  options: {
    tokenizer: { type: "string" },
    model: { type: "string" },
    out: { type: "string", default: "models" },
    shapes: { type: "string" },
    seed: { type: "string", default: "0" },
    "vocabulary-only": { type: "boolean" },
  },
});
const only = values["vocabulary-only"] === true;
if (!values.model || (!only && !values.tokenizer) || (only && !values.shapes)) {
  console.error(
    "usage: ship_default.ts --tokenizer T --model M [--out models] [--shapes N [--seed S]]\n" +
      "       ship_default.ts --vocabulary-only --model M --shapes N [--seed S]",
  );
  Deno.exit(2);
}

/** The vocabulary of the shapes world's first n training captions for a seed. */
function shapesVocabulary(n: number, seed: number): string[] {
  const words = new VocabularyCollector();
  // Captions do not depend on the image size: only the objects' pixel positions do.
  for (let i = 0; i < n; i++) words.add(shapesScene(seed, "train", i, 64).caption);
  return words.words()!;
}

/** The vocabulary metadata the shipped model gets: the recorded one, else --shapes's. */
function vocabulary(metadata: Record<string, string>): Record<string, string> {
  if (values.shapes === undefined) {
    if (metadata[VOCABULARY_KEY] === undefined) {
      console.error(
        "ship_default: the model records no caption vocabulary (pass --shapes N for a model of " +
          "the shapes world): generate will not name unknown words",
      );
    }
    return {};
  }
  const n = Number(values.shapes), seed = Number(values.seed);
  if (!Number.isInteger(n) || n < 1 || !Number.isInteger(seed) || seed < 0) {
    throw new Error(`--shapes ${values.shapes} --seed ${values.seed}: integers ≥ 1 and ≥ 0`);
  }
  const words = shapesVocabulary(n, seed);
  const recorded = metadata[VOCABULARY_KEY];
  if (recorded !== undefined && recorded !== words.join(" ")) {
    console.error("ship_default: replacing the model's recorded vocabulary with --shapes's");
  }
  console.log(`vocabulary: ${words.length} words from ${n} shapes captions (seed ${seed})`);
  return vocabularyMetadata(words);
}

/** Every F32 tensor as F16 (after checking it fits f16's range). */
function half(tensors: Map<string, StTensor>): Map<string, StTensor> {
  const out = new Map<string, StTensor>();
  for (const [name, t] of tensors) {
    if (t.dtype !== "F32") {
      out.set(name, t);
      continue;
    }
    const x = toFloat32(t);
    const big = x.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    if (!(big < 65504)) throw new Error(`${name}: |x| up to ${big} does not fit f16`);
    out.set(name, stTensor(Uint16Array.from(x, floatToHalf), t.shape));
  }
  return out;
}

/** Throws unless both files hold the same tensors, byte for byte, in the same order. */
function sameTensors(a: Map<string, StTensor>, b: Map<string, StTensor>): void {
  const names = [...a.keys()];
  if (names.join() !== [...b.keys()].join()) throw new Error("the tensors' names changed");
  for (const name of names) {
    const x = a.get(name)!, y = b.get(name)!;
    const same = x.dtype === y.dtype && x.shape.join() === y.shape.join() &&
      x.data.length === y.data.length && x.data.every((v, i) => v === y.data[i]);
    if (!same) throw new Error(`${name} changed`);
  }
}

if (only) {
  const path = values.model;
  const before = await readSafetensors(path);
  await writeSafetensors(path, before.tensors, {
    ...before.metadata,
    ...vocabulary(before.metadata),
  });
  sameTensors(before.tensors, (await readSafetensors(path)).tensors);
  console.log(`${path}: vocabulary written, ${before.tensors.size} tensors unchanged`);
} else {
  await Deno.mkdir(values.out!, { recursive: true });
  const tokOut = join(values.out!, "tokenizer.safetensors");
  const tok = await readSafetensors(values.tokenizer!);
  await writeSafetensors(tokOut, half(tok.tensors), tok.metadata);
  const model = await readSafetensors(values.model);
  const modelOut = join(values.out!, "model.safetensors");
  await writeSafetensors(modelOut, half(model.tensors), {
    ...model.metadata,
    tokenizer: "models/tokenizer.safetensors",
    tokenizer_sha256: await fileSha256(tokOut),
    // A model shipped before keeps the hash of the tokenizer it was trained with.
    trained_with_tokenizer_sha256: model.metadata.trained_with_tokenizer_sha256 ??
      model.metadata.tokenizer_sha256,
    ...vocabulary(model.metadata),
  });
  for (const p of [tokOut, modelOut]) {
    console.log(`${p}: ${((await Deno.stat(p)).size / 2 ** 20).toFixed(2)} MiB`);
  }
}
