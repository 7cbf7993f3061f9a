// Tokenizer configurations (DESIGN §3). A VAR tokenizer of any structure is described by one of
// these; the presets are the project's defaults.
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
  /**
   * GroupNorm's group count: each norm takes the largest divisor of its channels not above this.
   * Absent: VAR's 32 (which leaves one channel per group at widths up to 32).
   */
  normGroups?: number;
}

/** The config's GroupNorm group limit (VAR's 32 when it has none). */
export function normGroups(cfg: TokenizerConfig): number {
  return cfg.normGroups ?? 32;
}

const common = { quantResi: 0.5, shareQuantResi: 4, beta: 0.25 };

// A first run on the CPU (README). normGroups 8 keeps 2–4 channels in each GroupNorm group
// (VAR's 32 leaves one at these widths, which normalises flat colours away).
const CPU32: TokenizerConfig = {
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
  normGroups: 8,
};

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
  cpu32: CPU32,
  // cpu32's token grid (8 × 8 map, 85 tokens, V 256, Cvae 8) from 16-px images: one level fewer,
  // a quarter of the pixels; the cpu32 model preset fits it.
  cpu16: { ...CPU32, image: 16, chMult: [1, 2], scales: [1, 2, 4, 8], normGroups: 4 },
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
  if (
    cfg.normGroups !== undefined && (!Number.isInteger(cfg.normGroups) || cfg.normGroups < 1)
  ) {
    throw bad("normGroups must be a positive integer (or absent: 32, VAR's)");
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
