// `vmambar reconstruct`: images through the tokenizer and back, to see what it keeps. Each
// IMAGE is decoded, resized and centre-cropped to the tokenizer's side (as training data is),
// encoded to indices, decoded, and written as NAME.recon.png (beside it, or into --out DIR) with
// its PSNR printed, then the mean PSNR over all of them.
import { basename, join } from "node:path";
import { UserError } from "../errors.ts";
import { type CommandSpec, parseCommand } from "./args.ts";
import { resolveTokenizer, TOKENIZER_OPTION } from "./defaults.ts";
import { prepareOutputFile, prepareOutputFolder } from "./output.ts";

const spec: CommandSpec = {
  name: "reconstruct",
  usage: "reconstruct [--tokenizer T] [--out DIR] IMAGE…",
  summary: "Encode and decode images through a tokenizer; writes NAME.recon.png beside each " +
    "IMAGE or into DIR (at the tokenizer's resolution), and prints its PSNR against the " +
    "resized input and the mean PSNR over all images.",
  options: {
    tokenizer: TOKENIZER_OPTION,
    out: {
      type: "string",
      value: "DIR",
      help: "write the reconstructions here (default: beside each IMAGE)",
    },
    force: { type: "boolean", help: "replace existing NAME.recon.png files" },
  },
  allowPositionals: true,
  more: "example: vmambar reconstruct --tokenizer tokenizer.safetensors cat.jpg dog.png",
};

/** IMAGE's reconstruction: NAME.recon.png beside it, or in `outDir`. */
export function reconstructionPath(image: string, outDir?: string): string {
  const dot = image.lastIndexOf("."), slash = image.lastIndexOf("/");
  const stem = dot > slash + 1 ? image.slice(0, dot) : image;
  return outDir === undefined ? `${stem}.recon.png` : join(outDir, `${basename(stem)}.recon.png`);
}

export async function main(argv: string[]): Promise<void> {
  const parsed = parseCommand(spec, argv);
  if (!parsed) return;
  const images = parsed.positionals;
  if (images.length === 0) throw new UserError("give one or more IMAGE files (see --help)");
  const tokenizerPath = resolveTokenizer(parsed.values.tokenizer);
  const outDir = parsed.values.out as string | undefined;
  if (outDir !== undefined) prepareOutputFolder(outDir, { flag: "--out" });
  const outputs = images.map((image) => reconstructionPath(image, outDir));
  const twice = outputs.find((o, i) => outputs.indexOf(o) !== i);
  if (twice) throw new UserError(`two IMAGEs would both be reconstructed as ${twice}`);
  images.forEach((image, i) =>
    prepareOutputFile(outputs[i], {
      force: parsed.values.force === true,
      flag: `${image}'s reconstruction`,
    })
  );
  const { CorruptImage, decodeImage } = await import("../data/images.ts");
  const inputs: Uint8Array[] = [];
  const { initGpu } = await import("../gpu/mod.ts");
  await initGpu();
  const { loadTokenizer } = await import("../tokenizer/load.ts");
  const tok = await loadTokenizer(tokenizerPath);
  const size = tok.cfg.image;
  try {
    for (const path of images) {
      let bytes: Uint8Array;
      try {
        bytes = await Deno.readFile(path);
      } catch {
        throw new UserError(`${path}: cannot read it`);
      }
      try {
        inputs.push(await decodeImage(bytes, size));
      } catch (e) {
        if (!(e instanceof CorruptImage)) throw e;
        throw new UserError(`${path}: not an image sharp can decode (JPEG, PNG or WebP)`);
      }
    }
    const pixels = new Uint8Array(inputs.length * size * size * 3);
    inputs.forEach((p, i) => pixels.set(p, i * p.length));
    const { reconstructImages } = await import("../tokenizer/reconstruct.ts");
    const { psnr } = await import("../train/metrics.ts");
    const { encodePng } = await import("../data/png.ts");
    const r = await reconstructImages(tok.vq, pixels, inputs.length);
    const per = size * size * 3;
    let sum = 0;
    for (let i = 0; i < images.length; i++) {
      const rec = r.pixels.subarray(i * per, (i + 1) * per);
      await Deno.writeFile(outputs[i], encodePng(rec, size, size));
      const db = psnr(inputs[i], rec);
      sum += db;
      console.log(`${images[i]} → ${outputs[i]}  PSNR ${db.toFixed(2)} dB`);
    }
    console.log(`mean PSNR ${(sum / images.length).toFixed(2)} dB over ${images.length} image(s)`);
  } finally {
    tok.vq.dispose();
  }
}
