// Decode throughput of the data pipeline (issue [Data]: ≥ 300 images/s for 256-px JPEGs on the
// 2-core CI machine). Each iteration handles BATCH images; images/s = BATCH × iter/s.
// Run: deno bench -A tools/data_bench.ts
import { join } from "node:path";
import { decodeImage, encodeRgb } from "../lib/data/images.ts";
import { openLoader } from "../lib/data/loader.ts";
import { mulberry32 } from "../lib/data/random.ts";
import { ShardWriter } from "../lib/data/shards.ts";
import { renderScene, shapesScene } from "../lib/data/shapes.ts";
import { mapOrdered } from "../lib/data/stream.ts";

const BATCH = 64;
const SIDE = 256;

/**
 * Photo-like 256-px JPEGs (quality 90, ~15 KB): shapes over a gradient with sensor-like noise,
 * so the entropy coder has real work, unlike flat synthetic images.
 */
async function photoLikeJpeg(i: number): Promise<Uint8Array> {
  const rgb = renderScene(shapesScene(1, "bench", i, SIDE), SIDE);
  const rng = mulberry32(i);
  for (let p = 0; p < rgb.length; p++) {
    const x = (p / 3) % SIDE;
    rgb[p] = Math.max(0, Math.min(255, rgb[p] + x / 4 - 32 + (rng() - 0.5) * 24));
  }
  return await encodeRgb(rgb, SIDE, SIDE, "jpg", 90);
}

const jpegs = await Promise.all(Array.from({ length: BATCH }, (_, i) => photoLikeJpeg(i)));

// Four shards of BATCH samples for the whole loader path (tar read, shuffle, decode, batch).
const shardDir = await Deno.makeTempDir({ prefix: "vmambar_bench_" });
globalThis.addEventListener("unload", () => Deno.removeSync(shardDir, { recursive: true }));
const writer = new ShardWriter(shardDir, BATCH);
for (let i = 0; i < 4 * BATCH; i++) await writer.add({ jpg: jpegs[i % BATCH], txt: `image ${i}` });
await writer.close();

async function decodeAll(size: number, inFlight: number): Promise<void> {
  for await (const rgb of mapOrdered(jpegs, (b) => decodeImage(b, size), inFlight)) {
    if (rgb.length !== size * size * 3) throw new Error("bad decode");
  }
}

Deno.bench(
  `decode ${BATCH} × 256-px JPEG → 256×256 RGB, 1 in flight`,
  { group: "decode" },
  async () => {
    await decodeAll(256, 1);
  },
);

Deno.bench(
  `decode ${BATCH} × 256-px JPEG → 256×256 RGB, 4 in flight (loader default)`,
  { group: "decode", baseline: true },
  async () => await decodeAll(256, 4),
);

Deno.bench(
  `decode ${BATCH} × 256-px JPEG → 64×64 RGB, 4 in flight`,
  { group: "decode" },
  async () => {
    await decodeAll(64, 4);
  },
);

Deno.bench(`loader: ${4 * BATCH} samples from 4 shards → batches of 32 at 256 px`, async () => {
  const loader = openLoader({
    source: join(shardDir, "{00000..00003}.tar"),
    batchSize: 32,
    imageSize: 256,
    textLength: 96,
    shuffleBuffer: 100,
    epochs: 1,
  });
  let n = 0;
  for await (const b of loader) n += b.size;
  if (n !== 4 * BATCH) throw new Error(`loader gave ${n} samples`);
});
