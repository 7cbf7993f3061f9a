// `vmambar eval`: how good a model or tokenizer is (issue 11). shapes: the fixed prompt set of
// the shapes world generated, read back by the detector and scored per attribute; tokens:
// validation loss and bits per token on held-out token shards; images: the tokenizer's PSNR and
// SSIM on held-out images. --out writes a Markdown report with a sample grid PNG beside it.
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
  usage: "eval --set shapes|tokens DIR|images DIR [--model M] [--tokenizer T] [--out REPORT.md]",
  summary: "Measure a model or tokenizer. shapes: generate the fixed, seeded shapes-world prompt " +
    "set, detect the objects in each image and report per-attribute accuracy and the share of " +
    "images with every attribute right; tokens: validation loss and bits per token on token " +
    "shards in DIR; images: the tokenizer's PSNR and SSIM on image shards in DIR.",
  options: {
    set: str("what to measure: shapes, tokens DIR or images DIR", "SET"),
    model: str("model checkpoint (default: the one in models/)", "FILE"),
    tokenizer: TOKENIZER_OPTION,
    out: str("write a Markdown report here, and a sample grid PNG beside it", "REPORT.md"),
    limit: str("use only the first N prompts, samples or images", "N"),
    seed: str("seed of the prompt set and of sampling", "S", "0"),
    ...SAMPLING_OPTIONS,
    batch: str("images or samples per batch", "N", "16"),
    force: { type: "boolean", help: "replace an existing report" },
  },
  allowPositionals: true,
  more: "examples:\n  vmambar eval --set shapes --out eval/shapes.md\n" +
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
}

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
  const modelPath = typeof v.model === "string" ? v.model : DEFAULT_MODEL;
  if (set !== "images" && !existsSync(modelPath)) {
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
  return { set, dir, modelPath, tokenizerPath, out, limit, seed, sampling, batch } as Settings;
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
    ...(s.set === "images" ? [] : [`- model: \`${s.modelPath}\``]),
    `- tokenizer: \`${s.tokenizerPath}\``,
  ].join("\n");

async function evalShapes(
  s: Settings,
  tok: Tokenizer,
  model: Model,
  metadata: Record<string, string>,
): Promise<string> {
  const { shapesPromptSet, scorePrompt, summarize, summaryTable } = await import(
    "../eval/shapes_eval.ts"
  );
  const { detectScene } = await import("../eval/detect.ts");
  const { batchCaptionIds } = await import("../data/text.ts");
  const { sampleImages } = await import("../model/sample.ts");
  const { imageGrid } = await import("../data/png.ts");
  const size = tok.cfg.image, per = size * size * 3, T = model.cfg.text_length;
  const prompts = shapesPromptSet(s.seed, undefined, size).slice(0, s.limit);
  const { unknownWordsNote } = await import("../data/vocabulary.ts");
  const note = unknownWordsNote(prompts.map((p) => p.scene.caption), metadata);
  if (note) console.error(note);
  const ids = batchCaptionIds(prompts.map((p) => p.scene.caption), T);
  const pixels = new Uint8Array(prompts.length * per);
  const t0 = performance.now();
  const opts = s.sampling;
  for (let at = 0; at < prompts.length; at += s.batch) {
    const b = Math.min(s.batch, prompts.length - at);
    // As `generate` does: each batch its own stream of the seed.
    const seed = (s.seed + Math.floor(at / s.batch) * 0x9e3779b9) >>> 0;
    const chunk = await sampleImages(model, tok.vq, ids.subarray(at * T, (at + b) * T), {
      ...opts,
      seed,
    });
    pixels.set(chunk, at * per);
    console.error(`eval: ${at + b}/${prompts.length} images`);
  }
  const secs = (performance.now() - t0) / 1000;
  const scores = prompts.map((p, i) =>
    scorePrompt(p, detectScene(pixels.subarray(i * per, (i + 1) * per), size))
  );
  const table = summaryTable(summarize(prompts, scores));
  console.log(table);
  if (s.out === null) return "";
  await Deno.writeFile(gridPath(s.out), imageGrid(pixels, prompts.length, size, 10));
  const wrong = prompts.map((p, i) => ({ p, sc: scores[i], i })).filter((x) => !x.sc.allRight);
  const seen = (i: number) => {
    const d = detectScene(pixels.subarray(i * per, (i + 1) * per), size);
    const objects = d.objects.map((o) => `${o.size} ${o.colour} ${o.shape} (${o.cell})`);
    return `${objects.join(", ") || "nothing"} on ${d.background}`;
  };
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
    ...wrong.map(({ p, sc, i }) =>
      `| ${i} | ${p.scene.caption} | ${
        Object.entries(sc.checked).filter(([, ok]) => !ok).map(([a]) => a).join(", ")
      } | ${seen(i)} |`
    ),
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
