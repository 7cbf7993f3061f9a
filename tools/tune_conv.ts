// Which GEMM tile each convolution of a tokenizer training step should get. It forces each
// candidate tile on every convolution (setConvTile) and profiles whole training steps (GPU
// timestamps per dispatch), then prints per layer shape and pass (forward, dx, dW) the default
// tiles' GPU ms per step beside the fastest candidate's, and the step the best tile per layer and
// pass would give.
//   deno run -A tools/tune_conv.ts [--preset tiny64] [--batch 32] [--reps 3]
//     [--tiles default,128x128x32-8x8,…] [--layers N] [--json OUT] [--table OUT] [--from-scratch]
// On a CPU adapter it runs the GPU's tile choices (setCpuTiles(false)); keep --batch and
// --layers small there.
import { parseArgs } from "node:util";
import { gpuProfile, initGpu, startGpuProfile, stopGpuProfile, sync } from "../lib/gpu/mod.ts";
import { prepareOutputFile, writeAtomic } from "../lib/cli/output.ts";
import { setConvTile, setConvTileTable } from "../lib/tensor/conv2d_implicit.ts";
import { setCpuTiles } from "../lib/tensor/matmul.ts";
import { tensor } from "../lib/tensor/tensor.ts";
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
  "64x192x32-4x12",
  "128x192x32-8x12",
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
        table: { type: "string" },
        "from-scratch": { type: "boolean", default: false },
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
      "  [--tiles default,TILE,…] [--layers N] [--json OUT] [--table OUT] [--from-scratch]",
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

// Both outputs are checked before any GPU work (one line each), and written whole or not at all.
try {
  for (const [flag, path] of [["--json", values.json], ["--table", values.table]]) {
    if (path) prepareOutputFile(path, { force: true, flag: flag! });
  }
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

// Every candidate tile is forced on the step's heaviest layer shapes (setConvTile; --layers, by
// the default's profile) and whole steps are profiled, so each pass is timed where the step runs
// it: between the step's other kernels, at its clocks. (Layers timed alone, after the idle of a
// pipeline compile, ran up to 5× slower than in the step and misled an earlier version.) Then the
// best tile per layer and pass (where it beats the default by over 2%) goes into a table, and the
// step is profiled and timed back to back with it against without it.
const trainer = new TokenizerTrainer(cfg, { ...DEFAULT_TOKENIZER_SETTINGS, batchSize: batch });
const x0 = tensor(
  Float32Array.from({ length: batch * 3 * cfg.image ** 2 }, (_, i) => Math.sin(i * 0.37)),
  [batch, 3, cfg.image, cfg.image],
);

const LABEL = /^conv2d\.(forward|dx|dw)[23]? (\d+>\d+ \d+x\d+ k\d+s\d+) /;

/** GPU ms per step: in all, and of each convolution pass by its convTileKey. */
interface StepTimes {
  stepMs: number;
  passes: Map<string, number>;
}

/** Profiles `reps` steps after two untimed ones (compiles, clocks). */
async function timeSteps(): Promise<StepTimes> {
  for (let r = 0; r < 2; r++) await trainer.trainStep(x0);
  await sync();
  startGpuProfile();
  for (let r = 0; r < reps; r++) await trainer.trainStep(x0);
  stopGpuProfile();
  const out: StepTimes = { stepMs: 0, passes: new Map() };
  for (const [label, e] of await gpuProfile()) {
    out.stepMs += e.ms / reps;
    const m = LABEL.exec(label);
    if (m) {
      out.passes.set(`${m[1]} ${m[2]}`, (out.passes.get(`${m[1]} ${m[2]}`) ?? 0) + e.ms / reps);
    }
  }
  return out;
}

/** Wall ms per step, `steps` back to back, best of two rounds in alternation per table. */
async function wallSteps(tables: Map<string, MatmulTile>[], steps = 10): Promise<number[]> {
  const best = tables.map(() => Infinity);
  for (let round = 0; round < 2; round++) {
    for (const [i, t] of tables.entries()) {
      setConvTileTable(t);
      await trainer.trainStep(x0);
      await sync();
      const t0 = performance.now();
      for (let s = 0; s < steps; s++) await trainer.trainStep(x0);
      await sync();
      best[i] = Math.min(best[i], (performance.now() - t0) / steps);
    }
  }
  return best;
}

// The baseline is kernels/conv_tiles.json (a second round refines it); --from-scratch: without it.
const untuned = new Map<string, MatmulTile>();
const shipped = setConvTileTable(untuned);
setConvTileTable(values["from-scratch"] ? untuned : shipped);
const def = await timeSteps();
const keys = [...def.passes.keys()];
const layerMs = (layer: string) =>
  keys.filter((k) => k.endsWith(layer)).reduce((t, k) => t + def.passes.get(k)!, 0);
const layers = [...new Set(keys.map((k) => k.slice(k.indexOf(" ") + 1)))]
  .sort((a, b) => layerMs(b) - layerMs(a))
  .slice(0, values.layers ? Number(values.layers) : undefined);
const tuned = keys.filter((k) => layers.some((l) => k.endsWith(l)));
const convMs = keys.reduce((t, k) => t + def.passes.get(k)!, 0);
console.log(
  `baseline tiles: step ${def.stepMs.toFixed(2)} GPU ms, convolution GEMMs ${
    convMs.toFixed(2)
  } ms; ` +
    `tuning ${layers.length} layer shapes (${tuned.length} passes)`,
);

const results: Record<string, Record<string, number>> = Object.fromEntries(
  tuned.map((k) => [k, { default: def.passes.get(k)! }]),
);
const report = async (extra: Record<string, unknown> = {}) => {
  if (!values.json) return;
  await writeAtomic(
    values.json,
    JSON.stringify(
      { device: g.name, batch, stepMs: def.stepMs, convMs, results, ...extra },
      null,
      2,
    ),
  );
};
for (const tile of tiles) {
  if (!tile) continue;
  const name = tileName(tile);
  try {
    setConvTile(tile, tuned);
    const t = await timeSteps();
    console.log(`${name}: step ${t.stepMs.toFixed(2)} GPU ms`);
    for (const k of tuned) {
      const ms = t.passes.get(k) ?? NaN;
      results[k][name] = ms;
      console.log(
        `  ${k.padEnd(30)} ${ms.toFixed(3).padStart(7)} ms/step (default ${
          results[k].default.toFixed(3)
        })`,
      );
    }
  } catch (e) {
    console.log(`${name}: skipped (${(e as Error).message})`);
  } finally {
    setConvTile(undefined);
  }
  await report();
}

const table = new Map<string, MatmulTile>(values["from-scratch"] ? [] : shipped);
let saving = 0;
for (const k of tuned) {
  const [bestName, bestMs] = Object.entries(results[k]).reduce((a, b) => (b[1] < a[1] ? b : a));
  if (bestName === "default" || !(bestMs < results[k].default * 0.98)) continue;
  table.set(k, parseTile(bestName));
  saving += results[k].default - bestMs;
  console.log(`${k.padEnd(30)} ${bestName} (${(results[k].default / bestMs).toFixed(2)}×)`);
}
setConvTileTable(table);
const withTable = await timeSteps();
console.log(
  `step with the new table: ${def.stepMs.toFixed(2)} → ${withTable.stepMs.toFixed(2)} GPU ms ` +
    `(predicted ${(def.stepMs - saving).toFixed(2)})`,
);
const [wallDefault, wallTable, wallShipped] = await wallSteps([untuned, table, shipped]);
console.log(
  `step (wall, back to back): no table ${wallDefault.toFixed(2)} ms, kernels/conv_tiles.json ` +
    `${wallShipped.toFixed(2)} ms, the new table ${wallTable.toFixed(2)} ms`,
);
const tableJson = {
  about: "GEMM tiles per convolution pass and layer shape, measured by tools/tune_conv.ts " +
    "(tools/BENCHMARKS.md); layers not listed get chooseTile's.",
  measured: `${g.name}, ${values.preset} batch ${batch}: GPU ${def.stepMs.toFixed(2)} ms a step ` +
    `(the baseline tiles) → ${withTable.stepMs.toFixed(2)}, wall ${wallDefault.toFixed(2)} ms ` +
    `(no table) → ${wallTable.toFixed(2)}`,
  tiles: Object.fromEntries([...table].map(([k, t]) => [k, tileName(t)])),
};
await report({ table: tableJson, wall: { wallDefault, wallTable, wallShipped } });
if (values.table) await writeAtomic(values.table, JSON.stringify(tableJson, null, 2) + "\n");
