// `vmambar eval`: how good a model or tokenizer is (issue 11). shapes: the fixed prompt set of
// the shapes world generated, read back by the detector and scored per attribute; tokens:
// validation loss and bits per token on held-out token shards; images: the tokenizer's PSNR and
// SSIM on held-out images. --out writes a Markdown report with a sample grid PNG beside it.
// shapes --tokenizer-ceiling needs no model: each prompt's own scene, rendered as the training data
// is, goes through the tokenizer and back, and the reconstructions are scored: the most a model
// generating through this tokenizer could score.
import { existsSync } from "node:fs";
import { basename } from "node:path";
import { UserError } from "../errors.ts";
import { type CommandSpec, intFlag, parseCommand, stringOption } from "./args.ts";
import { DEFAULT_MODEL, resolveTokenizer, TOKENIZER_OPTION } from "./defaults.ts";
import { prepareOutputFile } from "./output.ts";
import { SAMPLING_OPTIONS, samplingFlags, samplingText } from "./sampling.ts";
import type { SamplingOptions } from "../model/sample.ts";

const str = stringOption;
const SETS = ["shapes", "tokens", "images"] as const;
type EvalSet = typeof SETS[number];

export const spec: CommandSpec = {
  name: "eval",
  usage: "eval --set shapes|tokens DIR|images DIR [--model M] [--tokenizer T] [--out REPORT.md]\n" +
    "       eval --set shapes --tokenizer-ceiling [--edges hard|smooth|mixed|both] [--tokenizer T]",
  summary: "Measure a model or tokenizer. shapes: generate the fixed, seeded shapes-world prompt " +
    "set, detect the objects in each image and report per-attribute accuracy and the share of " +
    "images with every attribute right; tokens: validation loss and bits per token on token " +
    "shards in DIR; images: the tokenizer's PSNR and SSIM on image shards in DIR. With " +
    "--tokenizer-ceiling, shapes uses no model: it scores each prompt's own scene rendered and " +
    "passed through the tokenizer (encoded to codes, decoded), beside the renders themselves.",
  options: {
    set: str("what to measure: shapes, tokens DIR or images DIR", "SET"),
    model: str("model checkpoint (default: the one in models/)", "FILE"),
    tokenizer: TOKENIZER_OPTION,
    out: str("write a Markdown report here, and a sample grid PNG beside it", "REPORT.md"),
    limit: str("use only the first N prompts, samples or images", "N"),
    seed: str("seed of the prompt set and of sampling", "S", "0"),
    ...SAMPLING_OPTIONS,
    batch: str(
      "images or samples per batch (each batch draws its own random stream: the shapes score " +
        "of a seed is reproducible at the same --batch)",
      "N",
      "16",
    ),
    force: { type: "boolean", help: "replace an existing report" },
    "tokenizer-ceiling": {
      type: "boolean",
      help: "with --set shapes: no model; render each prompt's scene as `data shapes` does, " +
        "encode and decode it with the tokenizer and score that (the tokenizer's ceiling), " +
        "beside the renders' own score",
    },
    edges: str(
      "with --tokenizer-ceiling: the scenes' edges, hard, smooth, mixed (alternating, as " +
        "`data shapes --edges mixed`, the default checkpoints' data) or both (hard and smooth, each on every " +
        "prompt; default: both)",
      "E",
    ),
  },
  allowPositionals: true,
  more: "examples:\n  vmambar eval --set shapes --out eval/shapes.md\n" +
    "  vmambar eval --set shapes --tokenizer-ceiling --out eval/ceiling.md\n" +
    "  vmambar eval --set tokens data/tokens/val\n  vmambar eval --set images data/shapes/val",
};

/** REPORT.md's sample grid: REPORT.png beside it. */
export function gridPath(report: string): string {
  return /\.md$/i.test(report) ? report.replace(/\.md$/i, ".png") : `${report}.png`;
}

interface Settings {
  set: EvalSet;
  dir: string | null;
  modelPath: string;
  tokenizerPath: string;
  out: string | null;
  limit: number;
  seed: number;
  sampling: SamplingOptions;
  batch: number;
  /** --tokenizer-ceiling's edges; null: generate with the model. */
  ceiling: CeilingEdges | null;
}

const CEILING_EDGES = ["hard", "smooth", "mixed", "both"] as const;
type CeilingEdges = typeof CEILING_EDGES[number];

function settings(values: Record<string, unknown>, positionals: string[]): Settings {
  const v = values as Record<string, string | boolean | undefined>;
  const set = v.set;
  if (typeof set !== "string") {
    throw new UserError("give --set shapes, --set tokens DIR or --set images DIR (see --help)");
  }
  if (!(SETS as readonly string[]).includes(set)) {
    throw new UserError(`--set must be shapes, tokens or images, got ${set}`);
  }
  let dir: string | null = null;
  if (set === "shapes") {
    if (positionals.length > 0) {
      throw new UserError(`--set shapes takes no DIR, got ${positionals[0]}`);
    }
  } else {
    if (positionals.length !== 1) {
      throw new UserError(
        `--set ${set} needs one DIR of ${set === "tokens" ? "token" : "image"} ` +
          `shards, e.g. --set ${set} data/val`,
      );
    }
    dir = positionals[0];
    if (!existsSync(dir)) throw new UserError(`--set ${set} ${dir}: no such folder`);
  }
  const limit = v.limit === undefined ? Infinity : intFlag(v, "limit", 1);
  const seed = intFlag(v, "seed", 0, 0xffffffff);
  const sampling = samplingFlags(v, seed);
  const batch = intFlag(v, "batch", 1);
  let ceiling: CeilingEdges | null = null;
  if (v["tokenizer-ceiling"] === true) {
    if (set !== "shapes") throw new UserError("--tokenizer-ceiling goes with --set shapes");
    if (typeof v.model === "string") {
      throw new UserError("--tokenizer-ceiling uses no model: leave out --model");
    }
    const edges = typeof v.edges === "string" ? v.edges : "both";
    if (!(CEILING_EDGES as readonly string[]).includes(edges)) {
      throw new UserError(`--edges must be one of ${CEILING_EDGES.join(", ")}, got ${edges}`);
    }
    ceiling = edges as CeilingEdges;
  } else if (typeof v.edges === "string") {
    throw new UserError("--edges goes with --tokenizer-ceiling");
  }
  const modelPath = typeof v.model === "string" ? v.model : DEFAULT_MODEL;
  if (set !== "images" && ceiling === null && !existsSync(modelPath)) {
    throw new UserError(
      typeof v.model === "string"
        ? `--model ${v.model}: no such file`
        : "no default model in models/: pass --model FILE",
    );
  }
  const tokenizerPath = resolveTokenizer(v.tokenizer);
  const out = typeof v.out === "string" ? v.out : null;
  if (out !== null) {
    prepareOutputFile(out, { force: v.force === true, flag: "--out" });
    if (set !== "tokens") {
      prepareOutputFile(gridPath(out), { force: v.force === true, flag: "--out's grid" });
    }
  }
  return {
    set,
    dir,
    modelPath,
    tokenizerPath,
    out,
    limit,
    seed,
    sampling,
    batch,
    ceiling,
  } as Settings;
}

export async function main(argv: string[]): Promise<void> {
  const parsed = parseCommand(spec, argv);
  if (!parsed) return;
  const s = settings(parsed.values, parsed.positionals);
  const { initGpu } = await import("../gpu/mod.ts");
  await initGpu();
  const { loadTokenizer } = await import("../tokenizer/load.ts");
  const tok = await loadTokenizer(s.tokenizerPath);
  try {
    const report = s.set === "images"
      ? await evalImages(s, tok)
      : s.ceiling !== null
      ? await evalCeiling(s, tok, s.ceiling)
      : await withModel(s, tok, (model, metadata) =>
        s.set === "shapes" ? evalShapes(s, tok, model, metadata) : evalTokens(s, tok, model));
    if (s.out !== null) {
      await Deno.writeTextFile(s.out, report);
      console.log(`wrote ${s.out}${s.set === "tokens" ? "" : ` and ${gridPath(s.out)}`}`);
    }
  } finally {
    tok.vq.dispose();
  }
}

type Tokenizer = Awaited<ReturnType<typeof import("../tokenizer/load.ts").loadTokenizer>>;
type Model = import("../model/vmambar.ts").VMambAR;

async function withModel(
  s: Settings,
  tok: Tokenizer,
  run: (model: Model, metadata: Record<string, string>) => Promise<string>,
): Promise<string> {
  const { loadModel, checkTokenGrid } = await import("../model/load.ts");
  const { model, cfg, metadata } = await loadModel(s.modelPath);
  try {
    checkTokenGrid(cfg, tok.cfg, s.modelPath);
    if (metadata.tokenizer_sha256 && metadata.tokenizer_sha256 !== tok.sha256) {
      throw new UserError(
        `${s.modelPath} was trained with another tokenizer than ${s.tokenizerPath}: pass its ` +
          "--tokenizer",
      );
    }
    return await run(model, metadata);
  } finally {
    model.dispose();
  }
}

const header = (s: Settings, what: string) =>
  [
    `# vmambar eval: ${what}`,
    "",
    ...(s.set === "images" || s.ceiling !== null ? [] : [`- model: \`${s.modelPath}\``]),
    `- tokenizer: \`${s.tokenizerPath}\``,
  ].join("\n");

async function evalShapes(
  s: Settings,
  tok: Tokenizer,
  model: Model,
  metadata: Record<string, string>,
): Promise<string> {
  const { summarize, summaryTable } = await import("../eval/shapes_eval.ts");
  const { detectScene } = await import("../eval/detect.ts");
  const { imageGrid } = await import("../data/png.ts");
  const size = tok.cfg.image, per = size * size * 3;
  const { prompts, scores, pixels, secs } = await shapesRun(model, tok, {
    seed: s.seed,
    limit: s.limit,
    batch: s.batch,
    sampling: s.sampling,
    metadata,
    progress: (done, n) => console.error(`eval: ${done}/${n} images`),
  });
  const table = summaryTable(summarize(prompts, scores));
  console.log(table);
  if (s.out === null) return "";
  await Deno.writeFile(gridPath(s.out), imageGrid(pixels, prompts.length, size, 10));
  const wrong = prompts.map((p, i) => ({ p, sc: scores[i], i })).filter((x) => !x.sc.allRight);
  const seen = (i: number) =>
    detectedText(detectScene(pixels.subarray(i * per, (i + 1) * per), size));
  return [
    header(s, "shapes"),
    `- ${prompts.length} prompts, seed ${s.seed}, ${
      samplingText(s.sampling)
    }, ${size}-px images, ` +
    `${secs.toFixed(1)} s to generate`,
    "",
    table,
    "",
    `![samples, in prompt order, 10 a row](${basename(gridPath(s.out))})`,
    "",
    "## Prompts with something wrong",
    "",
    "| # | prompt | wrong | detected |",
    "|---:|---|---|---|",
    ...wrong.map(({ p, sc, i }) => `| ${i} | ${p.scene.caption} | ${wrongText(sc)} | ${seen(i)} |`),
    "",
  ].join("\n");
}

/**
 * The shapes benchmark's images and scores for one seed: its prompt set (the first `limit`),
 * generated `batch` at a time (each batch its own stream of the seed, as `generate`), detected and
 * scored. Shared by `eval --set shapes` and tools/sampling_sweep.ts.
 */
export async function shapesRun(
  model: Model,
  tok: Tokenizer,
  o: {
    seed: number;
    limit?: number;
    /** Only the prompts of these kinds (before --limit); all kinds when absent. */
    kinds?: readonly string[];
    batch: number;
    sampling: SamplingOptions;
    metadata?: Record<string, string>;
    progress?: (done: number, n: number) => void;
  },
) {
  const { shapesPromptSet, scorePrompt } = await import("../eval/shapes_eval.ts");
  const { detectScene } = await import("../eval/detect.ts");
  const { batchCaptionIds } = await import("../data/text.ts");
  const { sampleImages } = await import("../model/sample.ts");
  const size = tok.cfg.image, per = size * size * 3, T = model.cfg.text_length;
  const prompts = shapesPromptSet(o.seed, undefined, size)
    .filter((p) => !o.kinds || o.kinds.includes(p.kind)).slice(0, o.limit);
  if (o.metadata) {
    const { unknownWordsNote } = await import("../data/vocabulary.ts");
    const note = unknownWordsNote(prompts.map((p) => p.scene.caption), o.metadata);
    if (note) console.error(note);
  }
  const ids = batchCaptionIds(prompts.map((p) => p.scene.caption), T);
  const pixels = new Uint8Array(prompts.length * per);
  const t0 = performance.now();
  for (let at = 0; at < prompts.length; at += o.batch) {
    const b = Math.min(o.batch, prompts.length - at);
    const seed = (o.seed + Math.floor(at / o.batch) * 0x9e3779b9) >>> 0;
    const chunk = await sampleImages(model, tok.vq, ids.subarray(at * T, (at + b) * T), {
      ...o.sampling,
      seed,
    });
    pixels.set(chunk, at * per);
    o.progress?.(at + b, prompts.length);
  }
  const secs = (performance.now() - t0) / 1000;
  const scores = prompts.map((p, i) =>
    scorePrompt(p, detectScene(pixels.subarray(i * per, (i + 1) * per), size))
  );
  return { prompts, scores, pixels, secs };
}

type DetectedScene = import("../eval/detect.ts").DetectedScene;
type PromptScore = import("../eval/shapes_eval.ts").PromptScore;

/** What the detector saw, for the report's table of prompts with something wrong. */
function detectedText(d: DetectedScene): string {
  const objects = d.objects.map((o) => `${o.size} ${o.colour} ${o.shape} (${o.cell})`);
  return `${objects.join(", ") || "nothing"} on ${d.background}`;
}

const wrongText = (sc: PromptScore) =>
  Object.entries(sc.checked).filter(([, ok]) => !ok).map(([a]) => a).join(", ");

/**
 * The grid of --tokenizer-ceiling: per edge style, rows of `columns` renders each followed by the
 * row of their reconstructions, in prompt order (a short last row padded with white).
 */
function ceilingGrid(
  runs: { raw: Uint8Array; recon: Uint8Array }[],
  n: number,
  size: number,
  columns: number,
): { pixels: Uint8Array; count: number } {
  const per = size * size * 3, rows = Math.ceil(n / columns);
  const count = runs.length * rows * 2 * columns;
  const pixels = new Uint8Array(count * per).fill(255);
  let slot = 0;
  for (const run of runs) {
    for (let r = 0; r < rows; r++) {
      for (const src of [run.raw, run.recon]) {
        for (let c = 0; c < columns; c++, slot++) {
          const i = r * columns + c;
          if (i < n) pixels.set(src.subarray(i * per, (i + 1) * per), slot * per);
        }
      }
    }
  }
  return { pixels, count };
}

/**
 * --tokenizer-ceiling: no model. Each prompt's own scene rendered as `data shapes` draws it (hard,
 * smooth or alternating edges, or hard and smooth each on every prompt), encoded to codes and
 * decoded by the tokenizer, and both the renders and the reconstructions scored by the detector.
 */
async function evalCeiling(s: Settings, tok: Tokenizer, edges: CeilingEdges): Promise<string> {
  const { comparisonTable, shapesPromptSet, scorePrompt, summarize, summaryTable } = await import(
    "../eval/shapes_eval.ts"
  );
  const { detectScene } = await import("../eval/detect.ts");
  const { edgesOf, renderScene } = await import("../data/shapes.ts");
  const { reconstructImages } = await import("../tokenizer/reconstruct.ts");
  const { psnr } = await import("../train/metrics.ts");
  const { imageGrid } = await import("../data/png.ts");
  const size = tok.cfg.image, per = size * size * 3;
  const prompts = shapesPromptSet(s.seed, undefined, size).slice(0, s.limit);
  const n = prompts.length;
  const styles = edges === "both" ? (["hard", "smooth"] as const) : [edges];
  const t0 = performance.now();
  const runs = [];
  for (const style of styles) {
    const raw = new Uint8Array(n * per);
    prompts.forEach((p, i) => raw.set(renderScene(p.scene, size, edgesOf(style, i)), i * per));
    const recon = new Uint8Array(n * per);
    for (let at = 0; at < n; at += s.batch) {
      const b = Math.min(s.batch, n - at);
      const r = await reconstructImages(tok.vq, raw.subarray(at * per, (at + b) * per), b, b);
      recon.set(r.pixels, at * per);
      console.error(`eval: ${at + b}/${n} ${style}-edged renders through the tokenizer`);
    }
    const detect = (px: Uint8Array) =>
      prompts.map((_, i) => detectScene(px.subarray(i * per, (i + 1) * per), size));
    const rawSeen = detect(raw), reconSeen = detect(recon);
    let db = 0;
    for (let i = 0; i < n; i++) {
      db += psnr(raw.subarray(i * per, (i + 1) * per), recon.subarray(i * per, (i + 1) * per));
    }
    runs.push({
      style,
      raw,
      recon,
      rawSeen,
      reconSeen,
      rawScores: prompts.map((p, i) => scorePrompt(p, rawSeen[i])),
      reconScores: prompts.map((p, i) => scorePrompt(p, reconSeen[i])),
      psnr: db / n,
    });
  }
  const secs = (performance.now() - t0) / 1000;
  const columns = runs.flatMap((r) => [
    { name: `renders, ${r.style}`, summary: summarize(prompts, r.rawScores) },
    { name: `through the tokenizer, ${r.style}`, summary: summarize(prompts, r.reconScores) },
  ]);
  const table = comparisonTable(columns);
  const psnrLine = `mean PSNR of the reconstructions against the renders: ${
    runs.map((r) => `${r.psnr.toFixed(2)} dB (${r.style} edges)`).join(", ")
  }`;
  console.log(table);
  console.log(psnrLine);
  if (s.out === null) return "";
  const grid = ceilingGrid(runs, n, size, 10);
  await Deno.writeFile(gridPath(s.out), imageGrid(grid.pixels, grid.count, size, 10));
  const wrong = runs.flatMap((r) =>
    (["renders", "tokenizer"] as const).flatMap((image) => {
      const scores = image === "renders" ? r.rawScores : r.reconScores;
      const seen = image === "renders" ? r.rawSeen : r.reconSeen;
      return prompts.flatMap((p, i) =>
        scores[i].allRight ? [] : [
          `| ${i} | ${r.style} | ${image} | ${p.scene.caption} | ${wrongText(scores[i])} | ${
            detectedText(seen[i])
          } |`,
        ]
      );
    })
  );
  const edgesText = edges === "both"
    ? "hard and smooth edges, each on every prompt"
    : edges === "mixed"
    ? "mixed edges (hard on even prompts, smooth on odd, as `data shapes --edges mixed`)"
    : `${edges} edges`;
  return [
    header(s, "shapes, the tokenizer's ceiling"),
    `- no model: each prompt's own scene rendered (${edgesText}), encoded to codes and decoded ` +
    "by the tokenizer; the reconstructions scored as generated images are, beside the renders",
    `- ${n} prompts, seed ${s.seed}, ${size}-px images, ${secs.toFixed(1)} s`,
    `- ${psnrLine}`,
    "",
    table,
    "",
    ...runs.flatMap((r) => [
      `## Through the tokenizer, ${r.style} edges`,
      "",
      summaryTable(summarize(prompts, r.reconScores)),
      "",
    ]),
    `![renders, each row of 10 followed by its reconstructions, in prompt order${
      runs.length > 1 ? "; hard edges, then smooth" : ""
    }](${basename(gridPath(s.out))})`,
    "",
    "## Prompts with something wrong",
    "",
    "| # | edges | image | prompt | wrong | detected |",
    "|---:|---|---|---|---|---|",
    ...(wrong.length > 0 ? wrong : ["| | | | none | | |"]),
    "",
  ].join("\n");
}

async function evalTokens(s: Settings, tok: Tokenizer, model: Model): Promise<string> {
  const { readTokenSet } = await import("../data/token_set.ts");
  const { evaluateTokens } = await import("../train/model_run.ts");
  const set = await readTokenSet(s.dir!, {
    tokenizerSha256: tok.sha256,
    tokenizer: s.tokenizerPath,
    scales: [...tok.cfg.scales],
    vocab: tok.cfg.vocab,
    T: model.cfg.text_length,
  });
  const n = Math.min(set.count, s.limit);
  console.error(`eval: ${n} samples of ${s.dir}`);
  const r = await evaluateTokens(model, tok.vq.quantize, set, s.batch, n);
  const bits = r.loss / Math.LN2;
  const rows = [
    "| samples | loss (nats) | bits per token | token accuracy per scale |",
    "|---:|---:|---:|---|",
    `| ${n} | ${r.loss.toFixed(4)} | ${bits.toFixed(4)} | ${
      r.accuracy.map((a) => a.toFixed(3)).join(" · ")
    } |`,
  ].join("\n");
  console.log(rows);
  return `${header(s, `tokens in ${s.dir}`)}\n\n${rows}\n`;
}

async function evalImages(s: Settings, tok: Tokenizer): Promise<string> {
  const { evaluateReconstruction, readImageSet, reconstructionGrid } = await import(
    "../train/tokenizer_eval.ts"
  );
  const size = tok.cfg.image;
  const images = await readImageSet(s.dir!, size, Math.min(s.limit, 1e9));
  if (images.count === 0) throw new UserError(`--set images ${s.dir}: no images in it`);
  console.error(`eval: ${images.count} images of ${s.dir}`);
  const q = await evaluateReconstruction(tok.vq, images.pixels, images.count, s.batch);
  const rows = [
    "| images | PSNR (dB) | SSIM | codes used (last scale) | codes used (any scale) |",
    "|---:|---:|---:|---:|---:|",
    `| ${q.images} | ${q.psnr.toFixed(3)} | ${q.ssim.toFixed(4)} | ${q.usageLast.toFixed(3)} | ${
      q.usageAll.toFixed(3)
    } |`,
  ].join("\n");
  console.log(rows);
  if (s.out === null) return "";
  await Deno.writeFile(
    gridPath(s.out),
    reconstructionGrid(images.pixels, q.recon, images.count, size),
  );
  return [
    header(s, `images in ${s.dir}`),
    "",
    rows,
    "",
    `![originals above, reconstructions below](${basename(gridPath(s.out))})`,
    "",
  ].join("\n");
}
