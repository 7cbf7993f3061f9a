// Tokenizer quality on held-out shards, for tools/BENCHMARKS.md: mean per-image PSNR and SSIM of
// the reconstructions and the share of codes in use (last scale, any scale), as JSON.
//   deno run -A tools/tokenizer_quality.ts --tokenizer T --data SHARDS [--limit N] [--grid PNG]
import { parseArgs } from "node:util";
import { initGpu } from "../lib/gpu/mod.ts";
import { loadTokenizer } from "../lib/tokenizer/load.ts";
import {
  evaluateReconstruction,
  readImageSet,
  reconstructionGrid,
} from "../lib/train/tokenizer_eval.ts";

const { values } = parseArgs({
  options: {
    tokenizer: { type: "string" },
    data: { type: "string" },
    limit: { type: "string", default: "100000" },
    grid: { type: "string" },
  },
});
if (!values.tokenizer || !values.data) {
  console.error("usage: tokenizer_quality.ts --tokenizer T --data SHARDS [--limit N] [--grid PNG]");
  Deno.exit(2);
}
await initGpu();
const tok = await loadTokenizer(values.tokenizer);
const size = tok.cfg.image;
const set = await readImageSet(values.data, size, Number(values.limit));
const t0 = performance.now();
const q = await evaluateReconstruction(tok.vq, set.pixels, set.count, 64);
if (values.grid) {
  await Deno.writeFile(values.grid, reconstructionGrid(set.pixels, q.recon, set.count, size));
}
console.log(JSON.stringify({
  data: values.data,
  images: q.images,
  psnr: Number(q.psnr.toFixed(3)),
  ssim: Number(q.ssim.toFixed(4)),
  usage_last: q.usageLast,
  usage_all: q.usageAll,
  seconds: Number(((performance.now() - t0) / 1000).toFixed(1)),
}));
