// `vmambar train`: trains VMambAR (DESIGN §4) on token shards made by `vmambar tokenize`.
import { UserError } from "../errors.ts";
import { existsSync } from "node:fs";
import {
  applyOverrides,
  MODEL_PRESETS,
  type ModelConfig,
  modelConfig,
  validateModelConfig,
} from "../model/config.ts";
import { DEFAULT_MODEL_SETTINGS as D, type ModelTrainingSettings } from "../train/model_trainer.ts";
import {
  type CommandSpec,
  intFlag,
  numberFlag,
  parseCommand,
  stringOption,
  type Values,
} from "./args.ts";
import { resolveTokenizer } from "./defaults.ts";
import { prepareOutputFile } from "./output.ts";

const str = stringOption;

/** Training as the paper did (VAR on CC3M, 16 GPUs): base256, lr 2e-4, batch 512, 15 epochs. */
const RECIPES: Record<string, { preset: string; lr: number; batch: number; epochs: number }> = {
  cc3m: { preset: "base256", lr: 2e-4, batch: 512, epochs: 15 },
};

export const spec: CommandSpec = {
  name: "train",
  usage:
    "train --data TOKENS [--val TOKENS] [--tokenizer T] [--preset tiny64] [--out FILE] [options]",
  summary: "Train VMambAR on token shards (vmambar tokenize). Writes FILE (the EMA weights, " +
    "what generate uses), FILE's .train-state.safetensors (for --resume), .metrics.jsonl and " +
    ".samples.png beside it.",
  options: {
    data: str("token shards to train on (a directory made by vmambar tokenize)", "DIR"),
    val: str("held-out token shards for validation loss and accuracy", "DIR"),
    tokenizer: str("the tokenizer that made the shards (default: the one in models/)", "FILE"),
    preset: str(`model preset (${Object.keys(MODEL_PRESETS).join(", ")})`, "NAME", "tiny64"),
    set: str("override preset fields, e.g. d=192,n_layers=8,arch=transformer", "F=V,…"),
    recipe: str(
      `train as a paper did: ${Object.keys(RECIPES).join(", ")} (sets preset, lr, batch, steps)`,
      "NAME",
    ),
    out: str("model checkpoint to write", "FILE", "model.safetensors"),
    init: str(
      "start from this model checkpoint's weights and architecture (a new run: fresh optimizer " +
        "and schedule; e.g. to go on training or fine-tune the default model)",
      "FILE",
    ),
    resume: { type: "boolean", help: "continue the run saved beside --out" },
    force: { type: "boolean", help: "start over even if --out exists" },
    batch: str("samples per optimizer step", "N", String(D.batchSize)),
    "micro-batch": str(
      "samples per forward/backward (gradient accumulation; default: --batch)",
      "N",
    ),
    steps: str("optimizer steps (the cosine schedule's length)", "N", String(D.steps)),
    epochs: str("train this many passes over --data instead of --steps", "E"),
    lr: str("peak learning rate", "LR", String(D.lr)),
    warmup: str("linear warmup steps", "N", String(D.warmup)),
    "min-lr-ratio": str("final learning rate as a fraction of --lr", "R", String(D.minLrRatio)),
    "weight-decay": str("AdamW weight decay of matrices", "W", String(D.weightDecay)),
    "grad-clip": str("clip the global gradient norm (0: off)", "G", String(D.gradClip)),
    ema: str("decay of the weights' moving average", "D", String(D.emaDecay)),
    "caption-dropout": str(
      "share of captions replaced by the null caption",
      "P",
      String(D.captionDropout),
    ),
    seed: str("seed of the weights, data order and caption dropout", "S", String(D.seed)),
    teacher: str("distil from this model checkpoint (e.g. --set arch=transformer)", "FILE"),
    "kd-alpha": str("distillation weight α (with --teacher)", "A", "0.5"),
    "scale-weights": str(
      "loss weight of each scale's tokens, coarsest first, the last repeating, e.g. 8,4,2,1 " +
        "(default: every token alike)",
      "W,…",
    ),
    "kd-temp": str("distillation temperature τ", "T", "1"),
    "log-every": str("steps between metrics lines (one GPU readback each)", "N", "50"),
    "val-every": str("steps between validations (0: only at the end)", "N", "500"),
    "sample-every": str("steps between sample grids (0: only at the end)", "N", "1000"),
    "checkpoint-every": str("steps between checkpoints (0: only at the end)", "N", "500"),
    "max-minutes": str("stop and save after this many minutes", "M"),
    fit: { type: "boolean", help: "shorten --steps so the schedule ends within --max-minutes" },
    "stop-after": str("stop and save after this many steps of this run (resume later)", "N"),
    world: str(
      "data parallel: run as N processes under mpirun (one per GPU; README: Several GPUs)",
      "N",
    ),
  },
  more:
    "example: vmambar train --data data/tokens --val data/tokens/val --out models/model.safetensors",
};

function readSettings(v: Values, recipe?: (typeof RECIPES)[string]): ModelTrainingSettings {
  const given = (name: string) => v[name] !== spec.options[name].default;
  const positive = (name: string) => {
    const x = numberFlag(v, name);
    if (!(x > 0)) throw new UserError(`--${name} must be positive, got ${x}`);
    return x;
  };
  const unit = (name: string) => {
    const x = numberFlag(v, name);
    if (!(x >= 0 && x <= 1)) throw new UserError(`--${name} must be in [0, 1], got ${x}`);
    return x;
  };
  const batchSize = recipe && !given("batch") ? recipe.batch : intFlag(v, "batch", 1);
  const micro = v["micro-batch"] === undefined
    ? (recipe ? Math.min(32, batchSize) : batchSize)
    : intFlag(v, "micro-batch", 1);
  if (batchSize % micro !== 0) {
    throw new UserError(`--batch ${batchSize} is not a multiple of --micro-batch ${micro}`);
  }
  return {
    ...D,
    batchSize,
    microBatch: micro,
    steps: intFlag(v, "steps", 1),
    lr: recipe && !given("lr") ? recipe.lr : positive("lr"),
    warmup: intFlag(v, "warmup", 0),
    minLrRatio: unit("min-lr-ratio"),
    weightDecay: numberFlag(v, "weight-decay"),
    gradClip: numberFlag(v, "grad-clip"),
    emaDecay: unit("ema"),
    captionDropout: unit("caption-dropout"),
    seed: intFlag(v, "seed", 0),
    kdAlpha: v.teacher ? unit("kd-alpha") : 0,
    kdTemp: positive("kd-temp"),
    ...(v["scale-weights"] === undefined ? {} : { scaleWeights: scaleWeights(v["scale-weights"]) }),
  };
}

/** What --set may change under --init: ar_scales, n_layers, or both. */
const INIT_SET = /^\s*(ar_scales|n_layers)\s*=\s*\d+\s*(,\s*(ar_scales|n_layers)\s*=\s*\d+\s*)?$/;

/**
 * --init's model config, with --set ar_scales=N and n_layers=N applied where given. A hybrid may
 * grow deeper (its new blocks start as zero residuals, so it computes what it did); it may not
 * shrink, and a transformer may not change depth.
 */
function initConfig(c: ModelConfig, set: string, source: string): ModelConfig {
  if (!set || !c || typeof c !== "object") return c;
  const out = applyOverrides(c, set);
  if (out.n_layers !== c.n_layers && (out.n_layers < c.n_layers || c.arch !== "hybrid")) {
    throw new UserError(
      `--set n_layers=${out.n_layers}: ${source} has ${c.n_layers} ${c.arch} layers; ` +
        "--init can only add Mamba layers to a hybrid",
    );
  }
  return out;
}

/** Refuses more scale weights than the model has scales (before any file is written). */
function checkScaleWeights(weights: number[] | undefined, scales: number): void {
  if (weights && weights.length > scales) {
    throw new UserError(
      `--scale-weights has ${weights.length} weights; the model has ${scales} scales`,
    );
  }
}

/** `--scale-weights W1,W2,…`: non-negative numbers, at least one above 0. */
function scaleWeights(text: unknown): number[] {
  const parts = String(text).split(",");
  const w = parts.map((x) => Number(x.trim()));
  if (parts.some((x) => x.trim() === "") || w.some((x) => !(x >= 0) || !Number.isFinite(x))) {
    throw new UserError(`--scale-weights must be non-negative numbers W1,W2,…, got '${text}'`);
  }
  if (!w.some((x) => x > 0)) throw new UserError("--scale-weights needs a weight above 0");
  return w;
}

export async function main(argv: string[]): Promise<void> {
  const parsed = parseCommand(spec, argv);
  if (!parsed) return;
  const v = parsed.values;
  if (typeof v.data !== "string" || v.data === "") {
    throw new UserError("--data is required: a directory of token shards (vmambar tokenize)");
  }
  if (v.resume && v.force) throw new UserError("--resume and --force contradict each other");
  const init = typeof v.init === "string" ? v.init : null;
  if (init !== null) {
    if (v.resume) {
      throw new UserError("--init starts a new run from a model; --resume continues one: not both");
    }
    for (const name of ["preset", "set", "recipe"]) {
      if (v[name] === spec.options[name].default) continue;
      // ar_scales adds a zero-initialised input, and more layers come in as zero residuals, so
      // either may be given to a trained model.
      if (name === "set" && INIT_SET.test(String(v.set))) continue;
      throw new UserError(
        `--init takes the architecture from ${init}: drop --${name}` +
          (name === "set" ? " (only --set ar_scales=N and n_layers=N may go with it)" : ""),
      );
    }
    if (!existsSync(init)) throw new UserError(`--init ${init}: no such file`);
  }
  const recipe = typeof v.recipe === "string" ? RECIPES[v.recipe] : undefined;
  if (typeof v.recipe === "string" && !recipe) {
    throw new UserError(
      `unknown --recipe ${v.recipe} (one of: ${Object.keys(RECIPES).join(", ")})`,
    );
  }
  const preset = recipe && v.preset === spec.options.preset.default
    ? recipe.preset
    : String(v.preset);
  const set = typeof v.set === "string" ? v.set : "";
  modelConfig(preset, set); // a bad preset or field fails before any work
  const settings = readSettings(v, recipe);
  const { launchWorld } = await import("../dist/launch.ts");
  const given = v.world === undefined ? undefined : intFlag(v, "world", 1);
  // The launcher returns null once the `world` processes it started have all finished.
  const world = await launchWorld("train", argv, given);
  if (world === null) return;
  const { collective } = await import("../dist/collective.ts");
  const comm = collective();
  if (v["micro-batch"] === undefined && settings.batchSize % world === 0) {
    settings.microBatch = Math.min(settings.microBatch, settings.batchSize / world);
  }
  const maxMinutes = v["max-minutes"] === undefined ? Infinity : numberFlag(v, "max-minutes");
  if (v.fit && !Number.isFinite(maxMinutes)) throw new UserError("--fit needs --max-minutes");
  if (v.fit && world > 1) throw new UserError("--fit is for one process (not with --world)");
  const out = String(v.out);
  // --resume rewrites --out; a fresh run refuses an existing one without --force.
  prepareOutputFile(out, { force: v.force === true || v.resume === true, flag: "--out" });
  const tokenizerPath = resolveTokenizer(v.tokenizer);

  const { initGpu } = await import("../gpu/mod.ts");
  await initGpu();
  const { loadTokenizer } = await import("../tokenizer/load.ts");
  const { readTokenSet } = await import("../data/token_set.ts");
  const { loadModel, checkTokenGrid } = await import("../model/load.ts");
  const { runModelTraining, modelRunFiles } = await import("../train/model_run.ts");
  const tok = await loadTokenizer(tokenizerPath);
  const { scales, vocab, cvae } = tok.cfg;
  let start = null;
  if (init !== null) {
    const { readCheckpoint } = await import("../io/checkpoint.ts");
    start = await readCheckpoint(init, "model");
  }
  // The token grid is the tokenizer's; the preset (or --init's model) gives everything else.
  const cfg = start
    ? validateModelConfig(
      initConfig(start.config as ModelConfig, set, init!),
      `--init ${init}`,
    )
    : validateModelConfig(
      { ...modelConfig(preset, set), scales: [...scales], vocab, cvae },
      `--preset ${preset}`,
    );
  if (start) checkTokenGrid(cfg, tok.cfg, `--init ${init}`);
  checkScaleWeights(settings.scaleWeights, cfg.scales.length);
  const want = {
    tokenizerSha256: tok.sha256,
    tokenizer: tokenizerPath,
    scales,
    vocab,
    T: cfg.text_length,
  };
  const data = await readTokenSet(v.data, want);
  const val = typeof v.val === "string" ? await readTokenSet(v.val, want) : null;
  const { textIdsVocabulary, vocabularyMetadata, MAX_VOCABULARY } = await import(
    "../data/vocabulary.ts"
  );
  // The captions' words, for generate's note on words the model never saw.
  const words = textIdsVocabulary(data.textIds, data.T);
  if (words === null) {
    console.error(
      `train: the captions have more than ${MAX_VOCABULARY} distinct words: no vocabulary is ` +
        "recorded (generate will not name unknown words)",
    );
  }
  if (data.truncated > 0) {
    console.error(
      `train: ${data.truncated} captions are longer than ${cfg.text_length} ids and were cut`,
    );
  }
  if (v.epochs !== undefined) {
    const epochs = numberFlag(v, "epochs");
    if (!(epochs > 0)) throw new UserError(`--epochs must be positive, got ${epochs}`);
    settings.steps = Math.max(1, Math.ceil((epochs * data.count) / settings.batchSize));
  } else if (recipe && v.steps === spec.options.steps.default) {
    settings.steps = Math.ceil((recipe.epochs * data.count) / settings.batchSize);
  }
  if (settings.steps <= settings.warmup) {
    console.error(
      `train: warning: --steps ${settings.steps} ≤ --warmup ${settings.warmup}: the learning rate ` +
        `never reaches --lr ${settings.lr}`,
    );
  }
  let teacher = null;
  if (typeof v.teacher === "string") {
    const t = await loadModel(v.teacher);
    checkTokenGrid(t.cfg, tok.cfg, `--teacher ${v.teacher}`);
    if (t.cfg.text_length !== cfg.text_length) {
      throw new UserError(
        `--teacher ${v.teacher}: text_length ${t.cfg.text_length}, not ${cfg.text_length}`,
      );
    }
    teacher = t.model;
  }
  const { sampleGridWriter } = await import("../model/sample.ts");
  const prompts = samplePrompts(val ?? data, 8);
  try {
    const r = await runModelTraining({
      data,
      dataPath: v.data,
      val,
      out,
      cfg,
      settings,
      quantizer: tok.vq.quantize,
      tokenizerSha256: tok.sha256,
      teacher,
      init: start && { tensors: start.tensors, path: init! },
      resume: v.resume === true,
      force: v.force === true,
      logEvery: intFlag(v, "log-every", 1),
      valEvery: intFlag(v, "val-every", 0),
      sampleEvery: intFlag(v, "sample-every", 0),
      checkpointEvery: intFlag(v, "checkpoint-every", 0),
      maxMinutes,
      fitSchedule: v.fit === true,
      stopAfter: v["stop-after"] === undefined ? Infinity : intFlag(v, "stop-after", 1),
      sampleGrid: sampleGridWriter(tok.vq, prompts),
      extra: {
        preset: start?.metadata.preset ?? preset,
        tokenizer: tokenizerPath,
        ...(init !== null ? { init } : {}),
        ...vocabularyMetadata(words),
      },
      collective: comm,
    });
    // Every rank got here: MPI ends only when all do (a failed rank exits without it).
    comm.close();
    const files = modelRunFiles(out);
    const parts = [`trained to step ${r.steps} in ${(r.seconds / 60).toFixed(1)} min`];
    if (r.last) parts.push(`loss ${r.last.loss.toFixed(4)}`);
    if (r.val) parts.push(`val loss ${r.val.loss.toFixed(4)}`);
    if (comm.rank === 0) {
      console.log(`${parts.join("; ")}\nwrote ${out}, ${files.state}, ${files.metrics}`);
    }
    if (r.stopped) {
      // A signal is not success: a script chaining commands must not go on as if it finished.
      throw new UserError(
        `stopped by ${r.stopped} at step ${r.steps} of ${r.total} and saved: run the same ` +
          "command with --resume to continue",
      );
    }
    if (r.steps < r.total && comm.rank === 0) {
      console.log(`stopped at step ${r.steps} of ${r.total}: run the same command with --resume`);
    }
  } finally {
    teacher?.dispose();
    tok.vq.dispose();
  }
}

/** The sample grid's prompts: the first distinct captions of a token set. */
function samplePrompts(
  set: { textIds: Int32Array; T: number; count: number },
  n: number,
): Int32Array {
  const rows: Int32Array[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < set.count && rows.length < n; i++) {
    const row = set.textIds.subarray(i * set.T, (i + 1) * set.T);
    const key = row.join();
    if (!seen.has(key)) seen.add(key), rows.push(row);
  }
  const out = new Int32Array(rows.length * set.T);
  rows.forEach((r, i) => out.set(r, i * set.T));
  return out;
}
