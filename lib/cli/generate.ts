// `vmambar generate "prompt" …`: images from captions with a trained model (DESIGN §4).
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { UserError } from "../errors.ts";
import { captionIds } from "../data/text.ts";
import { unknownWordsNote } from "../data/vocabulary.ts";
import { type CommandSpec, intFlag, parseCommand, stringOption } from "./args.ts";
import { DEFAULT_MODEL, resolveTokenizer } from "./defaults.ts";
import { SAMPLING_OPTIONS, samplingFlags } from "./sampling.ts";
import { prepareOutputFile, prepareOutputFolder, writeAtomic } from "./output.ts";

const str = stringOption;

export const spec: CommandSpec = {
  name: "generate",
  usage: 'generate "PROMPT" ["PROMPT" …] [--prompts FILE] [--n N] [--out DIR|FILE.png] [options]',
  summary: "Generate images from captions, scale by scale, on the GPU (or the CPU). Writes one " +
    "PNG per image into DIR (0000-a-red-circle.png, …), or one image or a grid into FILE.png.",
  options: {
    prompts: str("a file of prompts, one per line", "FILE"),
    model: str("model checkpoint (default: the one in models/)", "FILE"),
    tokenizer: str("tokenizer checkpoint (default: the one in models/)", "FILE"),
    n: str("images per prompt", "N", "1"),
    out: str("a folder for one PNG per image, or FILE.png for one image or a grid", "PATH", "out"),
    ...SAMPLING_OPTIONS,
    seed: str("seed: the same seed gives the same images", "S", "0"),
    batch: str("images generated at once", "N", "16"),
    force: { type: "boolean", help: "overwrite existing output files" },
  },
  allowPositionals: true,
  more: 'example: vmambar generate "a red circle in the top left" --n 4 --out circles.png',
};

/** A file-name slug of a prompt: lowercase words joined by '-', at most 48 characters. */
export function promptSlug(prompt: string): string {
  const s = prompt.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 48);
  return s.replace(/-+$/, "") || "image";
}

async function readPrompts(positionals: string[], file: unknown): Promise<string[]> {
  const prompts = [...positionals];
  if (typeof file === "string") {
    let text: string;
    try {
      text = await Deno.readTextFile(file);
    } catch {
      throw new UserError(`--prompts ${file}: cannot read it`);
    }
    prompts.push(...text.split("\n").map((l) => l.trim()).filter((l) => l !== ""));
  }
  if (prompts.length === 0) {
    throw new UserError('give a prompt, e.g. vmambar generate "a red circle" (or --prompts FILE)');
  }
  prompts.forEach((p, i) => {
    if (p.trim() === "") {
      throw new UserError(
        `prompt ${i + 1} is empty: describe the image (the empty caption is the null condition)`,
      );
    }
  });
  return prompts;
}

/** The output files, in image order; existing ones are refused without --force before any work. */
function plan(out: string, prompts: string[], n: number, force: boolean) {
  const total = prompts.length * n;
  const asFile = /\.png$/i.test(out);
  if (asFile) {
    if (existsSync(out) && statSync(out).isDirectory()) {
      throw new UserError(`--out ${out} is a folder: give FILE.png or a folder without .png`);
    }
    if (existsSync(out) && !force) {
      throw new UserError(`--out ${out} exists (pass --force to overwrite)`);
    }
    return { asFile, files: [out], total };
  }
  if (existsSync(out) && !statSync(out).isDirectory()) {
    throw new UserError(`--out ${out} is a file: name a folder, or FILE.png`);
  }
  const files: string[] = [];
  prompts.forEach((p, i) => {
    for (let j = 0; j < n; j++) {
      const index = i * n + j;
      files.push(join(out, `${String(index).padStart(4, "0")}-${promptSlug(p)}.png`));
    }
  });
  const clash = files.find((f) => existsSync(f));
  if (clash && !force) throw new UserError(`${clash} exists (pass --force to overwrite)`);
  return { asFile, files, total };
}

export async function main(argv: string[]): Promise<void> {
  const parsed = parseCommand(spec, argv);
  if (!parsed) return;
  const v = parsed.values;
  const prompts = await readPrompts(parsed.positionals, v.prompts);
  const n = intFlag(v, "n", 1);
  const batch = intFlag(v, "batch", 1);
  const seed = intFlag(v, "seed", 0);
  if (seed > 0xffffffff) throw new UserError(`--seed must be below 2^32, got ${seed}`);
  const sampling = samplingFlags(v, seed);
  const out = String(v.out);
  const target = plan(out, prompts, n, v.force === true);
  const modelPath = typeof v.model === "string" ? v.model : DEFAULT_MODEL;
  if (!existsSync(modelPath)) {
    throw new UserError(
      typeof v.model === "string"
        ? `--model ${v.model}: no such file`
        : "no default model in models/ yet: train one with vmambar train (see the README), " +
          "then pass it with --model",
    );
  }
  const tokenizerPath = resolveTokenizer(v.tokenizer);
  if (target.asFile) prepareOutputFile(out, { force: v.force === true, flag: "--out" });
  else prepareOutputFolder(out, { flag: "--out" });

  const { initGpu, gpu } = await import("../gpu/mod.ts");
  await initGpu();
  const { loadModel, checkTokenGrid } = await import("../model/load.ts");
  const { loadTokenizer } = await import("../tokenizer/load.ts");
  const { candidateCount, sampleImages } = await import("../model/sample.ts");
  const { encodePng, imageGrid } = await import("../data/png.ts");
  const t0 = performance.now();
  const { model, cfg: mc, metadata } = await loadModel(modelPath);
  const tok = await loadTokenizer(tokenizerPath);
  try {
    checkTokenGrid(mc, tok.cfg, modelPath);
    if (metadata.tokenizer_sha256 && metadata.tokenizer_sha256 !== tok.sha256) {
      throw new UserError(
        `${modelPath} was trained with another tokenizer than ${tokenizerPath}: pass its --tokenizer`,
      );
    }
    const note = unknownWordsNote(prompts, metadata);
    if (note) console.error(note);
    const T = mc.text_length;
    prompts.forEach((p, i) => {
      const bytes = new TextEncoder().encode(p).length;
      if (bytes + 2 > T) {
        console.error(
          `generate: warning: prompt ${i + 1} has ${bytes} bytes; the model reads ${
            T - 2
          }, the rest is cut`,
        );
      }
    });
    const ids = new Int32Array(target.total * T);
    prompts.forEach((p, i) => {
      for (let j = 0; j < n; j++) {
        captionIds(p, T, ids.subarray((i * n + j) * T, (i * n + j + 1) * T));
      }
    });
    const size = tok.cfg.image, per = size * size * 3;
    const pixels = new Uint8Array(target.total * per);
    const opts = sampling;
    for (let s = 0; s < target.total; s += batch) {
      const b = Math.min(batch, target.total - s);
      // Each chunk draws its own stream of the seed, so a chunk's images don't repeat another's.
      const chunk = await sampleImages(model, tok.vq, ids.subarray(s * T, (s + b) * T), {
        ...opts,
        seed: (seed + Math.floor(s / batch) * 0x9e3779b9) >>> 0,
      });
      pixels.set(chunk, s * per);
      if (target.total > batch) console.error(`generate: ${s + b}/${target.total} images`);
    }
    if (target.asFile) {
      const png = target.total === 1
        ? encodePng(pixels, size, size)
        : imageGrid(pixels, target.total, size, n > 1 ? n : Math.min(8, target.total));
      await writeAtomic(out, png);
    } else {
      for (let i = 0; i < target.total; i++) {
        await writeAtomic(
          target.files[i],
          encodePng(pixels.subarray(i * per, (i + 1) * per), size, size),
        );
      }
    }
    const secs = ((performance.now() - t0) / 1000).toFixed(1);
    const where = target.asFile || target.files.length <= 4
      ? target.files.join(", ")
      : `${target.files.length} PNG files in ${out}/`;
    const count = target.total, best = candidateCount(opts);
    console.log(
      `wrote ${where} (${count} image${count > 1 ? "s" : ""}${
        best > 1 ? `, ${count > 1 ? "each " : ""}the best of ${best}` : ""
      } in ${secs} s on ${gpu().name})`,
    );
  } finally {
    model.dispose();
    tok.vq.dispose();
  }
}
