// Opening a tokenizer checkpoint (DESIGN §5): the config from its metadata, checked, then the
// VQVAE built from it with the stored parameters, and the file's SHA-256 that token shards record.
import { UserError } from "../errors.ts";
import { loadParameters, readCheckpoint } from "../io/checkpoint.ts";
import { type TokenizerConfig, validateTokenizerConfig } from "./config.ts";
import { VQVAE } from "./vqvae.ts";

export interface LoadedTokenizer {
  vq: VQVAE;
  cfg: TokenizerConfig;
  /** Hex SHA-256 of the checkpoint file's bytes. */
  sha256: string;
  metadata: Record<string, string>;
}

export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Hex SHA-256 of a file; a missing file is a one-line error. */
export async function fileSha256(path: string): Promise<string> {
  try {
    return await sha256Hex(await Deno.readFile(path));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new UserError(`${path}: no such file`);
    throw e;
  }
}

/** Reads a tokenizer checkpoint onto the GPU (initGpu() first). Bad files are one-line errors. */
export async function loadTokenizer(path: string): Promise<LoadedTokenizer> {
  const ckpt = await readCheckpoint(path, "tokenizer");
  const cfg = ckpt.config as TokenizerConfig;
  if (!cfg || typeof cfg !== "object") throw new UserError(`${path}: its config metadata is empty`);
  validateTokenizerConfig(cfg, path);
  const vq = new VQVAE(cfg);
  try {
    loadParameters(vq, ckpt.tensors, path);
  } catch (e) {
    vq.dispose();
    throw e;
  }
  return { vq, cfg, sha256: await fileSha256(path), metadata: ckpt.metadata };
}
