// Token shards (DESIGN §5): what `vmambar tokenize` writes and `vmambar train` reads. Each is a
// safetensors file holding `indices` i32 [N, L] (every image's multi-scale code indices, scales in
// order, raster order within a scale: L = Σ pn²) and `text_ids` i32 [N, T] (captions as §4 ids),
// with metadata naming the tokenizer by the SHA-256 of its file, so training can refuse tokens
// made by another tokenizer.
import { join } from "node:path";
import { UserError } from "../errors.ts";
import { readSafetensors, stTensor, writeSafetensors } from "../io/safetensors.ts";

export interface TokenShardInfo {
  /** Hex SHA-256 of the tokenizer checkpoint that made the indices. */
  tokenizerSha256: string;
  /** The tokenizer's scales (pn per scale) and codebook size. */
  scales: number[];
  vocab: number;
  textLength: number;
  /** Where the images came from, for the record. */
  source: string;
}

export interface TokenShard extends TokenShardInfo {
  path: string;
  count: number;
  /** [count, L] row-major. */
  indices: Int32Array;
  /** [count, T] row-major. */
  textIds: Int32Array;
}

export const tokenShardName = (i: number) => `${String(i).padStart(5, "0")}.safetensors`;

export async function writeTokenShard(
  path: string,
  info: TokenShardInfo,
  indices: Int32Array,
  textIds: Int32Array,
): Promise<void> {
  const L = info.scales.reduce((a, p) => a + p * p, 0);
  const count = indices.length / L;
  await writeSafetensors(
    path,
    {
      indices: stTensor(indices, [count, L]),
      text_ids: stTensor(textIds, [count, info.textLength]),
    },
    {
      format: "vmambar",
      kind: "tokens",
      tokenizer_sha256: info.tokenizerSha256,
      scales: JSON.stringify(info.scales),
      vocab: String(info.vocab),
      text_length: String(info.textLength),
      count: String(count),
      source: info.source,
    },
  );
}

/** The token shard files of a directory, sorted; none is a one-line error. */
export function listTokenShards(dir: string): string[] {
  let names: string[];
  try {
    names = [...Deno.readDirSync(dir)]
      .filter((e) => e.isFile && /^\d+\.safetensors$/.test(e.name))
      .map((e) => e.name);
  } catch {
    throw new UserError(`${dir}: no such directory of token shards`);
  }
  if (names.length === 0) throw new UserError(`${dir} holds no token shards (vmambar tokenize)`);
  return names.sort().map((n) => join(dir, n));
}

/**
 * Reads a token shard. With `tokenizerSha256`, refuses a shard made by another tokenizer:
 * indices only mean something to the codebook and decoder that made them.
 */
export async function readTokenShard(
  path: string,
  expect?: { tokenizerSha256: string; tokenizer: string },
): Promise<TokenShard> {
  const { metadata: m, tensors } = await readSafetensors(path);
  if (m.format !== "vmambar" || m.kind !== "tokens") {
    throw new UserError(`${path} is not a vmambar token shard (kind ${m.kind ?? "missing"})`);
  }
  if (expect && m.tokenizer_sha256 !== expect.tokenizerSha256) {
    throw new UserError(
      `${path} was made by another tokenizer (sha256 ${
        (m.tokenizer_sha256 ?? "none").slice(0, 12)
      }…) than ${expect.tokenizer} (${expect.tokenizerSha256.slice(0, 12)}…): ` +
        `re-run vmambar tokenize with this tokenizer`,
    );
  }
  const indices = tensors.get("indices"), text = tensors.get("text_ids");
  if (indices?.dtype !== "I32" || text?.dtype !== "I32" || indices.shape[0] !== text.shape[0]) {
    throw new UserError(`${path}: needs I32 indices [N, L] and text_ids [N, T]`);
  }
  const i32 = (d: Uint8Array) => new Int32Array(d.slice().buffer);
  return {
    path,
    count: indices.shape[0],
    indices: i32(indices.data),
    textIds: i32(text.data),
    tokenizerSha256: m.tokenizer_sha256,
    scales: JSON.parse(m.scales),
    vocab: Number(m.vocab),
    textLength: text.shape[1],
    source: m.source ?? "",
  };
}
