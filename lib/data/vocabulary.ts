// The training captions' vocabulary (issue 11: "a prompt outside the world's vocabulary still
// produces an image and says the words it did not recognise"). `vmambar train` records the
// sorted unique lowercase words of its captions in the model checkpoint's metadata, unless there
// are more than MAX_VOCABULARY (an open-world caption set, where a list of words says little);
// `generate` and `eval` name the prompt's words that are not in it, on one line.
import { EOS } from "./text.ts";

/** The metadata key: the words, sorted, joined by single spaces. */
export const VOCABULARY_KEY = "caption_words";
/** Above this many distinct words nothing is recorded. */
export const MAX_VOCABULARY = 20000;

const WORD = /[\p{L}\p{N}]+/gu;

/** The words of a text: runs of letters and digits, lowercased ("Top-left," → top, left). */
export function captionWords(text: string): string[] {
  return text.toLowerCase().match(WORD) ?? [];
}

/** Gathers the distinct words of captions, giving up past `max` of them. */
export class VocabularyCollector {
  readonly #words = new Set<string>();
  #overflow = false;
  constructor(readonly max = MAX_VOCABULARY) {}

  add(caption: string): void {
    if (this.#overflow) return;
    for (const w of captionWords(caption)) {
      this.#words.add(w);
      if (this.#words.size > this.max) {
        this.#overflow = true;
        this.#words.clear();
        return;
      }
    }
  }

  /** False once more than `max` distinct words have been seen. */
  get complete(): boolean {
    return !this.#overflow;
  }

  /** The words, sorted; null past the cap. */
  words(): string[] | null {
    return this.#overflow ? null : [...this.#words].sort();
  }
}

const bytesDecoder = new TextDecoder();

/**
 * The vocabulary of text ids [count, T] as the model reads them (DESIGN §4 ids: bytes, PAD, BOS,
 * EOS). A row cut at T has no EOS: its last word may be cut too, so it is left out.
 */
export function textIdsVocabulary(
  textIds: Int32Array,
  T: number,
  max = MAX_VOCABULARY,
): string[] | null {
  const words = new VocabularyCollector(max);
  const bytes = new Uint8Array(T);
  for (let at = 0; at + T <= textIds.length && words.complete; at += T) {
    let n = 0, ended = false;
    for (let i = at; i < at + T; i++) {
      const id = textIds[i];
      if (id < 256) bytes[n++] = id;
      else if (id === EOS) ended = true; // PAD and BOS say nothing
    }
    let text = bytesDecoder.decode(bytes.subarray(0, n));
    if (!ended) text = text.replace(/[\p{L}\p{N}]+$/u, "");
    words.add(text);
  }
  return words.words();
}

/** Metadata holding the vocabulary, or nothing when there is none to record. */
export function vocabularyMetadata(words: string[] | null): Record<string, string> {
  return words === null ? {} : { [VOCABULARY_KEY]: words.join(" ") };
}

/** The vocabulary a checkpoint records; null for one without it (then nothing is checked). */
export function recordedVocabulary(metadata: Record<string, string>): Set<string> | null {
  const s = metadata[VOCABULARY_KEY];
  if (typeof s !== "string") return null;
  return new Set(s.split(" ").filter((w) => w !== ""));
}

/** The prompts' words outside the vocabulary, each once, in the order they first appear. */
export function unknownWords(prompts: readonly string[], vocabulary: Set<string>): string[] {
  const out = new Set<string>();
  for (const p of prompts) {
    for (const w of captionWords(p)) if (!vocabulary.has(w)) out.add(w);
  }
  return [...out];
}

/**
 * The note `generate` and `eval` print to stderr for prompts with words the model's training
 * captions never had; null when every word was seen or the model records no vocabulary.
 */
export function unknownWordsNote(
  prompts: readonly string[],
  metadata: Record<string, string>,
): string | null {
  const vocabulary = recordedVocabulary(metadata);
  if (!vocabulary) return null;
  const unknown = unknownWords(prompts, vocabulary);
  if (unknown.length === 0) return null;
  const shown = unknown.length > 20
    ? `${unknown.slice(0, 20).join(", ")} and ${unknown.length - 20} more`
    : unknown.join(", ");
  return `note: words not seen in training: ${shown} (the image is still generated)`;
}
