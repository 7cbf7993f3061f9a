// Caption → text ids, exactly as DESIGN.md §4: ids 0–255 are UTF-8 bytes, then PAD, BOS, EOS.
// A caption becomes [BOS] bytes… [EOS], cut to T ids and left-padded with PAD, so every caption
// ends right before the image. The empty caption is [BOS, EOS], the null condition for CFG.

export const PAD = 256;
export const BOS = 257;
export const EOS = 258;
/** Size of the text vocabulary (`text.embed` has this many rows). */
export const TEXT_VOCAB = 259;

const utf8 = new TextEncoder();

/** Writes the T ids of one caption into `out` (length T); returns `out`. */
export function captionIds(caption: string, T: number, out = new Int32Array(T)): Int32Array {
  if (!Number.isInteger(T) || T < 2) throw new RangeError(`text length T must be ≥ 2, got ${T}`);
  if (out.length !== T) throw new RangeError(`captionIds: out has ${out.length} ids, not ${T}`);
  const bytes = utf8.encode(caption);
  // §4 cuts the whole sequence [BOS] bytes [EOS] to its first T ids, so a caption longer than
  // T - 2 bytes loses its EOS along with its tail.
  const n = Math.min(T, bytes.length + 2);
  const pad = T - n;
  out.fill(PAD, 0, pad);
  out[pad] = BOS;
  const nBytes = Math.min(bytes.length, n - 1);
  out.set(bytes.subarray(0, nBytes), pad + 1);
  if (bytes.length + 2 <= T) out[T - 1] = EOS;
  return out;
}

/** Text ids for a batch of captions, row-major [B, T]. */
export function batchCaptionIds(captions: readonly string[], T: number): Int32Array {
  const ids = new Int32Array(captions.length * T);
  captions.forEach((c, i) => captionIds(c, T, ids.subarray(i * T, (i + 1) * T)));
  return ids;
}

/** The caption that ids encode (PAD, BOS and EOS dropped); for logs and tests. */
export function idsToCaption(ids: ArrayLike<number>): string {
  const bytes: number[] = [];
  for (let i = 0; i < ids.length; i++) if (ids[i] < 256) bytes.push(ids[i]);
  return new TextDecoder().decode(new Uint8Array(bytes));
}
