// Shared test utilities: seeded random inputs, float64 references, error norms, and a gradient
// check that compares an op's GPU backward with central differences of its CPU reference.
import { initGpu, upload } from "../lib/gpu/mod.ts";
import { backward } from "../lib/tensor/autograd.ts";
import { sumAll } from "../lib/tensor/ops.ts";
import { mul } from "../lib/tensor/ops.ts";
import { type DType, noGrad, parameter, Tensor, tensor, tidyAsync } from "../lib/tensor/tensor.ts";

export const gpuReady = initGpu();

/** splitmix32: small, seeded, reproducible. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return ((z ^ (z >>> 16)) >>> 0) / 4294967296;
  };
}

let seedCounter = (Date.now() ^ (Math.random() * 2 ** 31)) >>> 0;
/** Fresh inputs on every run: a kernel must be right on any valid input, not one fixture. */
export function freshSeed(): number {
  return (seedCounter = (seedCounter * 1664525 + 1013904223) >>> 0);
}

export function randn(n: number, seed = freshSeed(), scale = 1): Float64Array {
  const r = rng(seed);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(r(), 1e-12);
    out[i] = scale * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r());
  }
  return out;
}

export function uniform(n: number, lo: number, hi: number, seed = freshSeed()): Float64Array {
  const r = rng(seed);
  return Float64Array.from({ length: n }, () => lo + (hi - lo) * r());
}

/** Rounds to f32, so the CPU reference sees exactly the values the GPU holds. */
export function f32(x: ArrayLike<number>): Float64Array {
  return Float64Array.from(Float32Array.from(x));
}

export function relErr(got: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (got.length !== ref.length) return Infinity;
  let num = 0, den = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = got[i] - ref[i];
    if (Number.isNaN(got[i]) !== Number.isNaN(ref[i])) return Infinity;
    if (!Number.isNaN(ref[i])) {
      num += d * d;
      den += ref[i] * ref[i];
    }
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

export function assertClose(
  got: ArrayLike<number>,
  ref: ArrayLike<number>,
  tol: number,
  what: string,
): void {
  const e = relErr(got, ref);
  if (!(e <= tol)) {
    const show = (a: ArrayLike<number>) => Array.from(a).slice(0, 6).map((v) => v.toPrecision(6));
    throw new Error(
      `${what}: relative error ${e.toExponential(2)} > ${tol} (len ${got.length}/${ref.length})\n` +
        `  got ${show(got)}\n  ref ${show(ref)}`,
    );
  }
}

/**
 * |got − ref| ≤ tol·mass at every index, where mass is the sum of the absolute terms behind each
 * value. Random signs can cancel a sum to near zero, where a relative error would only measure
 * f32 summation's rounding; against the terms' magnitude a dropped or doubled term still shows.
 */
export function assertCloseToMass(
  got: ArrayLike<number>,
  ref: ArrayLike<number>,
  mass: ArrayLike<number>,
  tol: number,
  what: string,
): void {
  assert(got.length === ref.length, `${what}: length ${got.length}, want ${ref.length}`);
  for (let i = 0; i < ref.length; i++) {
    const err = Math.abs(got[i] - ref[i]);
    if (!(err <= tol * mass[i])) {
      throw new Error(
        `${what} at ${i}: got ${got[i]}, want ${ref[i]}, error ${err.toExponential(2)} > ` +
          `${tol} × term mass ${mass[i].toPrecision(4)}`,
      );
    }
  }
}

export function assert(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new Error(msg);
}

export function assertThrows(fn: () => unknown, pattern: RegExp, what: string): void {
  try {
    fn();
  } catch (e) {
    if (!pattern.test(String((e as Error).message))) {
      throw new Error(`${what}: threw "${(e as Error).message}", expected ${pattern}`);
    }
    return;
  }
  throw new Error(`${what}: did not throw`);
}

/** Gradients of sum(f(xs) · r) by central differences of a float64 reference. */
export function numericGrads(
  f: (xs: Float64Array[]) => ArrayLike<number>,
  xs: Float64Array[],
  r: ArrayLike<number>,
  h = 1e-6,
): Float64Array[] {
  const dot = (v: ArrayLike<number>) => {
    let s = 0;
    for (let i = 0; i < v.length; i++) s += v[i] * r[i];
    return s;
  };
  return xs.map((x, k) => {
    const g = new Float64Array(x.length);
    for (let i = 0; i < x.length; i++) {
      const orig = x[i];
      x[i] = orig + h;
      const up = dot(f(xs));
      x[i] = orig - h;
      const down = dot(f(xs));
      x[i] = orig;
      g[i] = (up - down) / (2 * h);
    }
    void k;
    return g;
  });
}

export interface Input {
  data: ArrayLike<number>;
  shape: number[];
  dtype?: DType;
  /** Integer inputs (ids, targets) get no gradient. */
  grad?: boolean;
}

/** Runs `fn` on GPU copies of the inputs, backpropagates sum(out · r) and reads everything back. */
export async function runWithGrads(
  fn: (ts: Tensor[]) => Tensor,
  inputs: Input[],
  r?: ArrayLike<number>,
): Promise<{ out: number[]; shape: readonly number[]; grads: (number[] | null)[] }> {
  await gpuReady;
  const ts = inputs.map((i) =>
    i.grad === false || (i.dtype && i.dtype !== "f32")
      ? tensor(i.data, i.shape, i.dtype ?? "f32")
      : parameter(i.data, i.shape)
  );
  try {
    return await tidyAsync(async () => {
      const out = fn(ts);
      const shape = out.shape;
      const outData = await out.toArray();
      if (r) {
        const loss = sumAll(mul(out, tensor(r, out.shape)));
        backward(loss);
      }
      const grads = await Promise.all(ts.map((t) => (t.grad ? t.grad.toArray() : null)));
      return { out: outData, shape, grads };
    });
  } finally {
    for (const t of ts) {
      t.grad?.dispose();
      t.dispose();
    }
  }
}

/**
 * Checks every parameter's gradient of a scalar `loss` against a central difference along a
 * random direction: (L(θ + εv) − L(θ − εv)) / 2ε ≈ ∇L·v, within `tol` relative. For whole
 * layers, whose float64 references would repeat the layer. `groupBy` moves the parameters of
 * one group (say, one block) together along one joint direction: fewer loss evaluations for
 * large models, still one check per group.
 */
export async function assertDirectionalGrads(
  named: [string, Tensor][],
  loss: () => Tensor,
  { eps = 2e-3, tol = 2e-2, floor = 0.1, mass = 0, groupBy = (name: string) => name } = {},
): Promise<void> {
  const groups = new Map<string, [string, Tensor][]>();
  for (const entry of named) {
    const key = groupBy(entry[0]);
    groups.set(key, [...(groups.get(key) ?? []), entry]);
  }
  await tidyAsync(async () => {
    const l0 = loss();
    // The loss's f32 rounding scales with its terms' magnitude (`mass`, Σ|term|, when the caller
    // knows it: a sum whose terms cancel rounds like its terms, not like its value).
    const lossScale = Math.max(1, Math.abs(await l0.item()), mass);
    backward(l0);
    for (const [name, members] of groups) {
      let analytic = 0, gSquares = 0;
      const parts: { p: Tensor; v: Float64Array; p0: Float32Array }[] = [];
      for (const [pname, p] of members) {
        assert(p.grad && p.grad.shape.join() === p.shape.join(), `${pname} has no gradient`);
        const g = await p.grad.toArray();
        const v = f32(randn(p.size));
        analytic += g.reduce((a, gi, i) => a + gi * v[i], 0);
        gSquares += g.reduce((a, gi) => a + gi * gi, 0);
        parts.push({ p, v, p0: Float32Array.from(await p.toArray()) });
      }
      const at = async (e: number) => {
        for (const { p, v, p0 } of parts) upload(p.buffer, p0.map((w, i) => w + e * v[i]));
        return await noGrad(loss).item();
      };
      // For Gaussian v, |g·v| is typically ‖g‖; a direction that happens to cancel it to near zero
      // is judged against floor·‖g‖ instead.
      const gNorm = Math.sqrt(gSquares);
      const tried: string[] = [];
      let ok = false;
      // A step too small drowns in the loss's f32 rounding, one too large in curvature: a right
      // gradient agrees at some step, a wrong one at none.
      for (const e of [eps, 4 * eps, 16 * eps, eps / 4]) {
        const quotient = async (h: number) => (await at(h) - await at(-h)) / (2 * h);
        // Richardson: (4·D(ε/2) − D(ε))/3 cancels the ε² term of the central difference.
        const numeric = (4 * await quotient(e / 2) - await quotient(e)) / 3;
        // f32 rounding of the loss over the step, generously: measured ~1e-9·mass/ε on a Mamba block.
        const noise = 3e-7 * lossScale / e;
        const err = Math.abs(numeric - analytic);
        tried.push(`${numeric} at ε ${e}`);
        if (err < tol * Math.max(Math.abs(analytic), floor * gNorm, noise)) {
          ok = true;
          break;
        }
      }
      for (const { p, p0 } of parts) upload(p.buffer, p0);
      assert(ok, `${name}: grad·v = ${analytic}, ‖grad‖ ${gNorm}, difference quotients ${tried}`);
    }
  });
}

/** Runs `vmambar ARGS…` in a subprocess from the repository root. */
export async function runCli(...args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts", ...args],
    cwd: new URL("..", import.meta.url).pathname,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}
