// Tokenizer configurations (DESIGN §3). A VAR tokenizer of any structure is described by one of
// these; the two presets are the project's defaults.
import { UserError } from "../errors.ts";

export interface TokenizerConfig {
  /** Image side in pixels. */
  image: number;
  ch: number;
  chMult: number[];
  numResBlocks: number;
  /** Self-attention in the mid block and at the deepest level (VAR's using_mid_sa, using_sa). */
  midAttention: boolean;
  deepestAttention: boolean;
  /** Channels of the quantised map (VAR's Cvae / z_channels). */
  cvae: number;
  /** Codebook size V. */
  vocab: number;
  /** Side of each scale's token map, ascending; the last equals the encoder map's side. */
  scales: number[];
  /** φ's residual ratio r and the number of shared φ convs (VAR: 0.5 and 4). */
  quantResi: number;
  shareQuantResi: number;
  /** Commitment weight β. */
  beta: number;
}

const common = { quantResi: 0.5, shareQuantResi: 4, beta: 0.25 };

export const TOKENIZER_PRESETS: Record<string, TokenizerConfig> = {
  tiny64: {
    image: 64,
    ch: 64,
    chMult: [1, 2, 2, 4],
    numResBlocks: 2,
    midAttention: false,
    deepestAttention: false,
    cvae: 16,
    vocab: 512,
    scales: [1, 2, 3, 4, 6, 8],
    ...common,
  },
  cpu32: {
    image: 32,
    ch: 16,
    chMult: [1, 2, 2],
    numResBlocks: 1,
    midAttention: false,
    deepestAttention: false,
    cvae: 8,
    vocab: 256,
    scales: [1, 2, 4, 8],
    ...common,
  },
  base256: {
    image: 256,
    ch: 128,
    chMult: [1, 1, 2, 2, 4],
    numResBlocks: 2,
    midAttention: true,
    deepestAttention: true,
    cvae: 32,
    vocab: 4096,
    scales: [1, 2, 3, 4, 5, 6, 8, 10, 13, 16],
    ...common,
  },
};

/** Tokens per image: Σ pn². */
export function tokenCount(cfg: TokenizerConfig): number {
  return cfg.scales.reduce((a, p) => a + p * p, 0);
}

/** Checks a config's internal consistency; a bad one is a one-line error naming `source`. */
export function validateTokenizerConfig(cfg: TokenizerConfig, source: string): TokenizerConfig {
  const bad = (why: string) => new UserError(`${source}: ${why}`);
  const ints = ["image", "ch", "numResBlocks", "cvae", "vocab", "shareQuantResi"] as const;
  for (const k of ints) {
    if (!Number.isInteger(cfg[k]) || cfg[k] < 1) throw bad(`${k} must be a positive integer`);
  }
  if (!Array.isArray(cfg.chMult) || cfg.chMult.length < 1) throw bad("chMult must be a list");
  if (!Array.isArray(cfg.scales) || cfg.scales.length < 1) throw bad("scales must be a list");
  const side = cfg.image / 2 ** (cfg.chMult.length - 1);
  if (!Number.isInteger(side)) {
    throw bad(`image ${cfg.image} does not halve ${cfg.chMult.length - 1} times`);
  }
  if (cfg.scales.at(-1) !== side) {
    throw bad(`the last scale must be the encoder map's side ${side}, got ${cfg.scales.at(-1)}`);
  }
  if (cfg.scales.some((p, i) => i > 0 && p <= cfg.scales[i - 1])) throw bad("scales must ascend");
  return cfg;
}
