// The training captions' vocabulary: train records it, generate and eval name a prompt's unknown
// words on one line and still make the image; known words and models without it say nothing.
import { join } from "node:path";
import { writeTokenShard } from "../lib/data/token_shards.ts";
import { batchCaptionIds, captionIds } from "../lib/data/text.ts";
import {
  captionWords,
  MAX_VOCABULARY,
  recordedVocabulary,
  textIdsVocabulary,
  unknownWords,
  unknownWordsNote,
  VOCABULARY_KEY,
  VocabularyCollector,
} from "../lib/data/vocabulary.ts";
import { readSafetensors } from "../lib/io/safetensors.ts";
import { fileSha256 } from "../lib/tokenizer/load.ts";
import { tinyCheckpoints } from "./checkpoint_fixtures.ts";
import { assert, runCli } from "./helpers.ts";
import { TINY_TOKENIZER } from "./tokenizer_fixtures.ts";

Deno.test("vocabulary: words, the cap, cut rows and the note", () => {
  assert(
    captionWords("A Large red-circle, in the TOP left; été 2x").join() ===
      "a,large,red,circle,in,the,top,left,été,2x",
    "captionWords",
  );
  const ids = new Int32Array(3 * 16);
  captionIds("a red circle", 16, ids.subarray(0, 16));
  captionIds("", 16, ids.subarray(16, 32));
  // Cut at 16 ids: "two green squar" has no EOS, and its cut last word is left out.
  captionIds("two green squares", 16, ids.subarray(32, 48));
  assert(textIdsVocabulary(ids, 16)!.join() === "a,circle,green,red,two", "cut rows");
  assert(textIdsVocabulary(ids, 16, 3) === null, "past the cap: nothing");
  const c = new VocabularyCollector(2);
  c.add("b a a b");
  assert(c.complete && c.words()!.join() === "a,b", "two words fit a cap of 2");
  c.add("c");
  assert(!c.complete && c.words() === null, "a third does not");
  assert(MAX_VOCABULARY === 20000, "the cap");

  const meta = { [VOCABULARY_KEY]: "a circle red" };
  assert(recordedVocabulary(meta)!.size === 3, "recorded");
  assert(
    unknownWords(["A purple circle", "a banana, purple"], recordedVocabulary(meta)!).join() ===
      "purple,banana",
    "unknown words once each, in order",
  );
  assert(
    unknownWordsNote(["a Purple banana"], meta) ===
      "note: words not seen in training: purple, banana (the image is still generated)",
    `${unknownWordsNote(["a Purple banana"], meta)}`,
  );
  assert(unknownWordsNote(["A red circle."], meta) === null, "known words: no note");
  assert(unknownWordsNote(["a purple banana"], {}) === null, "no vocabulary: no note");
});

Deno.test("train records its captions' words; generate and eval name unknown ones and still draw", async () => {
  const r = await tinyCheckpoints("vocab");
  const captions = ["a red circle", "a blue square on the left", "Two squares"];
  const tokens = join(r.dir, "tokens");
  await Deno.mkdir(tokens);
  const L = TINY_TOKENIZER.scales.reduce((a, p) => a + p * p, 0);
  await writeTokenShard(
    join(tokens, "00000.safetensors"),
    {
      tokenizerSha256: await fileSha256(r.tokenizer),
      scales: TINY_TOKENIZER.scales,
      vocab: TINY_TOKENIZER.vocab,
      textLength: 32,
      source: "test",
    },
    Int32Array.from({ length: captions.length * L }, (_, i) => (i * 31) % TINY_TOKENIZER.vocab),
    batchCaptionIds(captions, 32),
  );
  const trained = join(r.dir, "trained.safetensors");
  const train = await runCli(
    ...["train", "--data", tokens, "--tokenizer", r.tokenizer, "--out", trained],
    ...["--set", "d=32,n_layers=2,gsa_every=1,heads=2,text_layers=1,text_length=16"],
    ...["--batch", "3", "--steps", "1", "--sample-every", "0", "--val-every", "0"],
  );
  assert(train.code === 0, train.stderr);
  const meta = (await readSafetensors(trained)).metadata;
  // text_length 16 cuts "a blue square on the left" after "a blue square o": "o" is dropped.
  assert(
    meta[VOCABULARY_KEY] === "a blue circle red square squares two",
    `recorded: ${meta[VOCABULARY_KEY]}`,
  );

  const gen = (model: string, prompt: string, out: string) =>
    runCli(
      ...["generate", prompt, "--model", model, "--tokenizer", r.tokenizer],
      ...["--out", join(r.dir, out)],
    );
  const exists = (f: string) => Deno.stat(join(r.dir, f)).then(() => true, () => false);
  const unknown = await gen(trained, "a purple Banana circle", "unknown.png");
  assert(unknown.code === 0 && (await exists("unknown.png")), unknown.stderr);
  const notes = unknown.stderr.split("\n").filter((l) => l.startsWith("note:"));
  assert(
    notes.length === 1 &&
      notes[0] ===
        "note: words not seen in training: purple, banana (the image is still generated)",
    unknown.stderr,
  );
  const known = await gen(trained, "Two red squares", "known.png");
  assert(known.code === 0 && (await exists("known.png")), known.stderr);
  assert(!/not seen in training/.test(known.stderr), known.stderr);
  // A model without the metadata says nothing.
  const plain = await gen(r.model, "a purple banana", "plain.png");
  assert(plain.code === 0 && !/not seen in training/.test(plain.stderr), plain.stderr);
  // eval's shapes prompts use words this model never saw.
  const ev = await runCli(
    ...["eval", "--set", "shapes", "--limit", "1", "--batch", "1"],
    ...["--model", trained, "--tokenizer", r.tokenizer],
  );
  assert(ev.code === 0, ev.stderr);
  assert(
    /^note: words not seen in training: .+\(the image is still generated\)$/m.test(ev.stderr),
    ev.stderr,
  );
});

Deno.test("models/: the default model records the shapes world's words", async () => {
  const { DEFAULT_MODEL } = await import("../lib/cli/defaults.ts");
  const meta = (await readSafetensors(DEFAULT_MODEL)).metadata;
  const words = recordedVocabulary(meta);
  assert(words !== null, "no caption_words in the default model");
  for (const w of ["purple", "circle", "triangles", "above", "corner", "background", "middle"]) {
    assert(words.has(w), `the default model's vocabulary lacks ${w}`);
  }
  assert(!words.has("banana"), "banana");
  assert(
    unknownWordsNote(["a large red circle in the top left on a blue background"], meta) === null,
    "a shapes caption has unknown words",
  );
});
