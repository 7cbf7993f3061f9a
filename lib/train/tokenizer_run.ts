// The train-tokenizer loop around TokenizerTrainer: data, progress line, metrics JSONL, periodic
// validation and reconstruction grid, atomic checkpoints with a train-state file beside them,
// and --resume, which continues exactly where the saved step left off (same batches, same
// restarts, same optimizer moments).
import { existsSync } from "node:fs";
import { UserError } from "../errors.ts";
import { gpu, sync } from "../gpu/mod.ts";
import { pixelsToFloatNCHW } from "../data/images.ts";
import { type LoaderPosition, openLoader } from "../data/loader.ts";
import { tensor } from "../tensor/tensor.ts";
import { type TokenizerConfig, validateTokenizerConfig } from "../tokenizer/config.ts";
import { loadParameters, readCheckpoint, saveCheckpoint } from "../io/checkpoint.ts";
import { MetricsLog } from "./metrics.ts";
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
  shuffleBuffer: number;
  decodeConcurrency: number;
}

/** The files a run writes beside its checkpoint. */
export function runFiles(out: string) {
  const base = out.replace(/\.safetensors$/, "");
  return {
    state: `${base}.train-state.safetensors`,
    metrics: `${base}.metrics.jsonl`,
    grid: `${base}.recon.png`,
  };
}

export interface TokenizerRunResult {
  steps: number;
  seconds: number;
  val: ReconstructionQuality | null;
  last: TrainingStats | null;
}

const fmtTime = (s: number) =>
  s >= 3600
    ? `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, "0")}m`
    : s >= 60
    ? `${Math.floor(s / 60)}m${String(Math.floor(s % 60)).padStart(2, "0")}s`
    : `${s.toFixed(0)}s`;

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

async function startTrainer(o: TokenizerRunOptions) {
  const files = runFiles(o.out);
  if (!o.resume) {
    if (existsSync(o.out) && !o.force) {
      throw new UserError(
        `${o.out} exists: pass --resume to continue its training or --force to start over`,
      );
    }
    const trainer = new TokenizerTrainer(o.cfg, o.settings);
    return { trainer, position: { epoch: 0, sample: 0 } as LoaderPosition };
  }
  if (!existsSync(files.state)) {
    throw new UserError(`--resume: no train-state ${files.state} (start without --resume)`);
  }
  const state = await readCheckpoint(files.state, "train-state");
  const cfg = validateTokenizerConfig(state.config as TokenizerConfig, files.state);
  const settings = JSON.parse(state.metadata.settings) as TokenizerTrainingSettings;
  const ckpt = await readCheckpoint(o.out, "tokenizer");
  if (ckpt.metadata.step !== state.metadata.step) {
    throw new UserError(
      `${o.out} is at step ${ckpt.metadata.step} but ${files.state} at step ` +
        `${state.metadata.step}: they were not saved together`,
    );
  }
  const trainer = new TokenizerTrainer(cfg, settings);
  loadParameters(trainer.vq, ckpt.tensors, o.out);
  trainer.loadState(state.tensors, state.metadata, files.state);
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
    // The state first: a crash between the two leaves mismatched steps, which resume refuses.
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
    const rate = (s - timedFrom.step) / Math.max(1e-9, elapsed() - timedFrom.time);
    const eta = rate > 0 ? fmtTime((total - s) / rate) : "?";
    const stats = last
      ? `loss ${last.loss.toFixed(4)}  psnr ${last.psnr.toFixed(2)}  ` +
        `codes ${(100 * last.usageLast).toFixed(0)}%/${(100 * last.usageAll).toFixed(0)}%  `
      : "";
    const v = lastVal as ReconstructionQuality | null;
    const vs = v ? `val ${v.psnr.toFixed(2)} dB  ` : "";
    return `step ${s}/${total}  ${stats}${vs}${rate.toFixed(1)} it/s  ETA ${eta}`;
  };

  try {
    for await (const batch of loader) {
      const stop = trainer.step >= settings.steps || elapsed() > o.maxMinutes * 60 ||
        trainer.step - firstStep >= o.stopAfter;
      if (stop) break;
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
    const validatedNow = o.valEvery > 0 && trainer.step % o.valEvery === 0 &&
      trainer.step > firstStep;
    if (!validatedNow) await validate();
    return { steps: trainer.step, seconds: elapsed(), val: lastVal, last };
  } finally {
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
 * Shortens the cosine schedule to end within the time limit, from the speed measured so far,
 * keeping a reserve for validation and the last checkpoint. The new length is part of the
 * settings saved in the train-state, so a resumed run keeps it.
 */
function fitSchedule(
  trainer: TokenizerTrainer,
  timed: { step: number; time: number },
  now: number,
  maxMinutes: number,
) {
  const perStep = (now - timed.time) / Math.max(1, trainer.step - timed.step);
  const left = maxMinutes * 60 * 0.95 - now - 30;
  const fits = trainer.step + Math.floor(left / perStep);
  const s = trainer.settings;
  if (fits < s.steps) {
    s.steps = Math.max(s.warmup + 1, fits);
    console.error(`fitting the schedule to --max-minutes: ${s.steps} steps`);
  }
}
