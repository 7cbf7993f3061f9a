// `vmambar reconstruct`: images through the tokenizer and back, to see what it keeps. Each
// IMAGE is decoded, resized and centre-cropped to the tokenizer's side (as training data is),
// encoded to indices, decoded, and written as NAME.recon.png beside it with its PSNR printed.
import { UserError } from "../errors.ts";
import { type CommandSpec, parseCommand } from "./args.ts";
import { resolveTokenizer, TOKENIZER_OPTION } from "./defaults.ts";
import { prepareOutputFile } from "./output.ts";

const spec: CommandSpec = {
  name: "reconstruct",
  usage: "reconstruct [--tokenizer T] IMAGE…",
  summary: "Encode and decode images through a tokenizer; writes NAME.recon.png beside each " +
    "IMAGE (at the tokenizer's resolution) and prints its PSNR against the resized input.",
  options: {
    tokenizer: TOKENIZER_OPTION,
    force: { type: "boolean", help: "replace existing NAME.recon.png files" },
  },
  allowPositionals: true,
  more: "example: vmambar reconstruct --tokenizer tokenizer.safetensors cat.jpg dog.png",
};

export function reconstructionPath(image: string): string {
  const dot = image.lastIndexOf("."), slash = image.lastIndexOf("/");
  const stem = dot > slash + 1 ? image.slice(0, dot) : image;
  return `${stem}.recon.png`;
}

export async function main(argv: string[]): Promise<void> {
  const parsed = parseCommand(spec, argv);
  if (!parsed) return;
  const images = parsed.positionals;
  if (images.length === 0) throw new UserError("give one or more IMAGE files (see --help)");
  const tokenizerPath = resolveTokenizer(parsed.values.tokenizer);
  for (const image of images) {
    prepareOutputFile(reconstructionPath(image), {
      force: parsed.values.force === true,
      flag: `${image}'s reconstruction`,
    });
  }
  const { decodeImage } = await import("../data/images.ts");
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
      } catch {
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
    for (let i = 0; i < images.length; i++) {
      const rec = r.pixels.subarray(i * per, (i + 1) * per);
      const out = reconstructionPath(images[i]);
      await Deno.writeFile(out, encodePng(rec, size, size));
      console.log(`${images[i]} → ${out}  PSNR ${psnr(inputs[i], rec).toFixed(2)} dB`);
    }
  } finally {
    tok.vq.dispose();
  }
}
