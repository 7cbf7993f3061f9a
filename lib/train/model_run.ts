// The `vmambar train` loop around ModelTrainer: token data, progress line, metrics JSONL (loss,
// token accuracy per scale, learning rate, gradient norm, tokens/s), validation loss on held-out
// shards, a sample grid from fixed prompts, and checkpoints committed as one unit: the
// train-state (weights, EMA, moments, data position) is written first and is all a resume reads;
// the model file (the EMA weights, what `generate` loads) follows it.
import { existsSync } from "node:fs";
import { UserError } from "../errors.ts";
import { gpu, sync } from "../gpu/mod.ts";
import { type BatchPosition, TokenBatches, type TokenSet } from "../data/token_set.ts";
import { loadParameters, readCheckpoint, saveCheckpoint } from "../io/checkpoint.ts";
import type { StTensor } from "../io/safetensors.ts";
import { arScales, type ModelConfig, validateModelConfig } from "../model/config.ts";
import { previousCodes, teacherFeatures } from "../model/inputs.ts";
import { Sequence, VMambAR } from "../model/vmambar.ts";
import { noGrad, type Tensor, tidyAsync } from "../tensor/tensor.ts";
import type { ResidualQuantizer } from "../tokenizer/quantizer.ts";
import { writeSafetensors } from "../io/safetensors.ts";
import { type Collective, SingleProcess } from "../dist/collective.ts";
import { tensorsToHost } from "../io/checkpoint.ts";
import { listenForStop } from "./interrupt.ts";
import { formatDuration, keepMetricsUpTo, MetricsLog } from "./metrics.ts";
import { clearForFreshRun, runFiles } from "./run_files.ts";
import { fittedSteps } from "./schedule.ts";
import {
  ModelTrainer,
  type ModelTrainingSettings,
  type ModelTrainingStats,
} from "./model_trainer.ts";

export interface ModelRunOptions {
  data: TokenSet;
  dataPath: string;
  val: TokenSet | null;
  out: string;
  cfg: ModelConfig;
  settings: ModelTrainingSettings;
  quantizer: ResidualQuantizer;
  tokenizerSha256: string;
  teacher: VMambAR | null;
  /** A fresh run's starting weights (train --init): a model checkpoint's tensors and its path. */
  init?: { tensors: Map<string, StTensor>; path: string } | null;
  resume: boolean;
  force: boolean;
  logEvery: number;
  valEvery: number;
  sampleEvery: number;
  checkpointEvery: number;
  maxMinutes: number;
  /** With maxMinutes: shorten the schedule once the speed is known so that it ends in time. */
  fitSchedule?: boolean;
  stopAfter: number;
  /** Draws the sample grid (the CLI supplies it: it needs the tokenizer's decoder). */
  sampleGrid?: (ema: VMambAR, path: string) => Promise<void>;
  /** Extra metadata for the model file (preset, tokenizer path). */
  extra: Record<string, string>;
  /**
   * Data parallel over these ranks (default: one process). Each rank trains on its share of every
   * batch's micro-batches; rank 0 alone writes the checkpoints, metrics and samples.
   */
  collective?: Collective;
}

/** The files a run writes beside its model checkpoint. */
export function modelRunFiles(out: string) {
  const { state, metrics } = runFiles(out);
  return { state, metrics, samples: `${out.replace(/\.safetensors$/, "")}.samples.png` };
}

export interface ModelRunResult {
  steps: number;
  /** The schedule's length (a resumed run's saved one). */
  total: number;
  seconds: number;
  stopped: string | null;
  last: ModelTrainingStats | null;
  val: { loss: number; accuracy: number[] } | null;
}

/** Share of positions whose argmax is the target, per scale, over logits [B, L, V]. */
export function scaleAccuracy(
  logits: Float32Array,
  indices: Int32Array,
  scales: readonly number[],
  V: number,
): number[] {
  const L = scales.reduce((a, p) => a + p * p, 0);
  const B = indices.length / L;
  const hits = new Array(scales.length).fill(0), counts = new Array(scales.length).fill(0);
  for (let b = 0; b < B; b++) {
    let pos = 0;
    scales.forEach((pn, k) => {
      for (let i = 0; i < pn * pn; i++, pos++) {
        const row = (b * L + pos) * V;
        let best = 0;
        for (let v = 1; v < V; v++) if (logits[row + v] > logits[row + best]) best = v;
        if (best === indices[b * L + pos]) hits[k]++;
        counts[k]++;
      }
    });
  }
  return hits.map((h, k) => h / Math.max(1, counts[k]));
}

/** Validation: mean CE and per-scale accuracy of `model` over a token set (no dropout). */
export async function evaluateTokens(
  model: VMambAR,
  quantizer: ResidualQuantizer,
  set: TokenSet,
  batch: number,
  limit = Infinity,
): Promise<{ loss: number; accuracy: number[] }> {
  const n = Math.min(set.count, limit);
  let lossSum = 0;
  const acc = new Array(set.scales.length).fill(0);
  for (let s = 0; s < n; s += batch) {
    const b = Math.min(batch, n - s);
    const indices = set.indices.subarray(s * set.L, (s + b) * set.L);
    const textIds = set.textIds.subarray(s * set.T, (s + b) * set.T);
    const [loss, logits] = await tidyAsync(async () => {
      const seq = new Sequence(model.cfg, textIds);
      const prev = previousCodes(quantizer, indices, b, arScales(model.cfg));
      const l = noGrad(() => model.forward(seq, teacherFeatures(quantizer, indices, b), prev));
      const ce = noGrad(() => VMambAR.loss(l, indices));
      return [await ce.item(), (await l.read()) as Float32Array] as const;
    });
    lossSum += loss * b;
    scaleAccuracy(logits, indices, set.scales, model.cfg.vocab).forEach((a, k) => acc[k] += a * b);
  }
  return { loss: lossSum / n, accuracy: acc.map((a) => a / n) };
}

/**
 * A checkpoint's tensors for a deeper hybrid than it was trained as (`train --init M --set
 * n_layers=N`): the new blocks go after the old ones, each block's out_proj and each new GSA
 * call's gsa_out at zero, so every new residual adds nothing and the model computes what M did.
 * Their other weights keep the fresh init (`fresh`), so they learn once out_proj moves off zero.
 */
export function grownTensors(
  model: VMambAR,
  tensors: Map<string, StTensor>,
): { tensors: Map<string, StTensor>; fresh: string[] } {
  const grown = new Map(tensors), fresh: string[] = [];
  for (const [name, p] of model.namedParameters()) {
    if (tensors.has(name)) continue;
    const isNew = /^blocks\.\d+\./.test(name) || /^gsa_out\.\d+\./.test(name);
    if (!isNew) continue;
    if (
      /^blocks\.\d+\.mamba\.out_proj\.weight$/.test(name) || /^gsa_out\.\d+\.weight$/.test(name)
    ) {
      const size = p.shape.reduce((a, b) => a * b, 1);
      grown.set(name, { dtype: "F32", shape: [...p.shape], data: new Uint8Array(4 * size) });
    } else fresh.push(name);
  }
  return { tensors: grown, fresh };
}

async function startTrainer(o: ModelRunOptions, lead: boolean) {
  const files = modelRunFiles(o.out);
  if (!o.resume) {
    if (lead) await clearForFreshRun(o.out, o.force, [files.state, files.samples], files.metrics);
    const trainer = new ModelTrainer(o.cfg, o.settings, o.quantizer, o.teacher);
    if (o.init) {
      // Weights and their average start from the checkpoint; the moments start at zero. A model
      // given ar_scales here starts prev_embed at its zero init; one given more layers starts
      // them as zero residuals (grownTensors).
      const { tensors, fresh } = grownTensors(trainer.model, o.init.tensors);
      for (const m of [trainer.model, trainer.ema]) {
        loadParameters(m, tensors, o.init.path, ["prev_embed.weight", ...fresh]);
      }
    }
    return { trainer, position: { epoch: 0, offset: 0 } as BatchPosition };
  }
  if (!existsSync(files.state)) {
    throw new UserError(`--resume: no train-state ${files.state} (start without --resume)`);
  }
  const state = await readCheckpoint(files.state, "train-state");
  const m = state.metadata;
  if (m.data !== o.dataPath) {
    throw new UserError(
      `--resume: the run in ${o.out} trains on --data ${m.data}, not ${o.dataPath}; resume it ` +
        "with the same --data (or start a new run)",
    );
  }
  if (m.tokenizer_sha256 !== o.tokenizerSha256) {
    throw new UserError(`--resume: the run in ${o.out} was trained with another tokenizer`);
  }
  const cfg = validateModelConfig(state.config as ModelConfig, files.state);
  const settings = JSON.parse(m.settings) as ModelTrainingSettings;
  const trainer = new ModelTrainer(cfg, settings, o.quantizer, o.teacher);
  trainer.loadState(state.tensors, m, files.state);
  if (lead) await keepMetricsUpTo(files.metrics, trainer.step);
  return { trainer, position: JSON.parse(m.position) as BatchPosition };
}

export async function runModelTraining(o: ModelRunOptions): Promise<ModelRunResult> {
  const files = modelRunFiles(o.out);
  const comm = o.collective ?? new SingleProcess();
  const lead = comm.rank === 0, distributed = comm.size > 1;
  const { trainer, position } = await startTrainer(o, lead);
  trainer.collective = comm;
  if (distributed) await trainer.broadcastState();
  const { cfg, settings } = trainer;
  const nMicro = settings.batchSize / settings.microBatch;
  if (nMicro % comm.size !== 0) {
    throw new UserError(
      `--batch ${settings.batchSize} is ${nMicro} micro-batches of ${settings.microBatch}: not ` +
        `a multiple of the ${comm.size} processes`,
    );
  }
  const params = trainer.model.parameterCount();
  if (lead) {
    console.error(
      `train: ${o.resume ? `resuming at step ${trainer.step}` : "training"} a ${cfg.arch} model ` +
        `of ${(params / 1e6).toFixed(2)} M parameters on ${gpu().name}: ${o.data.count} samples, ` +
        `batch ${settings.batchSize} (micro ${settings.microBatch}), lr ${settings.lr}, ` +
        `${settings.steps} steps` + (o.resume ? " (the run's saved settings)" : "") +
        (distributed ? `, data parallel over ${comm.size} processes` : ""),
    );
  }
  if (gpu().isCpu && lead) {
    console.error(
      "train: this adapter runs on the CPU (about 3 GFLOP/s): use a GPU for real runs, or a " +
        "small --set (e.g. d=64,n_layers=4) and --batch 8 to try it out",
    );
  }
  const batches = new TokenBatches(o.data, settings.seed, position);
  const metrics = lead ? new MetricsLog(files.metrics) : null;
  const L = o.data.L;
  const t0 = performance.now();
  const elapsed = () => (performance.now() - t0) / 1000;
  const firstStep = trainer.step;
  let timedFrom = { step: firstStep, time: 0 };
  let last: ModelTrainingStats | null = null;
  let lastVal: { loss: number; accuracy: number[] } | null = null;
  let lastSaved = trainer.step;
  const tty = lead && Deno.stderr.isTerminal();

  const save = async () => {
    if (!lead) {
      lastSaved = trainer.step;
      return;
    }
    const meta = {
      step: String(trainer.step),
      data: o.dataPath,
      tokenizer_sha256: o.tokenizerSha256,
    };
    // The commit point: everything a resume needs, in one file.
    await writeSafetensors(files.state, await tensorsToHost(trainer.stateTensors()), {
      format: "vmambar",
      kind: "train-state",
      config: JSON.stringify(cfg),
      ...trainer.stateMetadata(),
      position: JSON.stringify(batches.position),
      ...meta,
    });
    await saveCheckpoint(o.out, trainer.ema.namedParameters(), "model", cfg, {
      ...o.extra,
      ...meta,
      arch: cfg.arch,
      parameters: String(params),
    });
    lastSaved = trainer.step;
  };
  const validate = async () => {
    if (!o.val || !lead) return;
    lastVal = await evaluateTokens(trainer.ema, o.quantizer, o.val, settings.microBatch, 512);
    await metrics!.write({
      kind: "val",
      step: trainer.step,
      loss: lastVal.loss,
      accuracy: lastVal.accuracy,
    });
  };
  const line = () => {
    const s = trainer.step, total = settings.steps;
    const from = s > timedFrom.step ? timedFrom : { step: firstStep, time: 0 };
    const rate = (s - from.step) / Math.max(1e-9, elapsed() - from.time);
    const eta = rate > 0 ? formatDuration((total - s) / rate) : "?";
    const stats = last ? `loss ${last.loss.toFixed(4)}  ` : "";
    const v = lastVal as { loss: number } | null;
    const vs = v ? `val ${v.loss.toFixed(4)}  ` : "";
    const speed = rate >= 0.1 ? `${rate.toFixed(1)} it/s` : `${(1 / rate).toFixed(0)} s/it`;
    return `step ${s}/${total}  ${stats}${vs}${speed}  ${
      ((rate * settings.batchSize * L) / 1000).toFixed(1)
    }k tok/s  ETA ${eta}`;
  };
  let drawn = 0;
  const draw = (logged: boolean) => {
    if (tty) {
      if (!logged && performance.now() - drawn < 100) return;
      drawn = performance.now();
      Deno.stderr.writeSync(new TextEncoder().encode(`\r\x1b[K${line()}`));
    } else if (logged && lead) console.error(line());
  };

  const stop = listenForStop();
  let stopped: string | null = null;
  try {
    while (trainer.step < settings.steps) {
      let signal = stop.requested, late = elapsed() > o.maxMinutes * 60;
      if (distributed) {
        // Every rank stops at the same step: a signal or the time limit on one stops them all.
        const flags = Float32Array.of(signal ? 1 : 0, late ? 1 : 0);
        await comm.allReduceSum(flags);
        signal = signal ?? (flags[0] > 0 ? "a signal to another process" : null);
        late = flags[1] > 0;
      }
      if (signal) {
        stopped = signal;
        break;
      }
      if (late || trainer.step - firstStep >= o.stopAfter) break;
      // Every rank draws the whole batch (the data position stays the same on all) and trains on
      // its consecutive share of the micro-batches.
      const all = [];
      for (let i = 0; i < nMicro; i++) all.push(batches.next(settings.microBatch));
      const share = nMicro / comm.size, first = comm.rank * share;
      const micro = all.slice(first, first + share);
      const step = trainer.step + 1;
      const logged = step % o.logEvery === 0 || step === settings.steps;
      const logits: Tensor | null = distributed
        ? await trainer.trainStepAllReduced(micro, first, logged)
        : trainer.trainStep(micro, logged);
      if (step === firstStep + 10) {
        await sync();
        timedFrom = { step, time: elapsed() };
      }
      // Fitted once, 10 steps after the timing starts; a resumed run keeps the saved length.
      if (o.fitSchedule && !o.resume && step === firstStep + 20 && Number.isFinite(o.maxMinutes)) {
        await sync();
        const fits = fittedSteps(settings, step, timedFrom, elapsed(), o.maxMinutes);
        if (fits < settings.steps) {
          settings.steps = fits;
          if (lead) console.error(`fitting the schedule to --max-minutes: ${fits} steps`);
        }
      }
      if (logged) {
        last = await trainer.readStats();
        const accuracy = logits
          ? scaleAccuracy(
            (await logits.read()) as Float32Array,
            micro[0].indices,
            cfg.scales,
            cfg.vocab,
          )
          : [];
        logits?.dispose();
        if (!Number.isFinite(last.loss)) {
          throw new UserError(
            `the loss is ${last.loss} at step ${step}: stopped; ${o.out} keeps the last good ` +
              `checkpoint (step ${lastSaved}); try a lower --lr or --grad-clip`,
          );
        }
        const from = step > timedFrom.step ? timedFrom : { step: firstStep, time: 0 };
        const rate = (step - from.step) / Math.max(1e-9, elapsed() - from.time);
        await metrics?.write({
          kind: "train",
          step,
          lr: trainer.learningRate,
          loss: last.loss,
          ce: last.ce,
          kd: last.kd,
          accuracy,
          grad_norm: last.gradNorm,
          tokens_per_s: rate * settings.batchSize * L,
          seconds: elapsed(),
          ...(distributed
            ? { processes: comm.size, allreduce_s: trainer.reduceSeconds / (step - firstStep) }
            : {}),
        });
      } else logits?.dispose();
      if (o.valEvery > 0 && step % o.valEvery === 0) await validate();
      if (lead && o.sampleGrid && o.sampleEvery > 0 && step % o.sampleEvery === 0) {
        await o.sampleGrid(trainer.ema, files.samples);
      }
      if (o.checkpointEvery > 0 && step % o.checkpointEvery === 0) {
        await checkFinite(trainer, step, o.out, lastSaved);
        await save();
      }
      draw(logged);
    }
    if (tty) Deno.stderr.writeSync(new TextEncoder().encode("\r\x1b[K"));
    let unsaved = trainer.step > lastSaved || !existsSync(o.out);
    if (distributed) {
      // Rank 0's answer (it writes the files): the check below is collective.
      const flag = Float32Array.of(unsaved ? 1 : 0);
      await comm.broadcast(flag, 0);
      unsaved = flag[0] > 0;
    }
    if (unsaved) {
      await checkFinite(trainer, trainer.step, o.out, lastSaved);
      await save();
    }
    if (!stopped && trainer.step >= settings.steps) {
      // The last step's validation and grid, unless the loop just made them.
      const step = trainer.step;
      if (!(o.valEvery > 0 && step % o.valEvery === 0 && step > firstStep)) await validate();
      const gridNow = o.sampleEvery > 0 && step % o.sampleEvery === 0 && step > firstStep;
      if (lead && o.sampleGrid && !gridNow) await o.sampleGrid(trainer.ema, files.samples);
    }
    const total = settings.steps;
    return { steps: trainer.step, total, seconds: elapsed(), stopped, last, val: lastVal };
  } finally {
    stop.dispose();
    metrics?.close();
    trainer.dispose();
  }
}

/** Refuses to save weights that a NaN or infinite loss has reached since the last readout. */
async function checkFinite(trainer: ModelTrainer, step: number, out: string, lastSaved: number) {
  const s = await trainer.peekLoss();
  if (!Number.isFinite(s)) {
    throw new UserError(
      `the loss is ${s} by step ${step}: stopped; ${out} keeps the last good checkpoint ` +
        `(step ${lastSaved}); try a lower --lr or --grad-clip`,
    );
  }
}
