// The train-tokenizer loop around TokenizerTrainer: data, progress line, metrics JSONL, periodic
// validation and reconstruction grid, atomic checkpoints with a train-state file beside them,
// and --resume, which continues exactly where the saved step left off (same batches, same
// restarts, same optimizer moments).
import { existsSync } from "node:fs";
import { UserError } from "../errors.ts";
import { gpu, sync } from "../gpu/mod.ts";
import { pixelsToFloatNCHW } from "../data/images.ts";
import { type Loader, type LoaderPosition, openLoader } from "../data/loader.ts";
import { tensor } from "../tensor/tensor.ts";
import { type TokenizerConfig, validateTokenizerConfig } from "../tokenizer/config.ts";
import { readCheckpoint, saveCheckpoint } from "../io/checkpoint.ts";
import { listenForStop } from "./interrupt.ts";
import { formatDuration, keepMetricsUpTo, MetricsLog } from "./metrics.ts";
import { clearForFreshRun, runFiles } from "./run_files.ts";
import { fittedSteps } from "./schedule.ts";
export { runFiles } from "./run_files.ts";
import {
  evaluateReconstruction,
  readImageSet,
  reconstructionGrid,
  type ReconstructionQuality,
} from "./tokenizer_eval.ts";
import {
  TokenizerTrainer,
  type TokenizerTrainingSettings,
  type TrainingStats,
} from "./tokenizer_trainer.ts";

export interface TokenizerRunOptions {
  data: string;
  val?: string;
  /** Tokenizer checkpoint path; the train-state, metrics and grid go beside it. */
  out: string;
  cfg: TokenizerConfig;
  settings: TokenizerTrainingSettings;
  resume: boolean;
  /** Replace an existing --out instead of refusing. */
  force: boolean;
  logEvery: number;
  valEvery: number;
  gridEvery: number;
  checkpointEvery: number;
  /** Stop (and save) after this many minutes, or this many steps of this run; Infinity: never. */
  maxMinutes: number;
  stopAfter: number;
  /** With maxMinutes: shorten `steps` once the speed is known so the schedule ends in time. */
  fitSchedule: boolean;
  valImages: number;
  /** Stop when more than this share of the samples read could not be used. */
  maxSkipped: number;
  shuffleBuffer: number;
  decodeConcurrency: number;
}

export interface TokenizerRunResult {
  steps: number;
  /** The signal that stopped the run early (it was saved), or null. */
  stopped: string | null;
  seconds: number;
  val: ReconstructionQuality | null;
  last: TrainingStats | null;
}

/** One status line, redrawn in place on a terminal and printed at each log step otherwise. */
class StatusLine {
  readonly #tty = Deno.stderr.isTerminal();
  #drawn = 0;
  draw(line: string, logged: boolean): void {
    if (this.#tty) {
      if (!logged && performance.now() - this.#drawn < 100) return;
      this.#drawn = performance.now();
      Deno.stderr.writeSync(new TextEncoder().encode(`\r\x1b[K${line}`));
    } else if (logged) console.error(line);
  }
  clear(): void {
    if (this.#tty) Deno.stderr.writeSync(new TextEncoder().encode("\r\x1b[K"));
  }
}

/**
 * A fresh run (its files checked by the CLI) clears an earlier run's files; a resumed one reads
 * only its train-state, which holds everything a step needs, and must read the same data.
 */
async function startTrainer(o: TokenizerRunOptions) {
  const files = runFiles(o.out);
  if (!o.resume) {
    await clearForFreshRun(o.out, o.force, [files.state, files.grid], files.metrics);
    const trainer = new TokenizerTrainer(o.cfg, o.settings);
    return { trainer, position: { epoch: 0, sample: 0 } as LoaderPosition };
  }
  if (!existsSync(files.state)) {
    throw new UserError(`--resume: no train-state ${files.state} (start without --resume)`);
  }
  const state = await readCheckpoint(files.state, "train-state");
  if (state.metadata.data !== undefined && state.metadata.data !== o.data) {
    throw new UserError(
      `--resume: the run in ${o.out} trains on --data ${state.metadata.data}, not ${o.data}; ` +
        "resume it with the same --data (or start a new run)",
    );
  }
  const cfg = validateTokenizerConfig(state.config as TokenizerConfig, files.state);
  const settings = JSON.parse(state.metadata.settings) as TokenizerTrainingSettings;
  const trainer = new TokenizerTrainer(cfg, settings);
  trainer.loadState(state.tensors, state.metadata, files.state);
  await keepMetricsUpTo(files.metrics, trainer.step);
  return { trainer, position: JSON.parse(state.metadata.position) as LoaderPosition };
}

export async function runTokenizerTraining(o: TokenizerRunOptions): Promise<TokenizerRunResult> {
  const files = runFiles(o.out);
  const { trainer, position: start } = await startTrainer(o);
  const { cfg, settings } = trainer;
  // A resumed run keeps its saved settings, whatever flags this call was given.
  console.error(
    `train-tokenizer: ${o.resume ? `resuming at step ${trainer.step}` : "training"} on ` +
      `${gpu().name}, batch ${settings.batchSize}, lr ${settings.lr}, ${settings.steps} steps` +
      (o.resume ? " (the run's saved settings)" : ""),
  );
  if (gpu().isCpu) {
    console.error(
      "train-tokenizer: this adapter runs on the CPU (about 3 GFLOP/s: a tiny64 step at batch 32 " +
        "takes minutes); use a GPU for real runs, or --batch 2 and a small --config to try it out",
    );
  }
  const size = cfg.image;
  const t0 = performance.now();
  const elapsed = () => (performance.now() - t0) / 1000;
  const val = o.val ? await readImageSet(o.val, size, o.valImages) : null;
  const metrics = new MetricsLog(files.metrics);
  const status = new StatusLine();
  const loader = openLoader({
    source: o.data,
    batchSize: settings.batchSize,
    imageSize: size,
    textLength: 2,
    seed: settings.seed,
    shuffleBuffer: o.shuffleBuffer,
    position: start,
    decodeConcurrency: o.decodeConcurrency,
  });
  let position = start;
  let last: TrainingStats | null = null;
  let lastVal: ReconstructionQuality | null = null;
  const firstStep = trainer.step;
  let timedFrom = { step: firstStep, time: 0 };

  const save = async () => {
    const extra = { step: String(trainer.step), data: o.data };
    // The train-state is the commit point (resume reads only it); the tokenizer file follows,
    // and a crash between the two leaves it one checkpoint behind until the next save.
    await trainer.saveState(files.state, { ...extra, position: JSON.stringify(position) });
    await saveCheckpoint(o.out, trainer.vq.namedParameters(), "tokenizer", cfg, extra);
  };
  const validate = async () => {
    if (!val) return;
    lastVal = await evaluateReconstruction(trainer.vq, val.pixels, val.count, settings.batchSize);
    const v = lastVal;
    await metrics.write({
      kind: "val",
      step: trainer.step,
      images: v.images,
      psnr: v.psnr,
      ssim: Number.isFinite(v.ssim) ? v.ssim : null,
      usage_last: v.usageLast,
      usage_all: v.usageAll,
    });
    await Deno.writeFile(files.grid, reconstructionGrid(val.pixels, v.recon, val.count, size));
  };
  const line = () => {
    const s = trainer.step, total = settings.steps;
    // Until the timed stretch has a step, the speed counts from the start of this run.
    const from = s > timedFrom.step ? timedFrom : { step: firstStep, time: 0 };
    const rate = (s - from.step) / Math.max(1e-9, elapsed() - from.time);
    const eta = rate > 0 ? formatDuration((total - s) / rate) : "?";
    const stats = last
      ? `loss ${last.loss.toFixed(4)}  psnr ${last.psnr.toFixed(2)}  ` +
        `codes ${(100 * last.usageLast).toFixed(0)}%/${(100 * last.usageAll).toFixed(0)}%  `
      : "";
    const v = lastVal as ReconstructionQuality | null;
    const vs = v ? `val ${v.psnr.toFixed(2)} dB  ` : "";
    const bad = loader.skipped.total;
    const skips = bad > 0 ? `skipped ${bad}  ` : "";
    const speed = rate >= 0.1 ? `${rate.toFixed(1)} it/s` : `${(1 / rate).toFixed(0)} s/it`;
    return `step ${s}/${total}  ${stats}${vs}${skips}${speed}  ETA ${eta}`;
  };

  const stop = listenForStop();
  try {
    for await (const batch of loader) {
      const from = trainer.step > timedFrom.step ? timedFrom : { step: firstStep, time: 0 };
      const perStep = (elapsed() - from.time) / Math.max(1, trainer.step - from.step);
      // The time limit holds for the step about to start too: a CPU step can take minutes.
      const outOfTime = trainer.step > firstStep && elapsed() + perStep > o.maxMinutes * 60;
      if (
        trainer.step >= settings.steps || outOfTime || stop.requested ||
        trainer.step - firstStep >= o.stopAfter
      ) break;
      const x = tensor(pixelsToFloatNCHW(batch.pixels as Uint8Array, batch.size, size), [
        batch.size,
        3,
        size,
        size,
      ]);
      try {
        await trainer.trainStep(x);
      } finally {
        x.dispose();
      }
      position = batch.position;
      const step = trainer.step;
      refuseBadData(loader, o, position.epoch > start.epoch);
      // Speed is timed from the 10th step on, past pipeline compilation. Steps are submitted
      // without waiting, so the timing points wait for the GPU: the host may run ahead of it.
      if (step === firstStep + 10) {
        await sync();
        timedFrom = { step, time: elapsed() };
      }
      // A resumed run keeps the length fitted when it started.
      if (o.fitSchedule && !o.resume && step === 40 && Number.isFinite(o.maxMinutes)) {
        await sync();
        fitSchedule(trainer, timedFrom, elapsed(), o.maxMinutes);
      }
      const logged = step % o.logEvery === 0 || step === settings.steps;
      if (logged) {
        last = await trainer.readStats();
        await metrics.write({
          kind: "train",
          step,
          lr: trainer.learningRate,
          loss: last.loss,
          mse: last.mse,
          l1: last.l1,
          vq_loss: last.vqLoss,
          psnr: last.psnr,
          usage_last: last.usageLast,
          usage_all: last.usageAll,
          grad_norm: last.gradNorm,
          restarted: trainer.restarts.last,
          skipped: loader.skipped.total,
          seconds: elapsed(),
        });
      }
      if (o.valEvery > 0 && step % o.valEvery === 0) await validate();
      else if (val && o.gridEvery > 0 && step % o.gridEvery === 0) await writeGrid();
      if (o.checkpointEvery > 0 && step % o.checkpointEvery === 0) await save();
      status.draw(line(), logged);
    }
    status.clear();
    await save();
    const skipped = loader.skipped.summary();
    if (skipped) console.error(`train-tokenizer: ${skipped}`);
    if (stop.requested) {
      return {
        steps: trainer.step,
        seconds: elapsed(),
        val: lastVal,
        last,
        stopped: stop.requested,
      };
    }
    const validatedNow = o.valEvery > 0 && trainer.step % o.valEvery === 0 &&
      trainer.step > firstStep;
    if (!validatedNow) await validate();
    return { steps: trainer.step, seconds: elapsed(), val: lastVal, last, stopped: null };
  } finally {
    stop.dispose();
    metrics.close();
    trainer.dispose();
  }

  async function writeGrid() {
    const n = Math.min(8, val!.count);
    const r = await evaluateReconstruction(trainer.vq, val!.pixels, n, n);
    await Deno.writeFile(files.grid, reconstructionGrid(val!.pixels, r.recon, n, size));
  }
}

/**
 * Stops a run on data that is mostly bad, instead of training on the few samples that decode.
 * It is judged once 50 samples were read, or an epoch.
 */
function refuseBadData(loader: Loader, o: TokenizerRunOptions, pastAnEpoch: boolean): void {
  const bad = loader.skipped.total, read = bad + loader.decoded;
  if ((read >= 50 || pastAnEpoch) && bad > o.maxSkipped * read) {
    throw new UserError(
      `${bad} of the ${read} samples read from ${o.data} were skipped, more than ` +
        `--max-skipped ${o.maxSkipped} (${loader.skipped.summary()})`,
    );
  }
}

/**
 * Shortens the cosine schedule to end within the time limit (fittedSteps). The new length is part
 * of the settings saved in the train-state, so a resumed run keeps it.
 */
function fitSchedule(
  trainer: TokenizerTrainer,
  timed: { step: number; time: number },
  now: number,
  maxMinutes: number,
) {
  const s = trainer.settings;
  const fits = fittedSteps(s, trainer.step, timed, now, maxMinutes);
  if (fits < s.steps) {
    s.steps = fits;
    console.error(`fitting the schedule to --max-minutes: ${s.steps} steps`);
  }
}
