import {
  batchCaptionIds,
  BOS,
  captionIds,
  EOS,
  idsToCaption,
  PAD,
  TEXT_VOCAB,
} from "../lib/data/text.ts";

function eq(actual: ArrayLike<number>, expected: number[], what: string): void {
  const a = Array.from(actual);
  if (a.length !== expected.length || a.some((v, i) => v !== expected[i])) {
    throw new Error(`${what}: got [${a}], want [${expected}]`);
  }
}

Deno.test("text ids: special ids follow the 256 bytes", () => {
  eq([PAD, BOS, EOS, TEXT_VOCAB], [256, 257, 258, 259], "ids");
});

Deno.test("text ids: [BOS] bytes [EOS], left-padded with PAD", () => {
  eq(captionIds("hi", 6), [PAD, PAD, BOS, 104, 105, EOS], "hi");
  eq(captionIds("hi", 4), [BOS, 104, 105, EOS], "exact fit");
});

Deno.test("text ids: the empty caption is [BOS, EOS]", () => {
  eq(captionIds("", 2), [BOS, EOS], "T=2");
  eq(captionIds("", 5), [PAD, PAD, PAD, BOS, EOS], "T=5");
});

Deno.test("text ids: bytes are UTF-8", () => {
  eq(captionIds("é✓", 7), [BOS, 0xc3, 0xa9, 0xe2, 0x9c, 0x93, EOS], "utf8");
  if (idsToCaption(captionIds("é✓ ok", 12)) !== "é✓ ok") throw new Error("round trip");
});

Deno.test("text ids: a long caption is cut to its first T ids (EOS falls off)", () => {
  eq(captionIds("abcdef", 4), [BOS, 97, 98, 99], "cut");
  eq(captionIds("abc", 4), [BOS, 97, 98, 99], "one byte too long");
  eq(captionIds("ab", 4), [BOS, 97, 98, EOS], "fits");
});

Deno.test("text ids: batches are rows of T", () => {
  eq(batchCaptionIds(["a", ""], 3), [BOS, 97, EOS, PAD, BOS, EOS], "batch");
});

Deno.test("text ids: T below 2 is refused", () => {
  let threw = false;
  try {
    captionIds("x", 1);
  } catch {
    threw = true;
  }
  if (!threw) throw new Error("T=1 accepted");
});
