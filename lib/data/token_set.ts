// Token shards held in memory for `vmambar train`: every sample's indices and text ids (a few
// hundred bytes each), read once and checked against the tokenizer, then served as seeded,
// resumable batches: epoch e visits the samples in a permutation drawn from (seed, e).
import { UserError } from "../errors.ts";
import { deriveSeed, mulberry32, shuffleInPlace } from "./random.ts";
import { PAD } from "./text.ts";
import { listTokenShards, readTokenShard } from "./token_shards.ts";

export interface TokenSet {
  count: number;
  /** [count, L] and [count, T] row-major; text ids re-cut to the model's T. */
  indices: Int32Array;
  textIds: Int32Array;
  L: number;
  T: number;
  scales: number[];
  vocab: number;
}

/**
 * Re-cuts ids of another text length to T, as §4 does a caption: the non-PAD ids (BOS, bytes,
 * EOS) cut to their first T, left-padded with PAD.
 */
export function recutTextIds(ids: ArrayLike<number>, T: number, out: Int32Array): boolean {
  const real: number[] = [];
  for (let i = 0; i < ids.length; i++) if (ids[i] !== PAD) real.push(ids[i]);
  const n = Math.min(T, real.length);
  out.fill(PAD, 0, T - n);
  for (let i = 0; i < n; i++) out[T - n + i] = real[i];
  return real.length > T;
}

/**
 * Reads every token shard of `dir`. Shards from another tokenizer than `tokenizerSha256`, or with
 * other scales or codebook than the model's, are refused with a one-line error.
 */
export async function readTokenSet(
  dir: string,
  want: { tokenizerSha256: string; tokenizer: string; scales: number[]; vocab: number; T: number },
): Promise<TokenSet & { truncated: number }> {
  const paths = listTokenShards(dir);
  const L = want.scales.reduce((a, p) => a + p * p, 0);
  const parts: { indices: Int32Array; text: Int32Array; count: number; Ts: number }[] = [];
  for (const path of paths) {
    const s = await readTokenShard(path, want);
    if (s.scales.join() !== want.scales.join() || s.vocab !== want.vocab) {
      throw new UserError(
        `${path}: scales ${s.scales.join("/")} and ${s.vocab} codes do not match the model's ` +
          `${want.scales.join("/")} and ${want.vocab}`,
      );
    }
    parts.push({ indices: s.indices, text: s.textIds, count: s.count, Ts: s.textLength });
  }
  const count = parts.reduce((a, p) => a + p.count, 0);
  if (count === 0) throw new UserError(`${dir}: the token shards hold no samples`);
  const indices = new Int32Array(count * L), textIds = new Int32Array(count * want.T);
  let at = 0, truncated = 0;
  for (const p of parts) {
    indices.set(p.indices, at * L);
    for (let i = 0; i < p.count; i++) {
      const row = textIds.subarray((at + i) * want.T, (at + i + 1) * want.T);
      if (recutTextIds(p.text.subarray(i * p.Ts, (i + 1) * p.Ts), want.T, row)) truncated++;
    }
    at += p.count;
  }
  return {
    count,
    indices,
    textIds,
    L,
    T: want.T,
    scales: want.scales,
    vocab: want.vocab,
    truncated,
  };
}

export interface BatchPosition {
  epoch: number;
  /** Samples of this epoch's permutation already served. */
  offset: number;
}

export interface TokenBatch {
  size: number;
  indices: Int32Array;
  textIds: Int32Array;
  /** Where the next batch starts (save it with a checkpoint to resume exactly). */
  position: BatchPosition;
}

/** Seeded batches over a token set, resumable from a position; epochs wrap inside a batch. */
export class TokenBatches {
  #perm: Uint32Array = new Uint32Array();
  #permEpoch = -1;
  constructor(readonly set: TokenSet, readonly seed: number, public position: BatchPosition) {}

  #order(epoch: number): Uint32Array {
    if (this.#permEpoch !== epoch) {
      const order = Array.from({ length: this.set.count }, (_, i) => i);
      shuffleInPlace(order, mulberry32(deriveSeed(this.seed, "epoch", epoch)));
      this.#perm = Uint32Array.from(order);
      this.#permEpoch = epoch;
    }
    return this.#perm;
  }

  next(size: number): TokenBatch {
    const { L, T } = this.set;
    const indices = new Int32Array(size * L), textIds = new Int32Array(size * T);
    let { epoch, offset } = this.position;
    for (let i = 0; i < size; i++) {
      if (offset >= this.set.count) epoch++, offset = 0;
      const s = this.#order(epoch)[offset++];
      indices.set(this.set.indices.subarray(s * L, (s + 1) * L), i * L);
      textIds.set(this.set.textIds.subarray(s * T, (s + 1) * T), i * T);
    }
    this.position = { epoch, offset };
    return { size, indices, textIds, position: this.position };
  }
}
