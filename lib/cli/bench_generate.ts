// `vmambar bench generate`: the time to one image on this device: the text encoder, every scale
// with guidance, the tokenizer's decoder and the readback to pixels, exactly as `generate` runs
// them (sampleImages, one readback at the end). The headline is the median of unbroken runs after
// a warm-up run that compiles the pipelines; a second set of runs waits for the GPU between the
// phases to show where the time goes (those syncs are not in the headline).
import { existsSync } from "node:fs";
import { UserError } from "../errors.ts";
import { type CommandSpec, intFlag, parseCommand, stringOption } from "./args.ts";
import { DEFAULT_MODEL, resolveTokenizer, TOKENIZER_OPTION } from "./defaults.ts";
import { prepareOutputFile } from "./output.ts";
import { guidanceCfg, SAMPLING_OPTIONS, samplingFlags } from "./sampling.ts";
import type { Tensor } from "../tensor/tensor.ts";

const str = stringOption;
export const BENCH_PROMPT = "a large red circle in the top left on a blue background";

export const spec: CommandSpec = {
  name: "bench generate",
  usage:
    "bench generate [--model M] [--tokenizer T] [--runs N] [--batch N] [--cfg S] [--json FILE]",
  summary: "Measure the time to one image on this device: text encoding, every scale and " +
    "decoding to pixels, as `generate` runs them. Prints the median of --runs unbroken runs " +
    "(after a warm-up run that compiles the pipelines), then the median time of each phase " +
    "from runs that wait for the GPU between phases.",
  options: {
    model: str("model checkpoint (default: the one in models/)", "FILE"),
    tokenizer: TOKENIZER_OPTION,
    runs: str("timed runs (the headline is their median)", "N", "5"),
    batch: str("images generated at once (time per image = time / N)", "N", "1"),
    ...SAMPLING_OPTIONS,
    prompt: str("the caption of every image", "TEXT", BENCH_PROMPT),
    seed: str("sampling seed", "S", "0"),
    "no-breakdown": { type: "boolean", help: "skip the per-phase runs (halves the time taken)" },
    json: str("also write the results as JSON", "FILE"),
    force: { type: "boolean", help: "replace an existing --json file" },
  },
  more: "Model loading is not timed. Phases: text (the text encoder, with the null captions " +
    "under guidance), tokens (every scale's backbone and sampling), decode (the tokenizer's " +
    "decoder to an image tensor) and readback (to the CPU, then to uint8 pixels).\n" +
    "example: vmambar bench generate --runs 10 --json bench-generate.json",
};

export interface GenerateBench {
  device: string;
  isCpu: boolean;
  f16: boolean;
  date: string;
  model: string;
  tokenizer: string;
  parameters: number;
  image: number;
  scales: number[];
  prompt: string;
  batch: number;
  cfg: number;
  /** Candidates drawn per image, the best kept (1: none). */
  candidates: number;
  runs: number;
  /** Load of both checkpoints onto the device (not in the timings). */
  load_ms: number;
  /** The first run, which compiles every pipeline. */
  warmup_ms: number;
  /** Median wall time of an unbroken run: the headline. */
  total_ms: number;
  per_image_ms: number;
  runs_ms: number[];
  /**
   * Medians of each phase over runs with a sync between phases, text, tokens and decode each less
   * wait_ms; null with --no-breakdown.
   */
  breakdown: {
    text_ms: number;
    tokens_ms: number;
    decode_ms: number;
    readback_ms: number;
    /**
     * What one wait for the GPU costs by itself on an idle queue (median): Deno's WebGPU polls the
     * device and then sleeps about 10 ms before it resolves a wait or a map.
     */
    wait_ms: number;
  } | null;
  /** Bytes the buffer pool holds after the runs (weights, activations, pooled), in MiB. */
  gpu_memory_mib: number;
}

/** The median of a non-empty list (the mean of the middle two for an even count). */
export const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b), m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/** "812 ms", "4.21 s". */
export function duration(ms: number): string {
  return ms < 1000
    ? `${ms < 10 ? ms.toFixed(2) : ms.toFixed(0)} ms`
    : `${(ms / 1000).toFixed(2)} s`;
}

export async function main(argv: string[]): Promise<void> {
  const parsed = parseCommand(spec, argv);
  if (!parsed) return;
  const v = parsed.values;
  const runs = intFlag(v, "runs", 1, 1000);
  const batch = intFlag(v, "batch", 1, 4096);
  const seed = intFlag(v, "seed", 0, 0xffffffff);
  const opts = samplingFlags(v, seed), cfg = guidanceCfg(opts);
  const prompt = String(v.prompt);
  if (prompt.trim() === "") throw new UserError("--prompt is empty: describe the image");
  const modelPath = typeof v.model === "string" ? v.model : DEFAULT_MODEL;
  if (!existsSync(modelPath)) {
    throw new UserError(
      typeof v.model === "string"
        ? `--model ${v.model}: no such file`
        : "no default model in models/: pass --model FILE",
    );
  }
  const tokenizerPath = resolveTokenizer(v.tokenizer);
  if (typeof v.json === "string") {
    prepareOutputFile(v.json, { force: v.force === true, flag: "--json" });
  }

  const { initGpu, poolStats, sync } = await import("../gpu/mod.ts");
  const g = await initGpu();
  const { loadModel, checkTokenGrid } = await import("../model/load.ts");
  const { loadTokenizer } = await import("../tokenizer/load.ts");
  const { bestCandidate, candidateBatch, candidateCount, sampleImages, samplingPicker } =
    await import("../model/sample.ts");
  const { encodeText, generateFromText } = await import("../model/generate.ts");
  const { batchCaptionIds } = await import("../data/text.ts");
  const { noGrad, tidyAsync } = await import("../tensor/tensor.ts");
  const { floatNCHWToPixels } = await import("../tokenizer/reconstruct.ts");

  const tLoad = performance.now();
  const { model, cfg: mc, metadata } = await loadModel(modelPath);
  const tok = await loadTokenizer(tokenizerPath).catch((e) => {
    model.dispose();
    throw e;
  });
  try {
    checkTokenGrid(mc, tok.cfg, modelPath);
    if (metadata.tokenizer_sha256 && metadata.tokenizer_sha256 !== tok.sha256) {
      throw new UserError(
        `${modelPath} was trained with another tokenizer than ${tokenizerPath}: pass its --tokenizer`,
      );
    }
    await sync();
    const loadMs = performance.now() - tLoad;
    const ids = batchCaptionIds(new Array(batch).fill(prompt), mc.text_length);
    const size = tok.cfg.image;
    const params = model.parameterCount(), best = candidateCount(opts);
    console.log(
      `bench generate: ${modelPath === DEFAULT_MODEL ? "the default model" : modelPath} ` +
        `(${mc.arch}, ${(params / 1e6).toFixed(2)} M parameters, scales ${mc.scales.join("/")}), ` +
        `${size}×${size}, batch ${batch}, cfg ${cfg}` +
        `${best > 1 ? `, best of ${best}` : ""}, on ${g.name}` +
        `${g.isCpu ? " (CPU)" : ""}`,
    );
    const progress = (what: string) => {
      if (Deno.stderr.isTerminal()) {
        Deno.stderr.writeSync(new TextEncoder().encode(`\r\x1b[K${what}`));
      }
    };

    // The unbroken run: what `generate` does for one batch, timed to the pixels on the CPU.
    const once = async () => {
      const t0 = performance.now();
      await sampleImages(model, tok.vq, ids, opts);
      return performance.now() - t0;
    };
    progress("warm-up run (compiles the pipelines)…");
    await sync();
    const warmupMs = await once();
    const times: number[] = [];
    for (let r = 0; r < runs; r++) {
      progress(`run ${r + 1}/${runs}…`);
      times.push(await once());
    }
    const total = median(times);

    // The same work with a wait for the GPU after each phase.
    let breakdown: GenerateBench["breakdown"] = null;
    if (v["no-breakdown"] !== true) {
      const waits: number[] = [];
      for (let r = 0; r < 5; r++) {
        await sync();
        const t0 = performance.now();
        await sync();
        waits.push(performance.now() - t0);
      }
      const wait = median(waits);
      const phases: number[][] = [[], [], [], []];
      for (let r = 0; r < runs; r++) {
        progress(`phases ${r + 1}/${runs}…`);
        await tidyAsync(async () => {
          await sync();
          const t0 = performance.now();
          const run = candidateBatch(model, ids, opts);
          const encoded = encodeText(model, run.ids, cfg);
          await sync();
          const t1 = performance.now();
          let x: Tensor | null = null, t2 = 0;
          try {
            const fHat = bestCandidate(
              generateFromText(
                model,
                tok.vq.quantize,
                encoded,
                cfg,
                samplingPicker(opts),
                run.score,
                opts.sequential ?? 0,
              ),
              run.n,
            );
            await sync();
            t2 = performance.now();
            x = noGrad(() => tok.vq.decodeMap(fHat));
            await sync();
          } finally {
            encoded.dispose();
          }
          const t3 = performance.now();
          floatNCHWToPixels(await x!.toArray(), batch, size);
          const t4 = performance.now();
          [t1 - t0, t2 - t1, t3 - t2, t4 - t3].forEach((ms, i) => phases[i].push(ms));
        });
      }
      const [text, tokens, decode, readback] = phases.map(median);
      const less = (ms: number) => Math.max(0, ms - wait);
      breakdown = {
        text_ms: less(text),
        tokens_ms: less(tokens),
        decode_ms: less(decode),
        readback_ms: readback,
        wait_ms: wait,
      };
    }
    progress("");

    const result: GenerateBench = {
      device: g.name,
      isCpu: g.isCpu,
      f16: g.f16,
      date: new Date().toISOString(),
      model: modelPath,
      tokenizer: tokenizerPath,
      parameters: params,
      image: size,
      scales: [...mc.scales],
      prompt,
      batch,
      cfg,
      candidates: best,
      runs,
      load_ms: loadMs,
      warmup_ms: warmupMs,
      total_ms: total,
      per_image_ms: total / batch,
      runs_ms: times,
      breakdown,
      gpu_memory_mib: poolStats.allocatedBytes / 2 ** 20,
    };
    console.log(report(result));
    if (typeof v.json === "string") {
      // Microseconds are as fine as a wall clock through a queue can tell.
      const round = (_: string, x: unknown) =>
        typeof x === "number" && !Number.isInteger(x) ? Math.round(x * 1000) / 1000 : x;
      await Deno.writeTextFile(v.json, JSON.stringify(result, round, 1) + "\n");
      console.log(`wrote ${v.json}`);
    }
  } finally {
    model.dispose();
    tok.vq.dispose();
  }
}

export function report(r: GenerateBench): string {
  const lines = [
    `load ${duration(r.load_ms)} (not timed); warm-up run ${duration(r.warmup_ms)} ` +
    "(compiles the pipelines)",
    `time to ${r.batch === 1 ? "one image" : `${r.batch} images`}: ${duration(r.total_ms)}, ` +
    `median of ${r.runs} run${r.runs > 1 ? "s" : ""} (${duration(Math.min(...r.runs_ms))} – ` +
    `${duration(Math.max(...r.runs_ms))})` +
    (r.batch > 1 ? `; ${duration(r.per_image_ms)} per image` : ""),
  ];
  if (r.breakdown) {
    const b = r.breakdown;
    const sum = b.text_ms + b.tokens_ms + b.decode_ms + b.readback_ms;
    const rows: [string, number][] = [
      ["text encoding", b.text_ms],
      ["token generation (every scale)", b.tokens_ms],
      ["decode to an image", b.decode_ms],
      ["readback to pixels", b.readback_ms],
    ];
    lines.push(
      "phases (medians of runs that wait for the GPU between phases, each phase less the " +
        `${duration(b.wait_ms)} that a wait costs on an idle queue; the readback is one wait):`,
    );
    for (const [name, ms] of rows) {
      lines.push(
        `  ${name.padEnd(31)}${duration(ms).padStart(9)}  ${
          (100 * ms / sum).toFixed(0).padStart(3)
        }%`,
      );
    }
    lines.push(`  ${"sum".padEnd(31)}${duration(sum).padStart(9)}`);
  }
  lines.push(`GPU memory held by the buffer pool: ${r.gpu_memory_mib.toFixed(1)} MiB`);
  return lines.join("\n");
}
