// VMambAR's configuration (DESIGN §4): the presets, `--set field=value` overrides, and checks.
// Field names are the ones a user types (`--set d=192,n_layers=8`) and the checkpoint stores.
import { UserError } from "../errors.ts";

export type Arch = "hybrid" | "transformer";

export interface ModelConfig {
  /** "hybrid": Mamba blocks + one shared GSA; "transformer": the LLaMA-style teacher. */
  arch: Arch;
  d: number;
  n_layers: number;
  /** A GSA call before every block i > 0 with i % gsa_every == 0 (hybrid only). */
  gsa_every: number;
  heads: number;
  text_layers: number;
  /** T: text ids per caption (the prefix of the backbone's sequence). */
  text_length: number;
  d_state: number;
  d_conv: number;
  expand: number;
  /** From the tokenizer: scales (pn per scale), codebook size V and code width Cvae. */
  scales: number[];
  vocab: number;
  cvae: number;
  /**
   * Scales 2..ar_scales+1 are autoregressive within themselves: each token, in raster order, also
   * sees the code of the one before it (`prev_embed`) and attends only to those before it, so
   * generation draws them one at a time. 0 (or absent, as in older checkpoints): VAR's scales.
   */
  ar_scales?: number;
}

/** The config's ar_scales (0 when absent). */
export const arScales = (c: Pick<ModelConfig, "ar_scales">) => c.ar_scales ?? 0;

const mamba = { d_state: 16, d_conv: 4, expand: 2 };
// The tiny64 tokenizer's token grid; a model trained on another tokenizer takes its fields.
const tiny64Tokens = { scales: [1, 2, 3, 4, 6, 8], vocab: 512, cvae: 16 };
// The cpu32 tokenizer's token grid (32-px images, an 8 × 8 map, 85 tokens).
const cpu32Tokens = { scales: [1, 2, 4, 8], vocab: 256, cvae: 8 };
const base256Tokens = { scales: [1, 2, 3, 4, 5, 6, 8, 10, 13, 16], vocab: 4096, cvae: 32 };

export const MODEL_PRESETS: Record<string, ModelConfig> = {
  tiny64: {
    arch: "hybrid",
    d: 256,
    n_layers: 12,
    gsa_every: 3,
    heads: 4,
    text_layers: 2,
    text_length: 96,
    ...mamba,
    ...tiny64Tokens,
  },
  // A first run on the CPU (README): trains in minutes on Mesa's lavapipe. T 96 as `tokenize`
  // gives 32-px tokenizers: shorter would cut a third of the shapes world's captions.
  cpu32: {
    arch: "hybrid",
    d: 64,
    n_layers: 4,
    gsa_every: 2,
    heads: 2,
    text_layers: 1,
    text_length: 96,
    ...mamba,
    ...cpu32Tokens,
  },
  base256: {
    arch: "hybrid",
    d: 1024,
    n_layers: 24,
    gsa_every: 6,
    heads: 16,
    text_layers: 4,
    text_length: 128,
    ...mamba,
    ...base256Tokens,
  },
};

const INT_FIELDS = [
  "d",
  "n_layers",
  "gsa_every",
  "heads",
  "text_layers",
  "text_length",
  "d_state",
  "d_conv",
  "expand",
  "vocab",
  "cvae",
] as const;

/** Tokens per image: L = Σ pn². */
export const imageTokens = (c: Pick<ModelConfig, "scales">) =>
  c.scales.reduce((a, p) => a + p * p, 0);

/** How many times the shared GSA block is called (one gsa_out each). */
export function gsaCalls(c: ModelConfig): number {
  if (c.arch !== "hybrid") return 0;
  let n = 0;
  for (let i = 1; i < c.n_layers; i++) if (i % c.gsa_every === 0) n++;
  return n;
}

/**
 * Applies `field=value,field=value` overrides (numbers, `arch`, or `scales=1/2/4`). An unknown
 * field or a bad value is a one-line error naming it.
 */
export function applyOverrides(base: ModelConfig, set: string): ModelConfig {
  const out: ModelConfig = { ...base, scales: [...base.scales] };
  for (const item of set.split(",").map((s) => s.trim()).filter(Boolean)) {
    const eq = item.indexOf("=");
    if (eq < 0) throw new UserError(`--set ${item}: expected field=value`);
    const key = item.slice(0, eq).trim(), value = item.slice(eq + 1).trim();
    if (key === "arch") {
      if (value !== "hybrid" && value !== "transformer") {
        throw new UserError(`--set arch=${value}: arch is hybrid or transformer`);
      }
      out.arch = value;
    } else if (key === "ar_scales") {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 0) {
        throw new UserError(`--set ar_scales=${value}: not a non-negative integer`);
      }
      out.ar_scales = n;
    } else if (key === "scales") {
      out.scales = value.split("/").map(Number);
    } else if ((INT_FIELDS as readonly string[]).includes(key)) {
      const n = Number(value);
      if (!Number.isInteger(n)) throw new UserError(`--set ${key}=${value}: not an integer`);
      (out as unknown as Record<string, number>)[key] = n;
    } else {
      throw new UserError(
        `--set ${key}: unknown field (one of: arch, scales, ar_scales, ${INT_FIELDS.join(", ")})`,
      );
    }
  }
  return out;
}

/** Checks a config's consistency; a bad one is a one-line error naming `source`. */
export function validateModelConfig(c: ModelConfig, source: string): ModelConfig {
  const bad = (why: string) => new UserError(`${source}: ${why}`);
  if (!c || typeof c !== "object") throw bad("no model config");
  if (c.arch !== "hybrid" && c.arch !== "transformer") throw bad(`unknown arch ${c.arch}`);
  for (const k of INT_FIELDS) {
    if (!Number.isInteger(c[k]) || c[k] < 1) throw bad(`${k} must be a positive integer`);
  }
  if (c.text_length < 2) throw bad("text_length must be at least 2 (BOS and EOS)");
  if (!Array.isArray(c.scales) || c.scales.length < 1) throw bad("scales must be a list");
  if (c.scales.some((p, i) => !Number.isInteger(p) || p < 1 || (i > 0 && p <= c.scales[i - 1]))) {
    throw bad(`scales must be ascending positive integers, got ${c.scales.join("/")}`);
  }
  const ar = c.ar_scales ?? 0;
  if (!Number.isInteger(ar) || ar < 0 || ar > c.scales.length - 1) {
    throw bad(
      `ar_scales must be an integer from 0 to ${c.scales.length - 1} (scales after the first)`,
    );
  }
  if (c.d % c.heads !== 0) throw bad(`d ${c.d} does not split into ${c.heads} heads`);
  // GSA's heads are 2d/H wide, the text encoder's and the teacher's d/H; 2D RoPE turns pairs in
  // two halves, so the backbone's head dim must be a multiple of 4, the text one's of 2.
  const backboneHead = c.arch === "hybrid" ? (2 * c.d) / c.heads : c.d / c.heads;
  if (backboneHead % 4 !== 0 || c.d / c.heads % 4 !== 0) {
    throw bad(`head dim ${c.d / c.heads} (d / heads) must be a multiple of 4`);
  }
  if (backboneHead > 256) throw bad(`head dim ${backboneHead} is over 256: use more heads`);
  if (c.d_state > 256 || 256 % c.d_state !== 0) throw bad("d_state must divide 256");
  return c;
}

/** The config a preset name and `--set` overrides give. */
export function modelConfig(preset: string, set = ""): ModelConfig {
  const base = MODEL_PRESETS[preset];
  if (!base) {
    throw new UserError(
      `unknown --preset ${preset} (one of: ${Object.keys(MODEL_PRESETS).join(", ")})`,
    );
  }
  return validateModelConfig(
    applyOverrides(base, set),
    set ? `--set ${set}` : `--preset ${preset}`,
  );
}
