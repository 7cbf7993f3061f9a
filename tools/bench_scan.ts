// Selective scan and causal conv1d timings at the base256 shapes (DESIGN §4: batch 8, L = 680 +
// 128 text, d_inner 2048, N 16), validated first against a float64 sequential scan; pair it with
// tools/torch_scan.py in the same device run. Optionally dumps a mid-size case for the PyTorch
// script to cross-check the numbers. Both sets of scan kernels (ScanOptions.kernels: "sequence",
// the default, walking L in one pass a thread per batch and channel, and "chunked", the passes it
// replaced) are checked and timed side by side, then each kernel on its own with GPU timestamps
// where the device has them.
//   deno run -A tools/bench_scan.ts [--json OUT] [--dump FILE] [--small] [--shape B,L,D,N]
import { parseArgs } from "node:util";
import { gpuProfile, initGpu, startGpuProfile, stopGpuProfile, sync } from "../lib/gpu/mod.ts";
import { type ScanOptions, selectiveScan } from "../lib/tensor/scan.ts";
import { causalConv1d } from "../lib/tensor/conv1d.ts";
import { noGrad, parameter, type Tensor, tensor, tidy } from "../lib/tensor/tensor.ts";
import { stTensor, writeSafetensors } from "../lib/io/safetensors.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    json: { type: "string" },
    dump: { type: "string" },
    small: { type: "boolean" },
    shape: { type: "string" },
  },
});
const g = await initGpu();
const [B, L, D, N] = values.shape
  ? values.shape.split(",").map(Number)
  : values.small || g.isCpu
  ? [1, 64, 64, 16]
  : [8, 808, 2048, 16];
const KERNELS: NonNullable<ScanOptions["kernels"]>[] = ["sequence", "chunked"];

let seed = 12345;
const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
const normal = (n: number, s = 1) =>
  Float32Array.from(
    { length: n },
    () => s * Math.sqrt(-2 * Math.log(rand() + 1e-12)) * Math.cos(6.283185 * rand()),
  );
const inputs = (b: number, l: number, d: number, n: number) => ({
  u: normal(b * l * d),
  delta: Float32Array.from({ length: b * l * d }, () => 0.001 + 0.1 * rand()),
  A: Float32Array.from({ length: d * n }, (_, i) => -((i % n) + 1)),
  B: normal(b * l * n),
  C: normal(b * l * n),
});

function scanRef(x: ReturnType<typeof inputs>, b: number, l: number, d: number, n: number) {
  const y = new Float64Array(b * l * d);
  for (let bi = 0; bi < b; bi++) {
    for (let di = 0; di < d; di++) {
      for (let ni = 0; ni < n; ni++) {
        let h = 0;
        for (let t = 0; t < l; t++) {
          const k = (bi * l + t) * d + di, bc = (bi * l + t) * n + ni;
          h = Math.exp(x.delta[k] * x.A[di * n + ni]) * h + x.delta[k] * x.B[bc] * x.u[k];
          y[k] += x.C[bc] * h;
        }
      }
    }
  }
  return y;
}

// Validate on a mid-size case first, with each forward (and dump it for the PyTorch cross-check).
for (const forward of KERNELS) {
  const [b, l, d, n] = [2, 300, 64, 16];
  const x = inputs(b, l, d, n);
  const y = await noGrad(() =>
    selectiveScan(
      tensor(x.u, [b, l, d]),
      tensor(x.delta, [b, l, d]),
      tensor(x.A, [d, n]),
      tensor(x.B, [b, l, n]),
      tensor(x.C, [b, l, n]),
      { kernels: forward },
    ).y
  ).toArray();
  const ref = scanRef(x, b, l, d, n);
  let num = 0, den = 0;
  for (let i = 0; i < ref.length; i++) {
    num += (y[i] - ref[i]) ** 2;
    den += ref[i] ** 2;
  }
  const err = Math.sqrt(num / den);
  console.log(
    `scan check [${b}, ${l}, ${d}, ${n}] ${forward} forward vs float64: relative error ${
      err.toExponential(2)
    }`,
  );
  if (!(err < 1e-5)) throw new Error(`scan check failed (${forward} forward)`);
  if (values.dump && forward === KERNELS[0]) {
    await writeSafetensors(values.dump, {
      u: stTensor(x.u, [b, l, d]),
      delta: stTensor(x.delta, [b, l, d]),
      A: stTensor(x.A, [d, n]),
      B: stTensor(x.B, [b, l, n]),
      C: stTensor(x.C, [b, l, n]),
      y: stTensor(Float32Array.from(y), [b, l, d]),
    });
  }
}

/**
 * Median ms per call. A queue wait costs ~11 ms here (Deno's onSubmittedWorkDone), so each
 * repeat times n and 2n calls and keeps the difference.
 */
async function time(label: string, iters: number, fn: () => void): Promise<number> {
  const run = async (n: number) => {
    await sync();
    const t0 = performance.now();
    for (let i = 0; i < n; i++) fn();
    await sync();
    return performance.now() - t0;
  };
  await run(1);
  const runs: number[] = [];
  for (let r = 0; r < 5; r++) runs.push(((await run(2 * iters)) - (await run(iters))) / iters);
  runs.sort((a, b) => a - b);
  const ms = runs[2];
  console.log(`${label.padEnd(34)} ${ms.toFixed(3)} ms`);
  return ms;
}

const x = inputs(B, L, D, N);
const P = (v: Float32Array, s: number[]) => parameter(v, s);
const u = P(x.u, [B, L, D]), delta = P(x.delta, [B, L, D]), A = P(x.A, [D, N]);
const Bm = P(x.B, [B, L, N]), Cm = P(x.C, [B, L, N]);
const dy = tensor(normal(B * L * D), [B, L, D]);
const convW = P(normal(D * 4, 0.5), [D, 4]), convB = P(normal(D, 0.5), [D]);
const iters = g.isCpu ? 2 : 20;
console.log(`shapes: B ${B}, L ${L}, d_inner ${D}, N ${N} on ${g.name}`);
const results: Record<string, number> = {};
type Kernels = ScanOptions["kernels"];
// The kernel sets agree at these shapes too: y and every gradient, sequence against chunked.
{
  const run = async (kernels: Kernels) => {
    const y = selectiveScan(u, delta, A, Bm, Cm, { kernels }).y;
    const grads = y.node!.backward(dy) as Tensor[];
    const out = await Promise.all([y, ...grads].map((t) => t.toArray()));
    for (const t of [y, ...grads]) t.dispose();
    return out;
  };
  const [seq, chunked] = [await run("sequence"), await run("chunked")];
  const errs = seq.map((a, k) => {
    let num = 0, den = 0;
    for (let i = 0; i < a.length; i++) {
      num += (a[i] - chunked[k][i]) ** 2;
      den += chunked[k][i] ** 2;
    }
    return Math.sqrt(num / Math.max(den, 1e-30));
  });
  const names = ["y", "du", "dΔ", "dA", "dB", "dC"];
  console.log(
    `sequence vs chunked at [${B}, ${L}, ${D}, ${N}]: relative differences ${
      errs.map((e, k) => `${names[k]} ${e.toExponential(1)}`).join(", ")
    }`,
  );
  if (!errs.every((e) => e < 1e-4)) throw new Error("sequence and chunked kernels disagree");
}
// Each timed call frees what it made (tidy with nothing returned), as a training step does: a call
// that kept its outputs would allocate fresh buffers every time and time the allocator instead.
const forwardOnly = (kernels: Kernels) => () =>
  tidy(() => void noGrad(() => selectiveScan(u, delta, A, Bm, Cm, { kernels })));
const forwardBackward = (kernels: Kernels) => () =>
  tidy(() => {
    selectiveScan(u, delta, A, Bm, Cm, { kernels }).y.node!.backward(dy);
  });
// JSON keys: scan_fwd and scan_fwd_bwd are the default (sequence) kernels, as tools/torch_scan.py
// reads them; the chunked kernels' figures carry a _chunked suffix.
for (const kernels of KERNELS) {
  const key = kernels === "sequence" ? "" : `_${kernels}`;
  results[`scan_fwd${key}`] = await time(`scan forward (${kernels})`, iters, forwardOnly(kernels));
  results[`scan_fwd_bwd${key}`] = await time(
    `scan forward+backward (${kernels})`,
    iters,
    forwardBackward(kernels),
  );
}
// Per kernel: GPU timestamps around each dispatch, a pass of its own each (so a little slower in
// total than the figures above), averaged over a few calls.
if (startGpuProfile()) {
  await gpuProfile();
  for (const kernels of KERNELS) {
    for (
      const [what, fn] of [["forward", forwardOnly], ["forward+backward", forwardBackward]] as const
    ) {
      const calls = Math.max(2, iters / 4);
      for (let i = 0; i < calls; i++) fn(kernels)();
      await sync();
      const prof = [...(await gpuProfile()).entries()];
      const total = prof.reduce((s, [, e]) => s + e.ms, 0) / calls;
      console.log(`per kernel, ${kernels} ${what} (${total.toFixed(3)} ms per call in all):`);
      for (const [label, e] of prof) {
        console.log(
          `  ${label.slice(0, 40).padEnd(40)} ${(e.ms / calls).toFixed(3)} ms (${
            e.count / calls
          } per call)`,
        );
        results[`kernel_${kernels}_${what}_${label}`] = e.ms / calls;
      }
    }
  }
  stopGpuProfile();
  await gpuProfile();
} else {
  console.log("per kernel: no timestamp-query on this device");
}
results.conv_fwd_bwd = await time(
  "conv1d forward+backward",
  iters,
  () => tidy(() => void causalConv1d(u, convW, convB).y.node!.backward(dy)),
);
if (values.json) {
  await Deno.writeTextFile(
    values.json,
    JSON.stringify({ device: g.name, shape: { B, L, D, N }, ms: results }, null, 2),
  );
}
