// `vmambar train-tokenizer`: trains the multi-scale VQ-VAE of DESIGN §3 on image shards.
import { existsSync } from "node:fs";
import { UserError } from "../errors.ts";
import {
  type CommandSpec,
  intFlag,
  numberFlag,
  parseCommand,
  stringOption,
  type Values,
} from "./args.ts";
import { prepareOutputFile } from "./output.ts";
import {
  TOKENIZER_PRESETS,
  type TokenizerConfig,
  validateTokenizerConfig,
} from "../tokenizer/config.ts";
import {
  DEFAULT_TOKENIZER_SETTINGS as D,
  type TokenizerTrainingSettings,
} from "../train/tokenizer_trainer.ts";
import { runFiles } from "../train/run_files.ts";

const str = stringOption;

export const spec: CommandSpec = {
  name: "train-tokenizer",
  usage: "train-tokenizer --data SHARDS [--val SHARDS] [--preset tiny64] [--out FILE] [options]",
  summary: "Train the multi-scale residual VQ-VAE image tokenizer (DESIGN §3). Writes FILE, " +
    "FILE's .train-state.safetensors (for --resume), .metrics.jsonl and .recon.png beside it.",
  options: {
    data: str("training shards (pattern, directory, folder or manifest)", "SHARDS"),
    val: str("held-out shards for validation PSNR/SSIM and code usage", "SHARDS"),
    preset: str(
      `tokenizer preset (${Object.keys(TOKENIZER_PRESETS).join(", ")})`,
      "NAME",
      "tiny64",
    ),
    config: str("a JSON tokenizer config (fields as the presets'), over --preset", "FILE"),
    out: str("tokenizer checkpoint to write", "FILE", "tokenizer.safetensors"),
    resume: { type: "boolean", help: "continue the run saved in --out and its train-state" },
    force: { type: "boolean", help: "start over even if --out exists" },
    batch: str("images per step", "N", String(D.batchSize)),
    steps: str("optimizer steps (the cosine schedule's length)", "N", String(D.steps)),
    lr: str("peak learning rate", "LR", String(D.lr)),
    warmup: str("linear warmup steps", "N", String(D.warmup)),
    "min-lr-ratio": str("final learning rate as a fraction of --lr", "R", String(D.minLrRatio)),
    "weight-decay": str("AdamW weight decay of conv weights", "W", String(D.weightDecay)),
    "grad-clip": str("clip the global gradient norm (0: off)", "G", String(D.gradClip)),
    "restart-every": str(
      "restart codes unused for this many steps (0: off)",
      "N",
      String(D.restartEvery),
    ),
    seed: str("seed of the weights, data order and restarts", "S", String(D.seed)),
    "log-every": str("steps between metrics lines (one GPU readback each)", "N", "50"),
    "val-every": str("steps between validations (0: only at the end)", "N", "1000"),
    "grid-every": str("steps between reconstruction grids of --val images", "N", "250"),
    "checkpoint-every": str("steps between checkpoints (0: only at the end)", "N", "500"),
    "max-minutes": str("stop and save after this many minutes", "M"),
    "stop-after": str("stop and save after this many steps of this run (resume later)", "N"),
    fit: { type: "boolean", help: "shorten --steps so the schedule ends within --max-minutes" },
    "val-images": str("validate on at most this many --val images", "N", "1000"),
    "max-skipped": str("stop when more than this share of samples is unreadable", "R", "0.1"),
    "shuffle-buffer": str("samples held for shuffling", "N", "2000"),
    "decode-threads": str("images decoded at once", "N", "8"),
  },
  more: "example: vmambar train-tokenizer --data data/shapes --val data/shapes/val --out " +
    "models/tokenizer-tiny64.safetensors --max-minutes 30",
};

async function readConfig(values: Values): Promise<TokenizerConfig> {
  const preset = String(values.preset);
  const base = TOKENIZER_PRESETS[preset];
  if (!base) {
    throw new UserError(
      `unknown --preset ${preset} (one of: ${Object.keys(TOKENIZER_PRESETS).join(", ")})`,
    );
  }
  if (typeof values.config !== "string") return base;
  let text: string;
  try {
    text = await Deno.readTextFile(values.config);
  } catch {
    throw new UserError(`--config ${values.config}: cannot read it`);
  }
  let json: Partial<TokenizerConfig>;
  try {
    json = JSON.parse(text);
  } catch {
    throw new UserError(`--config ${values.config}: not JSON`);
  }
  return validateTokenizerConfig({ ...base, ...json }, values.config);
}

function readSettings(v: Values): TokenizerTrainingSettings {
  const settings: TokenizerTrainingSettings = {
    ...D,
    batchSize: intFlag(v, "batch", 1, 4096),
    steps: intFlag(v, "steps", 1, 1e9),
    lr: numberFlag(v, "lr", { above: 0, max: 1 }),
    warmup: intFlag(v, "warmup", 0, 1e9),
    minLrRatio: numberFlag(v, "min-lr-ratio", { min: 0, max: 1 }),
    weightDecay: numberFlag(v, "weight-decay", { min: 0 }),
    gradClip: numberFlag(v, "grad-clip", { min: 0 }),
    restartEvery: intFlag(v, "restart-every", 0, 1e9),
    seed: intFlag(v, "seed", 0, 2 ** 32 - 1),
  };
  return settings;
}

/**
 * Checks the run's files before any work: a fresh run refuses an earlier run's checkpoint or
 * train-state unless --force, and every file must be writable where it goes.
 */
function checkRunOutputs(out: string, resume: boolean, force: boolean): void {
  if (resume && force) {
    throw new UserError(
      "--resume continues the run saved in --out and --force starts it over: give one of them",
    );
  }
  const files = runFiles(out);
  for (const path of [out, files.state, files.metrics, files.grid]) {
    prepareOutputFile(path, { force: true, flag: "--out" });
  }
  if (!resume && !force && (existsSync(out) || existsSync(files.state))) {
    throw new UserError(
      `--out ${out} holds an earlier run: pass --resume to continue it or --force to start over`,
    );
  }
}

export async function main(argv: string[]): Promise<void> {
  const parsed = parseCommand(spec, argv);
  if (!parsed) return;
  const v = parsed.values;
  if (typeof v.data !== "string" || v.data === "") {
    throw new UserError("--data is required (see vmambar train-tokenizer --help)");
  }
  const out = String(v.out), resume = v.resume === true, force = v.force === true;
  checkRunOutputs(out, resume, force);
  const maxMinutes = v["max-minutes"] === undefined
    ? Infinity
    : numberFlag(v, "max-minutes", { above: 0 });
  if (v.fit && !Number.isFinite(maxMinutes)) throw new UserError("--fit needs --max-minutes");
  const cfg = await readConfig(v);
  const settings = readSettings(v);
  if (!resume && settings.warmup >= settings.steps) {
    console.error(
      `train-tokenizer: warning: --warmup ${settings.warmup} ≥ --steps ${settings.steps}, so the ` +
        `learning rate never reaches --lr ${settings.lr}; give a smaller --warmup`,
    );
  }
  const options = {
    data: v.data,
    val: typeof v.val === "string" ? v.val : undefined,
    out,
    cfg,
    settings,
    resume,
    force,
    logEvery: intFlag(v, "log-every", 1),
    valEvery: intFlag(v, "val-every", 0),
    gridEvery: intFlag(v, "grid-every", 0),
    checkpointEvery: intFlag(v, "checkpoint-every", 0),
    maxMinutes,
    stopAfter: v["stop-after"] === undefined ? Infinity : intFlag(v, "stop-after", 1, 1e9),
    fitSchedule: v.fit === true,
    valImages: intFlag(v, "val-images", 1, 1e6),
    maxSkipped: numberFlag(v, "max-skipped", { min: 0, max: 1 }),
    shuffleBuffer: intFlag(v, "shuffle-buffer", 0, 1e6),
    decodeConcurrency: intFlag(v, "decode-threads", 1, 256),
  };
  const { initGpu } = await import("../gpu/mod.ts");
  await initGpu();
  const { runTokenizerTraining } = await import("../train/tokenizer_run.ts");
  const r = await runTokenizerTraining(options);
  const files = runFiles(options.out);
  if (r.stopped) {
    console.log(`wrote ${options.out}, ${files.state}, ${files.metrics}`);
    throw new UserError(
      `stopped by ${r.stopped} at step ${r.steps} and saved: run the same command with ` +
        "--resume to continue",
    );
  }
  const parts = [`trained to step ${r.steps} in ${(r.seconds / 60).toFixed(1)} min`];
  if (r.val) {
    parts.push(
      `val PSNR ${r.val.psnr.toFixed(2)} dB, SSIM ${r.val.ssim.toFixed(4)}, codes in use ` +
        `${(100 * r.val.usageLast).toFixed(1)}% at the last scale, ` +
        `${(100 * r.val.usageAll).toFixed(1)}% overall (${r.val.images} images)`,
    );
  } else if (r.last) parts.push(`train PSNR ${r.last.psnr.toFixed(2)} dB`);
  console.log(`${parts.join("; ")}\nwrote ${options.out}, ${files.state}, ${files.metrics}`);
}
