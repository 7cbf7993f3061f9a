// Which GEMM tile each convolution of a tokenizer training step should get. It profiles one step
// (GPU timestamps per dispatch) to find the step's convolutions and what each pass costs, then
// times every distinct layer shape's forward, dx and dW GEMMs on their own under each candidate
// tile, and prints per pass the default tile's time beside the fastest tile's, and what the step
// would save: the default's step time scaled by the ratio of the isolated times.
//   deno run -A tools/tune_conv.ts [--preset tiny64] [--batch 32] [--reps 3]
//     [--tiles default,128x128x32-8x8,…] [--layers N] [--json OUT]
// On a CPU adapter it runs the GPU's tile choices (setCpuTiles(false)); keep --batch and
// --layers small there.
import { parseArgs } from "node:util";
import { gpuProfile, initGpu, startGpuProfile, stopGpuProfile, sync } from "../lib/gpu/mod.ts";
import { conv2d, type Conv2dOptions, DOWNSAMPLE } from "../lib/tensor/conv2d.ts";
import { setCpuTiles } from "../lib/tensor/matmul.ts";
import { parameter, tensor, tidy } from "../lib/tensor/tensor.ts";
import { type MatmulTile, parseTile, tileName, TILES } from "../kernels/matmul.ts";
import { TOKENIZER_PRESETS } from "../lib/tokenizer/config.ts";
import { DEFAULT_TOKENIZER_SETTINGS, TokenizerTrainer } from "../lib/train/tokenizer_trainer.ts";

const CANDIDATES = [
  "default",
  tileName(TILES.large),
  tileName(TILES.wide),
  tileName(TILES.small),
  "128x128x32-8x8-cm",
  "64x256x32-8x8-cm",
  "128x128x16-8x8",
  "128x64x32-8x8",
  "64x128x32-8x8",
  "64x64x32-4x4",
  "64x64x16-4x4",
  "32x128x32-4x8",
].join(",");

/** One line on a bad command line, no stack trace. */
function usageError(e: unknown): never {
  console.error(`tune_conv: ${(e as Error).message}`);
  Deno.exit(2);
}

const { values } = (() => {
  try {
    return parseArgs({
      args: Deno.args,
      options: {
        preset: { type: "string", default: "tiny64" },
        batch: { type: "string", default: "32" },
        reps: { type: "string", default: "3" },
        tiles: { type: "string", default: CANDIDATES },
        layers: { type: "string" },
        json: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    usageError(e);
  }
})();
if (values.help) {
  console.log(
    "usage: deno run -A tools/tune_conv.ts [--preset tiny64] [--batch 32] [--reps 3]\n" +
      "  [--tiles default,TILE,…] [--layers N] [--json OUT]",
  );
  Deno.exit(0);
}
const cfg = TOKENIZER_PRESETS[values.preset!];
const batch = Number(values.batch), reps = Number(values.reps);
if (!cfg || !(batch >= 1) || !(reps >= 1)) {
  console.error(`tune_conv: bad --preset, --batch or --reps`);
  Deno.exit(2);
}
let tiles: (MatmulTile | undefined)[] = [];
try {
  tiles = values.tiles!.split(",").map((s) => s === "default" ? undefined : parseTile(s));
} catch (e) {
  usageError(e);
}

const g = await initGpu();
setCpuTiles(false);
if (!startGpuProfile()) {
  console.error("tune_conv: this adapter has no timestamp-query feature");
  Deno.exit(1);
}
stopGpuProfile();
console.log(`${values.preset} batch ${batch} on ${g.name}`);

// The step's convolutions, from the profile of one step after a warm-up step.
const trainer = new TokenizerTrainer(cfg, { ...DEFAULT_TOKENIZER_SETTINGS, batchSize: batch });
const x0 = tensor(
  Float32Array.from({ length: batch * 3 * cfg.image ** 2 }, (_, i) => Math.sin(i * 0.37)),
  [batch, 3, cfg.image, cfg.image],
);
await trainer.trainStep(x0);
await sync();
startGpuProfile();
await trainer.trainStep(x0);
stopGpuProfile();
const stepProfile = await gpuProfile();

const LABEL = /^conv2d\.(forward|dx|dw)2? (\d+)>(\d+) (\d+)x(\d+) k(\d+)s(\d+) /;
type Pass = "forward" | "dx" | "dw";
interface Layer {
  key: string;
  Cin: number;
  Cout: number;
  H: number;
  W: number;
  k: number;
  s: number;
  /** GPU ms per step of each pass, as the step runs it. */
  stepMs: Record<Pass, number>;
}
const layers = new Map<string, Layer>();
let convMs = 0, stepMs = 0;
for (const [label, e] of stepProfile) {
  stepMs += e.ms;
  const m = LABEL.exec(label);
  if (!m) continue;
  convMs += e.ms;
  const [Cin, Cout, H, W, k, s] = m.slice(2).map(Number);
  const key = `${Cin}>${Cout} ${H}x${W} k${k}s${s}`;
  const l = layers.get(key) ??
    { key, Cin, Cout, H, W, k, s, stepMs: { forward: 0, dx: 0, dw: 0 } };
  l.stepMs[m[1] as Pass] += e.ms;
  layers.set(key, l);
}
console.log(
  `step: ${stepMs.toFixed(2)} GPU ms, of which convolution GEMMs ${convMs.toFixed(2)} ms ` +
    `(${layers.size} layer shapes)`,
);

/** GPU ms per call of each pass of one layer shape under a tile (undefined: the default's). */
async function timeLayer(l: Layer, tile: MatmulTile | undefined): Promise<Record<Pass, number>> {
  const opts: Conv2dOptions = l.s === 2
    ? { ...DOWNSAMPLE, tile }
    : { stride: 1, padding: (l.k - 1) / 2, tile };
  const run = () =>
    tidy(() => {
      const x = parameter(new Float32Array(batch * l.Cin * l.H * l.W).fill(0.01), [
        batch,
        l.Cin,
        l.H,
        l.W,
      ]);
      const w = parameter(new Float32Array(l.Cout * l.Cin * l.k * l.k).fill(0.01), [
        l.Cout,
        l.Cin,
        l.k,
        l.k,
      ]);
      const b = parameter(new Float32Array(l.Cout), [l.Cout]);
      const y = conv2d(x, w, b, opts);
      y.node!.backward(tensor(new Float32Array(y.size).fill(1), y.shape));
    });
  run(); // compiles
  await sync();
  startGpuProfile();
  for (let r = 0; r < reps; r++) run();
  stopGpuProfile();
  const out: Record<Pass, number> = { forward: 0, dx: 0, dw: 0 };
  for (const [label, e] of await gpuProfile()) {
    const m = LABEL.exec(label);
    if (m) out[m[1] as Pass] += e.ms / reps;
  }
  return out;
}

const PASSES: Pass[] = ["forward", "dx", "dw"];
const rows: Record<string, unknown>[] = [];
let saving = 0;
const todo = [...layers.values()].sort((a, b) =>
  PASSES.reduce((t, p) => t + b.stepMs[p] - a.stepMs[p], 0)
).slice(0, values.layers ? Number(values.layers) : undefined);
for (const l of todo) {
  const times: { tile: string; ms: Record<Pass, number> }[] = [];
  for (const t of tiles) {
    try {
      times.push({ tile: t ? tileName(t) : "default", ms: await timeLayer(l, t) });
    } catch (e) {
      console.log(`  ${l.key} ${t ? tileName(t) : "default"}: skipped (${(e as Error).message})`);
    }
  }
  const def = times.find((t) => t.tile === "default");
  for (const p of PASSES) {
    if (!def || !(def.ms[p] > 0)) continue;
    const best = times.reduce((a, b) => (b.ms[p] > 0 && b.ms[p] < a.ms[p] ? b : a));
    const save = l.stepMs[p] * (1 - best.ms[p] / def.ms[p]);
    saving += save;
    rows.push({
      layer: l.key,
      pass: p,
      stepMs: l.stepMs[p],
      defaultMs: def.ms[p],
      best: best.tile,
      bestMs: best.ms[p],
      all: Object.fromEntries(times.map((t) => [t.tile, t.ms[p]])),
    });
    console.log(
      `${l.key.padEnd(22)} ${p.padEnd(7)} step ${l.stepMs[p].toFixed(3).padStart(6)} ms  ` +
        `default ${def.ms[p].toFixed(3)}  best ${best.tile} ${best.ms[p].toFixed(3)} ` +
        `(${(def.ms[p] / best.ms[p]).toFixed(2)}×)  saves ${save.toFixed(3)} ms/step`,
    );
  }
}
console.log(
  `predicted step: ${stepMs.toFixed(2)} → ${(stepMs - saving).toFixed(2)} GPU ms ` +
    `(best tile per layer and pass)`,
);
if (values.json) {
  await Deno.writeTextFile(
    values.json,
    JSON.stringify({ device: g.name, batch, stepMs, convMs, saving, rows }, null, 2),
  );
}
