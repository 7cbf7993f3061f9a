// VAR interop (DESIGN §3, issue 5 item 6): a VAR `VQVAE` state dict, as a released tokenizer's
// .pth converted to safetensors holds it, plus a JSON config in VAR's key names or ours, become a
// vmambar tokenizer checkpoint. Every parameter must be there with its shape, and a name that
// differs is explained by the config setting that decides it; VAR's buffers that inference never
// reads, and tensors that are no parameters (integer, or outside the VQVAE), are skipped and listed.
import { basename } from "node:path";
import { UserError } from "../errors.ts";
import { loadParameters, saveCheckpoint } from "../io/checkpoint.ts";
import { readSafetensors, type StTensor, stTensor, toFloat32 } from "../io/safetensors.ts";
import { type TokenizerConfig, validateTokenizerConfig } from "./config.ts";
import { VQVAE } from "./vqvae.ts";

/** Each config field under our name first, then VAR's names for it (VQVAE, Encoder, VAR args). */
const ALIASES: Record<keyof TokenizerConfig, string[]> = {
  image: ["image", "image_size", "img_size", "resolution", "data_load_reso"],
  ch: ["ch"],
  chMult: ["chMult", "ch_mult"],
  numResBlocks: ["numResBlocks", "num_res_blocks"],
  midAttention: ["midAttention", "using_mid_sa"],
  deepestAttention: ["deepestAttention", "using_sa"],
  cvae: ["cvae", "Cvae", "z_channels"],
  vocab: ["vocab", "V", "vocab_size"],
  scales: ["scales", "v_patch_nums", "patch_nums"],
  quantResi: ["quantResi", "quant_resi"],
  shareQuantResi: ["shareQuantResi", "share_quant_resi"],
  beta: ["beta"],
  normGroups: ["normGroups", "norm_groups"],
};

/** Fields a config may leave out with no default filled in (the VQVAE applies VAR's). */
const OPTIONAL = new Set(["image", "normGroups"]);

/** What VAR's VQVAE fixes or defaults to, for fields a config leaves out. */
const VAR_DEFAULTS: Partial<TokenizerConfig> = {
  numResBlocks: 2,
  midAttention: true,
  deepestAttention: true,
  quantResi: 0.5,
  shareQuantResi: 4,
  beta: 0.25,
};

/** VAR options that must hold the value vmambar implements. */
const FIXED: Record<string, unknown> = {
  using_znorm: false,
  quant_conv_ks: 3,
  in_channels: 3,
  double_z: false,
};

/** VAR options with no effect on encoding and decoding. */
const INERT = new Set(["dropout", "test_mode", "default_qresi_counts"]);

/** VAR buffers that encoding and decoding never read. */
const UNUSED_BUFFERS: Record<string, string> = {
  "quantize.ema_vocab_hit_SV": "VAR's running code-usage counts",
};

const FLOAT_DTYPES = new Set(["F32", "F16", "BF16", "F64"]);

/** The top-level modules of VAR's VQVAE: a name outside them is no parameter of it. */
const VQVAE_MODULES = /^(encoder|decoder|quantize|quant_conv|post_quant_conv)\./;

export interface VarConfig {
  cfg: TokenizerConfig;
  /** VAR's share_quant_resi: 0 (one φ per scale), 1 (one φ) or n ≥ 2 (n shared φ). */
  varShare: number;
}

/** A TokenizerConfig from a JSON object in our or VAR's key names; anything off is one line. */
export function tokenizerConfigFromJson(json: unknown, source: string): VarConfig {
  const bad = (why: string) => new UserError(`${source}: ${why}`);
  if (!json || typeof json !== "object" || Array.isArray(json)) throw bad("not a JSON object");
  const raw = json as Record<string, unknown>;
  const known = new Set([...Object.values(ALIASES).flat(), ...Object.keys(FIXED), ...INERT]);
  const unknown = Object.keys(raw).filter((k) => !known.has(k));
  if (unknown.length) {
    throw bad(`unknown key ${unknown.join(", ")} (known: ${[...known].join(", ")})`);
  }
  for (const [k, want] of Object.entries(FIXED)) {
    if (k in raw && raw[k] !== want) {
      throw bad(`${k} must be ${want}, vmambar implements only that`);
    }
  }
  const picked: Record<string, unknown> = {};
  for (const [field, names] of Object.entries(ALIASES)) {
    const present = names.filter((n) => n in raw);
    const values = new Set(present.map((n) => JSON.stringify(raw[n])));
    if (values.size > 1) throw bad(`${present.join(" and ")} disagree`);
    if (present.length) picked[field] = raw[present[0]];
    else if (field in VAR_DEFAULTS) picked[field] = VAR_DEFAULTS[field as keyof TokenizerConfig];
    else if (!OPTIONAL.has(field)) throw bad(`${names.join(" or ")} is missing`);
  }
  const posInts = (k: string) => {
    const v = picked[k];
    if (!Array.isArray(v) || v.length < 1 || !v.every((x) => Number.isInteger(x) && x >= 1)) {
      throw bad(`${k} must be a list of positive integers, got ${JSON.stringify(v)}`);
    }
  };
  posInts("chMult");
  posInts("scales");
  for (const k of ["midAttention", "deepestAttention"]) {
    if (typeof picked[k] !== "boolean") throw bad(`${k} must be true or false`);
  }
  for (const k of ["quantResi", "beta"]) {
    if (typeof picked[k] !== "number" || !Number.isFinite(picked[k])) {
      throw bad(`${k} must be a number`);
    }
  }
  const scales = picked.scales as number[];
  const chMult = picked.chMult as number[];
  picked.image ??= scales.at(-1)! * 2 ** (chMult.length - 1);
  // VAR's Phi uses |quant_resi|; share 0 keeps one φ per scale (or default_qresi_counts of them).
  picked.quantResi = Math.abs(picked.quantResi as number);
  const varShare = picked.shareQuantResi as number;
  if (varShare === 0) {
    const counts = raw.default_qresi_counts;
    picked.shareQuantResi = typeof counts === "number" && counts > 0 ? counts : scales.length;
  }
  return { cfg: validateTokenizerConfig(picked as unknown as TokenizerConfig, source), varShare };
}

/** VAR's φ names under share_quant_resi 0 and 1, renamed to the partially shared layout. */
function phiName(name: string, varShare: number): string {
  if (varShare === 1) {
    return name.replace(/^quantize\.quant_resi\.qresi\./, "quantize.quant_resi.qresi_ls.0.");
  }
  if (varShare === 0) {
    return name.replace(/^quantize\.quant_resi\.(\d+)\./, "quantize.quant_resi.qresi_ls.$1.");
  }
  return name;
}

export interface VarStateDict {
  /** f32 tensors under vmambar's names. */
  tensors: Map<string, StTensor>;
  /** Skipped entries, e.g. "quantize.ema_vocab_hit_SV [10, 4096] (VAR's running …)". */
  skipped: string[];
  /** How many tensors were converted to f32, by their stored dtype. */
  converted: Record<string, number>;
}

/** VAR's state dict → f32 tensors under our names; buffers and non-parameters set aside. */
export function fromVarStateDict(
  tensors: Map<string, StTensor>,
  { cfg, varShare }: VarConfig,
): VarStateDict {
  const out = new Map<string, StTensor>();
  const skipped: string[] = [];
  const converted: Record<string, number> = {};
  for (const [name, t] of tensors) {
    // A file may carry more than the state dict (test inputs, expected indices): set aside.
    const why = name in UNUSED_BUFFERS
      ? UNUSED_BUFFERS[name]
      : !FLOAT_DTYPES.has(t.dtype)
      ? `${t.dtype}, not a floating-point parameter`
      : !VQVAE_MODULES.test(name)
      ? "not a VQVAE parameter"
      : "";
    if (why) {
      skipped.push(`${name} [${t.shape.join(", ")}] (${why})`);
      continue;
    }
    const data = t.dtype === "F64"
      ? Float32Array.from(new Float64Array(t.data.slice().buffer))
      : toFloat32(t);
    if (t.dtype !== "F32") converted[t.dtype] = (converted[t.dtype] ?? 0) + 1;
    out.set(phiName(name, varShare), stTensor(data, [...t.shape]));
  }
  // φ is the identity where VAR's quant_resi is 0 (nn.Identity, no weights): a zero conv is too.
  if (cfg.quantResi <= 1e-6) {
    for (let i = 0; i < cfg.shareQuantResi; i++) {
      const p = `quantize.quant_resi.qresi_ls.${i}.`;
      out.set(
        `${p}weight`,
        stTensor(new Float32Array(cfg.cvae * cfg.cvae * 9), [cfg.cvae, cfg.cvae, 3, 3]),
      );
      out.set(`${p}bias`, stTensor(new Float32Array(cfg.cvae), [cfg.cvae]));
    }
  }
  return { tensors: out, skipped, converted };
}

/**
 * Which config settings explain a file whose names differ from the model's: each VAR setting
 * decides a family of names (attention blocks, levels, res blocks, φ convs), so the file's own
 * names say what the setting must be.
 */
export function explainNameMismatch(names: string[], cfg: TokenizerConfig): string[] {
  const indices = (re: RegExp) => new Set(names.flatMap((n) => n.match(re)?.[1] ?? []).map(Number));
  const hints: string[] = [];
  if (!names.some((n) => VQVAE_MODULES.test(n))) {
    return ["no tensor has a VQVAE name (encoder.*, decoder.*, quantize.*, …): is it VAR's?"];
  }
  const levels = indices(/^encoder\.down\.(\d+)\./).size;
  if (levels && levels !== cfg.chMult.length) {
    hints.push(
      `the file has ${levels} encoder levels, ch_mult [${cfg.chMult}] gives ` +
        `${cfg.chMult.length}: ch_mult needs ${levels} entries`,
    );
  }
  const blocks = indices(/^encoder\.down\.\d+\.block\.(\d+)\./);
  if (blocks.size && Math.max(...blocks) + 1 !== cfg.numResBlocks) {
    hints.push(
      `the file has ${Math.max(...blocks) + 1} res blocks per encoder level: ` +
        `set num_res_blocks to ${Math.max(...blocks) + 1}`,
    );
  }
  const attention = (re: RegExp, where: string, setting: string, want: boolean) => {
    const has = names.some((n) => re.test(n));
    if (has !== want) {
      hints.push(`the file has ${has ? "" : "no "}attention ${where}: set ${setting} to ${has}`);
    }
  };
  attention(
    /^(encoder|decoder)\.mid\.attn_1\./,
    "in the mid block",
    "using_mid_sa",
    cfg.midAttention,
  );
  attention(
    /^(encoder\.down|decoder\.up)\.\d+\.attn\./,
    "at the deepest level",
    "using_sa",
    cfg.deepestAttention,
  );
  // φ as stored under each share_quant_resi (phiName renames only the configured layout).
  const shared = indices(/^quantize\.quant_resi\.qresi_ls\.(\d+)\./).size;
  if (names.some((n) => n.startsWith("quantize.quant_resi.qresi."))) {
    hints.push("the file has one φ conv (quant_resi.qresi): set share_quant_resi to 1");
  } else if (indices(/^quantize\.quant_resi\.(\d+)\./).size) {
    hints.push("the file has one φ conv per scale (quant_resi.0, …): set share_quant_resi to 0");
  } else if (shared && shared !== cfg.shareQuantResi) {
    hints.push(`the file has ${shared} φ convs: set share_quant_resi to ${shared}`);
  } else if (!shared && cfg.quantResi > 1e-6) {
    hints.push(
      "the file has no φ convs (VAR's quant_resi 0 makes φ the identity): set quant_resi to 0",
    );
  }
  return hints;
}

/** Refuses a file whose parameter names differ from the model's, naming the settings to change. */
function checkNames(
  want: string[],
  tensors: Map<string, StTensor>,
  cfg: TokenizerConfig,
  source: string,
  configPath: string,
): void {
  const wanted = new Set(want);
  const missing = want.filter((n) => !tensors.has(n));
  const unexpected = [...tensors.keys()].filter((n) => !wanted.has(n));
  if (!missing.length && !unexpected.length) return;
  const some = (names: string[]) => names.slice(0, 3).join(", ") + (names.length > 3 ? "…" : "");
  const parts = [
    missing.length ? `missing ${some(missing)}` : "",
    unexpected.length ? `unexpected ${some(unexpected)}` : "",
  ].filter(Boolean);
  const hints = explainNameMismatch([...tensors.keys()], cfg);
  throw new UserError(
    `${source} does not match ${configPath}: ${parts.join("; ")}` +
      (hints.length ? ` (${hints.join("; ")})` : ""),
  );
}

export interface ImportSummary {
  cfg: TokenizerConfig;
  parameters: number;
  elements: number;
  skipped: string[];
  converted: Record<string, number>;
}

/** Reads a JSON config file; a missing or malformed one is one line. */
export async function readConfigFile(path: string): Promise<VarConfig> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new UserError(`${path}: no such file`);
    throw new UserError(`${path}: cannot read it (${(e as Error).message})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new UserError(`${path}: not valid JSON`);
  }
  return tokenizerConfigFromJson(json, path);
}

/**
 * Imports VAR's state dict at `file` with the config at `configPath` and writes a vmambar
 * tokenizer checkpoint to `out` (the GPU must be open: the parameters pass through a VQVAE).
 */
export async function importVarTokenizer(
  file: string,
  configPath: string,
  out: string,
): Promise<ImportSummary> {
  const varCfg = await readConfigFile(configPath);
  const { tensors } = await readSafetensors(file);
  const sd = fromVarStateDict(tensors, varCfg);
  const vq = new VQVAE(varCfg.cfg);
  try {
    checkNames(vq.namedParameters().map(([n]) => n), sd.tensors, varCfg.cfg, file, configPath);
    loadParameters(vq, sd.tensors, file);
    await saveCheckpoint(out, vq.namedParameters(), "tokenizer", varCfg.cfg, {
      source: `VAR VQVAE ${basename(file)}`,
    });
    const params = vq.namedParameters();
    return {
      cfg: varCfg.cfg,
      parameters: params.length,
      elements: params.reduce((a, [, p]) => a + p.size, 0),
      skipped: sd.skipped,
      converted: sd.converted,
    };
  } finally {
    vq.dispose();
  }
}
