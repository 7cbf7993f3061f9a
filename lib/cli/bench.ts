// vmambar bench: matmul GFLOP/s (square sizes and the model's awkward shapes), elementwise
// bandwidth and dispatch rate on this GPU. Every kernel variant is checked against a float64
// reference before it is timed (llm.c's habit); timings record many iterations into one submit
// and take the median of several repeats after a warm-up.
import { intFlag, parseCommand, type Values } from "./args.ts";
import { prepareOutputFile } from "./output.ts";
import { UserError } from "../errors.ts";
import { initGpu, readBuffer, sync, trimPool } from "../gpu/mod.ts";
import { parseTile, tileName } from "../../kernels/matmul.ts";
import { chooseTile, encodeMatmul, planMatmul } from "../tensor/matmul.ts";
import { add, cast, fill } from "../tensor/ops.ts";
import { halfToFloat, type Tensor, tensor } from "../tensor/tensor.ts";

const spec = {
  name: "bench",
  usage: "bench [options]  |  bench generate [options]",
  summary: "Measure matmul, elementwise and dispatch throughput on this GPU. " +
    "`vmambar bench generate` measures the time to one image instead (see its --help).",
  options: {
    ops: {
      type: "string" as const,
      default: "matmul,awkward,elementwise,dispatch",
      value: "LIST",
      help:
        "what to measure: matmul (square sizes), awkward (the model's shapes), elementwise, dispatch",
    },
    sizes: {
      type: "string" as const,
      value: "LIST",
      help: "square matmul sizes (default: 1024,2048,4096,8192; 128,256,512 on a CPU adapter)",
    },
    dtypes: {
      type: "string" as const,
      value: "LIST",
      help: "matmul storage types (default: f32,f16 where the adapter has shader-f16)",
    },
    tiles: {
      type: "string" as const,
      default: "auto",
      value: "LIST",
      help:
        "matmul tiles to compare, e.g. auto,128x128x16-8x8-pf,64x64x16-4x4 (auto: the op's choice)",
    },
    repeats: {
      type: "string" as const,
      default: "5",
      value: "N",
      help: "timed repeats (median)",
    },
    json: {
      type: "string" as const,
      value: "FILE",
      help: "also write the results as JSON",
    },
    force: { type: "boolean" as const, help: "replace an existing --json file" },
  },
  more:
    "Shapes read M×K×N: C[M, N] = A[M, K]·B[K, N]. The device script tools/bench-device.sh runs\n" +
    "this beside PyTorch and prints the ratios.",
};

export interface BenchResult {
  op: string;
  shape: string;
  dtype: string;
  kernel: string;
  ms: number;
  /** GFLOP/s for matmul, GB/s for elementwise, dispatches/s for dispatch. */
  value: number;
  unit: string;
  /** Relative error of the checked outputs against float64 (matmul and elementwise). */
  error?: number;
}

const list = (v: Values[string]) => String(v).split(",").map((s) => s.trim()).filter(Boolean);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Wall time of recording nothing more and waiting for `n` recorded iterations to finish. */
async function timeBatch(record: (iters: number) => void, n: number): Promise<number> {
  record(n);
  // Only the GPU's work is timed: recording happened before the submit that sync() makes.
  const t0 = performance.now();
  await sync();
  return performance.now() - t0;
}

/**
 * Median ms per iteration of what `record(n)` records. Waiting for the queue costs a fixed
 * round trip (~11 ms through Deno's WebGPU, on lavapipe and on an H200 alike) that would swamp
 * small kernels, so each repeat times n and 2n iterations and keeps the difference. n is chosen
 * after a warm-up so that n iterations take about `targetMs` of GPU time.
 */
async function timeRecorded(record: (iters: number) => void, repeats: number, targetMs = 100) {
  await timeBatch(record, 1); // compiles the pipeline, first-touches buffers
  const t1 = await timeBatch(record, 1);
  const t5 = await timeBatch(record, 5);
  const estimate = Math.max((t5 - t1) / 4, 1e-3);
  const n = Math.max(2, Math.min(2000, Math.ceil(targetMs / estimate)));
  const times: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const a = await timeBatch(record, n);
    const b = await timeBatch(record, 2 * n);
    times.push((b - a) / n);
  }
  return median(times);
}

// ---------------------------------------------------------------------------------------------
// Matmul

interface MatmulShape {
  op: string;
  label: string;
  batch: number;
  M: number;
  K: number;
  N: number;
  transB?: boolean;
  /** B has no batch dim (a Linear's weight). */
  sharedB?: boolean;
}

function randomHost(n: number): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = Math.random() * 2 - 1;
  return x;
}

/** Host copies of the operands as the GPU holds them, for the sampled reference. */
async function hostValues(t: Tensor): Promise<(i: number) => number> {
  const raw = await readBuffer(t.buffer, t.bytes);
  if (t.dtype === "f16") {
    const h = new Uint16Array(raw);
    return (i) => halfToFloat(h[i]);
  }
  const f = new Float32Array(raw);
  return (i) => f[i];
}

/**
 * Checks a product written over a NaN-poisoned output: every element written and finite, and
 * 64 sampled elements against float64 dot products.
 */
async function checkProduct(
  s: MatmulShape,
  a: (i: number) => number,
  b: (i: number) => number,
  out: Tensor,
): Promise<number> {
  const raw = await readBuffer(out.buffer, out.bytes);
  const value = out.dtype === "f16"
    ? ((h) => (i: number) => halfToFloat(h[i]))(new Uint16Array(raw))
    : ((f) => (i: number) => f[i])(new Float32Array(raw));
  for (let i = 0; i < out.size; i++) {
    if (!Number.isFinite(value(i))) return Infinity;
  }
  const { M, K, N } = s;
  let num = 0, den = 0;
  for (let t = 0; t < 64; t++) {
    const z = Math.floor(Math.random() * s.batch);
    const m = Math.floor(Math.random() * M), n = Math.floor(Math.random() * N);
    const oa = z * M * K, ob = s.sharedB ? 0 : z * K * N;
    let ref = 0;
    for (let k = 0; k < K; k++) {
      ref += a(oa + m * K + k) * b(ob + (s.transB ? n * K + k : k * N + n));
    }
    const d = value(z * M * N + m * N + n) - ref;
    num += d * d;
    den += ref * ref;
  }
  return Math.sqrt(num / Math.max(den, 1e-30));
}

async function benchMatmulShape(
  s: MatmulShape,
  dtypes: string[],
  tiles: string[],
  repeats: number,
  out: BenchResult[],
) {
  const aShape = s.batch > 1 ? [s.batch, s.M, s.K] : [s.M, s.K];
  const bMat = s.transB ? [s.N, s.K] : [s.K, s.N];
  const bShape = s.batch > 1 && !s.sharedB ? [s.batch, ...bMat] : bMat;
  const a32 = tensor(randomHost(aShape.reduce((x, y) => x * y)), aShape);
  const b32 = tensor(randomHost(bShape.reduce((x, y) => x * y)), bShape);
  const flops = 2 * s.batch * s.M * s.N * s.K;
  for (const dtype of dtypes) {
    const a = dtype === "f16" ? cast(a32, "f16") : a32;
    const b = dtype === "f16" ? cast(b32, "f16") : b32;
    const [av, bv] = [await hostValues(a), await hostValues(b)];
    const plan = planMatmul("matmul", a, b, { transB: s.transB });
    for (const name of tiles) {
      const tile = name === "auto" ? undefined : parseTile(name);
      const rows = s.sharedB ? s.batch * s.M : s.M;
      const auto = chooseTile(rows, s.N, s.sharedB ? 1 : s.batch, plan.dtype);
      const kernel = name === "auto" ? `auto ${tileName(auto)}` : name;
      const c = fill(plan.outShape, NaN, plan.dtype);
      let error = Infinity;
      try {
        encodeMatmul(plan, a, b, c, { transB: s.transB, tile });
        error = await checkProduct(s, av, bv, c);
      } catch (e) {
        // One broken variant must not cost the rest of a device run.
        console.error(`bench: ${s.label} ${dtype} ${kernel}: ${(e as Error).message}`);
      }
      const tol = dtype === "f16" ? 1e-2 : 1e-4;
      if (!(error <= tol)) {
        console.error(
          `bench: ${s.label} ${dtype} ${kernel} fails its check (error ${error}); not timed`,
        );
        out.push({
          op: s.op,
          shape: s.label,
          dtype,
          kernel,
          ms: NaN,
          value: NaN,
          unit: "GFLOP/s",
          error,
        });
        c.dispose();
        continue;
      }
      const ms = await timeRecorded((n) => {
        for (let i = 0; i < n; i++) encodeMatmul(plan, a, b, c, { transB: s.transB, tile });
      }, repeats);
      c.dispose();
      const r = {
        op: s.op,
        shape: s.label,
        dtype,
        kernel,
        ms,
        value: flops / ms / 1e6,
        unit: "GFLOP/s",
        error,
      };
      out.push(r);
      report(r);
    }
    if (a !== a32) a.dispose();
    if (b !== b32) b.dispose();
  }
  a32.dispose();
  b32.dispose();
  trimPool();
}

// ---------------------------------------------------------------------------------------------
// Elementwise bandwidth and dispatch rate

async function benchElementwise(n: number, repeats: number, out: BenchResult[]) {
  const ha = randomHost(n), hb = randomHost(n);
  const a = tensor(ha, [n]), b = tensor(hb, [n]);
  const c = add(a, b);
  const got = new Float32Array(await readBuffer(c.buffer, c.bytes));
  let num = 0, den = 0;
  for (let i = 0; i < n; i += 97) {
    const ref = ha[i] + hb[i];
    num += (got[i] - ref) ** 2;
    den += ref * ref;
  }
  c.dispose();
  const error = Math.sqrt(num / den);
  const ms = await timeRecorded((iters) => {
    // Each output goes back to the pool at once, so the next add reuses its buffer.
    for (let i = 0; i < iters; i++) add(a, b).dispose();
  }, repeats);
  const r = {
    op: "add",
    shape: `${n}`,
    dtype: "f32",
    kernel: "elementwise",
    ms,
    value: (3 * 4 * n) / ms / 1e6,
    unit: "GB/s",
    error,
  };
  out.push(r);
  report(r);
  a.dispose();
  b.dispose();
  trimPool();
}

/** Small adds back to back, timed from the first record to the GPU's finish (CPU cost included). */
async function benchDispatch(repeats: number, out: BenchResult[]) {
  const a = tensor(randomHost(256), [256]), b = tensor(randomHost(256), [256]);
  const iters = 4000;
  add(a, b).dispose();
  await sync();
  const times: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const t0 = performance.now();
    for (let i = 0; i < iters; i++) add(a, b).dispose();
    await sync();
    times.push((performance.now() - t0) / iters);
  }
  const ms = median(times);
  const r = {
    op: "dispatch",
    shape: "add 256",
    dtype: "f32",
    kernel: "op+record+run",
    ms,
    value: 1000 / ms,
    unit: "/s",
  };
  out.push(r);
  report(r);
  // The GPU's own cost of a dispatch: N tiny ones recorded first, then only the submit timed.
  // A cost that grows with N is per-dispatch; one that doesn't is the submit's round trip.
  const ma = tensor(randomHost(64 * 64), [64, 64]), mb = tensor(randomHost(64 * 64), [64, 64]);
  const mc = tensor(new Float32Array(64 * 64), [64, 64]);
  const plan = planMatmul("matmul", ma, mb);
  const kinds: [string, () => void][] = [
    ["add 256", () => add(a, b).dispose()],
    ["matmul 64×64×64", () => encodeMatmul(plan, ma, mb, mc)],
  ];
  for (const [shape, once] of kinds) {
    for (const n of [1, 64, 1024]) {
      const per: number[] = [];
      for (let rep = 0; rep < repeats; rep++) {
        for (let i = 0; i < n; i++) once();
        const t0 = performance.now();
        await sync();
        per.push((performance.now() - t0) / n);
      }
      const ms = median(per);
      const r = {
        op: "gpu-dispatch",
        shape: `${shape} ×${n}`,
        dtype: "f32",
        kernel: "run only",
        ms,
        value: 1000 / ms,
        unit: "/s",
      };
      out.push(r);
      report(r);
    }
  }
  for (const t of [a, b, ma, mb, mc]) t.dispose();
}

// ---------------------------------------------------------------------------------------------

/** Shows each result as it is measured, on a terminal only: the table at the end has them all. */
function report(r: BenchResult) {
  if (!Deno.stderr.isTerminal()) return;
  const v = r.unit === "/s"
    ? `${Math.round(r.value)} dispatches/s`
    : `${r.value.toFixed(1)} ${r.unit}`;
  const line = `  ${r.op} ${r.shape} ${r.dtype} ${r.kernel}  ${r.ms.toFixed(4)} ms  ${v}`;
  Deno.stderr.writeSync(new TextEncoder().encode(`\r\x1b[K${line}`));
}

function table(results: BenchResult[]): string {
  const rows = [["op", "shape (M×K×N)", "dtype", "kernel", "ms", "rate", "check"]];
  for (const r of results) {
    const rate = !Number.isFinite(r.value)
      ? "FAILED"
      : r.unit === "GFLOP/s" && r.value < 1000
      ? `${r.value.toFixed(2)} GFLOP/s`
      : r.unit === "GFLOP/s"
      ? `${(r.value / 1000).toFixed(2)} TFLOP/s`
      : r.unit === "GB/s"
      ? `${r.value.toFixed(1)} GB/s`
      : `${Math.round(r.value)} /s`;
    rows.push([
      r.op,
      r.shape,
      r.dtype,
      r.kernel,
      Number.isFinite(r.ms) ? r.ms.toFixed(4) : "-",
      rate,
      r.error === undefined ? "" : r.error.toExponential(1),
    ]);
  }
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(w[i])).join("  ").trimEnd()).join("\n");
}

export async function main(argv: string[]): Promise<void> {
  if (argv[0] === "generate") return (await import("./bench_generate.ts")).main(argv.slice(1));
  const parsed = parseCommand(spec, argv);
  if (!parsed) return;
  const v = parsed.values;
  if (typeof v.json === "string") {
    prepareOutputFile(v.json, { force: v.force === true, flag: "--json" });
  }
  const g = await initGpu();
  const ops = list(v.ops);
  for (const o of ops) {
    if (!["matmul", "awkward", "elementwise", "dispatch"].includes(o)) {
      throw new UserError(
        `unknown --ops entry '${o}' (matmul, awkward, elementwise, dispatch)`,
      );
    }
  }
  const sizes =
    (v.sizes ? list(v.sizes) : g.isCpu ? ["128", "256", "512"] : ["1024", "2048", "4096", "8192"])
      .map((s) => {
        const n = Number(s);
        if (!Number.isInteger(n) || n < 1) {
          throw new UserError(`--sizes entry '${s}' is not a size`);
        }
        return n;
      });
  const dtypes = v.dtypes ? list(v.dtypes) : g.f16 ? ["f32", "f16"] : ["f32"];
  for (const d of dtypes) {
    if (d !== "f32" && d !== "f16") {
      throw new UserError(`--dtypes entry '${d}' (f32 or f16)`);
    }
    if (d === "f16" && !g.f16) {
      throw new UserError("this adapter has no shader-f16 (drop f16 from --dtypes)");
    }
  }
  const tiles = list(v.tiles);
  for (const t of tiles) {
    if (t === "auto") continue;
    try {
      parseTile(t);
    } catch (e) {
      throw new UserError(`--tiles: ${(e as Error).message}`);
    }
  }
  const repeats = intFlag(v, "repeats", 1, 1000);

  console.log(
    `device: ${g.name}${g.isCpu ? " (CPU)" : ""}, f16 ${g.f16}, subgroups ${g.subgroups}`,
  );
  const results: BenchResult[] = [];
  if (ops.includes("matmul")) {
    for (const n of sizes) {
      await benchMatmulShape(
        { op: "matmul", label: `${n}×${n}×${n}`, batch: 1, M: n, K: n, N: n },
        dtypes,
        tiles,
        repeats,
        results,
      );
    }
  }
  if (ops.includes("awkward")) {
    const shapes: MatmulShape[] = [
      { op: "matmul", label: "130×256×512", batch: 1, M: 130, K: 256, N: 512 },
      { op: "linear", label: "130×256×512ᵀ", batch: 1, M: 130, K: 256, N: 512, transB: true },
    ];
    // conv2d's GEMM (w [Cout, Cin·9] · columns): tiny64's 64-channel convs at 64², batch 32 on
    // a GPU, and at one 64² image on a CPU; then its 128-channel convs at 32².
    const pixels = g.isCpu ? 4096 : 131072;
    shapes.push({ op: "conv", label: `64×576×${pixels}`, batch: 1, M: 64, K: 576, N: pixels });
    if (!g.isCpu) {
      shapes.push(
        { op: "conv", label: "128×1152×32768", batch: 1, M: 128, K: 1152, N: 32768 },
        { op: "bmm", label: "8×808×1024×2048", batch: 8, M: 808, K: 1024, N: 2048 },
        {
          op: "linear",
          label: "8×808×1024×2048ᵀ",
          batch: 8,
          M: 808,
          K: 1024,
          N: 2048,
          transB: true,
          sharedB: true,
        },
      );
    }
    for (const s of shapes) await benchMatmulShape(s, dtypes, tiles, repeats, results);
  }
  if (ops.includes("elementwise")) {
    await benchElementwise(g.isCpu ? 1 << 20 : 1 << 26, repeats, results);
  }
  if (ops.includes("dispatch")) await benchDispatch(repeats, results);

  if (typeof v.json === "string") {
    const doc = {
      device: g.name,
      isCpu: g.isCpu,
      f16: g.f16,
      date: new Date().toISOString(),
      results,
    };
    await Deno.writeTextFile(v.json, JSON.stringify(doc, null, 1) + "\n");
  }
  if (Deno.stderr.isTerminal()) Deno.stderr.writeSync(new TextEncoder().encode("\r\x1b[K"));
  console.log("\n" + table(results));
  if (results.some((r) => !Number.isFinite(r.value))) {
    throw new UserError("some kernels failed their check (see above)");
  }
}
