import { binaryOps, unaryOps } from "../lib/tensor/ops.ts";
import * as ops from "../lib/tensor/ops.ts";
import type { Tensor } from "../lib/tensor/tensor.ts";
import { recorderStats } from "../lib/gpu/mod.ts";
import {
  assert,
  assertClose,
  assertCloseToMass,
  assertThrows,
  f32,
  freshSeed,
  gpuReady,
  randn,
  rng,
  runWithGrads,
} from "./helpers.ts";
import { noGrad, tensor, tidyAsync } from "../lib/tensor/tensor.ts";

// float64 references of the table's ops.
/** erfc in float64 (series below 3, continued fraction beyond), without cancellation in the tails. */
function erfc(x: number): number {
  if (x < 0) return 2 - erfc(-x);
  if (x < 3) {
    let term = x, s = x;
    for (let n = 1; n < 200; n++) {
      term *= -x * x / n;
      const add = term / (2 * n + 1);
      s += add;
      if (Math.abs(add) < 1e-17 * Math.abs(s)) break;
    }
    return 1 - (2 / Math.sqrt(Math.PI)) * s;
  }
  let f = 0;
  for (let n = 80; n >= 1; n--) f = (n / 2) / (x + f);
  return Math.exp(-x * x) / Math.sqrt(Math.PI) / (x + f);
}
const sig = (x: number) => 1 / (1 + Math.exp(-x));
// The f32 value the GPU holds: near x = −1.7 the f64 1.7 would measure its own rounding.
const ALPHA = Math.fround(1.7);
const UNARY_REF: Record<string, (x: number) => number> = {
  neg: (x) => -x,
  scale: (x) => ALPHA * x,
  addScalar: (x) => x + ALPHA,
  exp: Math.exp,
  log: Math.log,
  sqrt: Math.sqrt,
  rsqrt: (x) => 1 / Math.sqrt(x),
  square: (x) => x * x,
  relu: (x) => Math.max(x, 0),
  abs: Math.abs,
  sigmoid: sig,
  tanh: Math.tanh,
  silu: (x) => x * sig(x),
  gelu: (x) => 0.5 * x * erfc(-x / Math.SQRT2),
  softplus: (x) => (x > 20 ? x : Math.log1p(Math.exp(x))),
};
// Analytic float64 derivatives: central differences lose too many digits where f is flat.
const phi = (x: number) => Math.exp(-0.5 * x * x) / Math.sqrt(2 * Math.PI);
const UNARY_GRAD: Record<string, (x: number) => number> = {
  neg: () => -1,
  scale: () => ALPHA,
  addScalar: () => 1,
  exp: Math.exp,
  log: (x) => 1 / x,
  sqrt: (x) => 0.5 / Math.sqrt(x),
  rsqrt: (x) => -0.5 * x ** -1.5,
  square: (x) => 2 * x,
  relu: (x) => (x > 0 ? 1 : 0),
  abs: (x) => Math.sign(x),
  sigmoid: (x) => sig(x) * sig(-x),
  tanh: (x) => 1 / Math.cosh(x) ** 2,
  silu: (x) => sig(x) * (1 + x * (1 - sig(x))),
  gelu: (x) => 0.5 * erfc(-x / Math.SQRT2) + x * phi(x),
  softplus: (x) => sig(x),
};
const POSITIVE = new Set(["log", "sqrt", "rsqrt"]);
const BINARY_REF: Record<string, (a: number, b: number) => number> = {
  add: (a, b) => a + b,
  sub: (a, b) => a - b,
  mul: (a, b) => a * b,
  div: (a, b) => a / b,
};

function callUnary(name: string, x: Tensor): Tensor {
  if (name === "scale" || name === "addScalar") return ops[name](x, ALPHA);
  return (ops as unknown as Record<string, (t: Tensor) => Tensor>)[name](x);
}

function inputFor(name: string, n: number): Float64Array {
  const x = randn(n, undefined, 3);
  // Keep away from kinks (relu at 0) and domain edges, where differences are not derivatives.
  return f32(x.map((v) => (POSITIVE.has(name) ? Math.abs(v) + 0.2 : Math.abs(v) < 1e-3 ? 0.5 : v)));
}

Deno.test("unary ops match float64 references, forward and backward", async () => {
  await gpuReady;
  for (const name of unaryOps) {
    for (const shape of [[1], [7, 13], [3, 5, 67]]) {
      const n = shape.reduce((a, b) => a * b, 1);
      const x = inputFor(name, n);
      const r = f32(randn(n));
      const { out, grads } = await runWithGrads((ts) => callUnary(name, ts[0]), [{
        data: x,
        shape,
      }], r);
      const f = UNARY_REF[name];
      assertClose(out, Array.from(x, f), 2e-6, `${name} forward [${shape}]`);
      const df = UNARY_GRAD[name];
      const gref = Array.from(x, (v, i) => df(v) * r[i]);
      // Per element, relative to |f'| but at least 0.03: gelu' and silu' cross 0 (near −0.75 and
      // −1.28) as the difference of two terms of about 0.2 (gelu: Φ(x) and x·φ(x)), so near there
      // f32 leaves an absolute error of about 1e-7 (CI saw 1.2e-7 at |f'| = 0.0115, over the
      // former floor of 0.01). The tails test checks small f'.
      const mass = Array.from(x, (v, i) => Math.abs(r[i]) * Math.max(Math.abs(df(v)), 0.03));
      assertCloseToMass(grads[0]!, gref, mass, 1e-5, `${name} backward [${shape}]`);
    }
  }
});

Deno.test("gelu, softplus, silu and sigmoid are accurate in the tails, derivatives too", async () => {
  await gpuReady;
  const x = f32([-30, -12, -8, -5, -3, 3, 5, 8, 12, 25, 40]);
  for (const name of ["gelu", "softplus", "silu", "sigmoid"]) {
    const { out } = await runWithGrads((ts) => callUnary(name, ts[0]), [{
      data: x,
      shape: [x.length],
    }]);
    const ref = Array.from(x, UNARY_REF[name]);
    for (let i = 0; i < x.length; i++) {
      const rel = Math.abs(out[i] - ref[i]) / Math.max(Math.abs(ref[i]), 1e-30);
      if (rel > 1e-5 && Math.abs(ref[i]) > 1e-30) {
        throw new Error(`${name}(${x[i]}) = ${out[i]}, want ${ref[i]} (rel ${rel})`);
      }
    }
    // The derivatives too (sigmoid's as y·(1 − y) was 5e-4 off at x = 9: 1 − y cancels).
    const { grads } = await runWithGrads(
      (ts) => callUnary(name, ts[0]),
      [{ data: x, shape: [x.length] }],
      new Array(x.length).fill(1),
    );
    for (let i = 0; i < x.length; i++) {
      const want = UNARY_GRAD[name](x[i]);
      const rel = Math.abs(grads[0]![i] - want) / Math.abs(want);
      if (rel > 1e-5 && Math.abs(want) > 1e-30) {
        throw new Error(`${name}'(${x[i]}) = ${grads[0]![i]}, want ${want} (rel ${rel})`);
      }
    }
  }
});

Deno.test("tanh near 0 and log near 1 keep their relative accuracy", async () => {
  await gpuReady;
  // Builtins computed from exp(2x) − 1, or with an absolute error near log 1 = 0, lose it there
  // (Mesa's: tanh 2% off at 1e-6, log 73% off at 1 − 6e-8).
  const cases: [string, (x: number) => number, number[]][] = [
    ["tanh", Math.tanh, [-0.39, -1e-6, 1e-7, 1e-5, 1e-3, 0.05, 0.2, 0.399, 0.401, 0.7, 3]],
    ["log", Math.log, [1 - 2 ** -24, 1 + 2 ** -23, 0.999, 1.001, 0.49, 0.51, 1.99, 2.01, 1e-3, 50]],
  ];
  for (const [name, f, values] of cases) {
    const x = f32(values);
    const { out } = await runWithGrads((ts) => callUnary(name, ts[0]), [{
      data: x,
      shape: [x.length],
    }]);
    for (let i = 0; i < x.length; i++) {
      const rel = Math.abs(out[i] - f(x[i])) / Math.abs(f(x[i]));
      if (rel > 1e-6) throw new Error(`${name}(${x[i]}) = ${out[i]}, want ${f(x[i])} (rel ${rel})`);
    }
  }
});

function broadcastRef(
  f: (a: number, b: number) => number,
  a: ArrayLike<number>,
  as: number[],
  b: ArrayLike<number>,
  bs: number[],
): { out: Float64Array; shape: number[] } {
  const n = Math.max(as.length, bs.length);
  const pa = [...Array(n - as.length).fill(1), ...as];
  const pb = [...Array(n - bs.length).fill(1), ...bs];
  const shape = pa.map((d, i) => Math.max(d, pb[i]));
  const size = shape.reduce((x, y) => x * y, 1);
  const out = new Float64Array(size);
  const idx = (p: number[], coord: number[]) =>
    coord.reduce((acc, c, i) => acc * p[i] + (p[i] === 1 ? 0 : c), 0);
  for (let i = 0; i < size; i++) {
    const coord: number[] = [];
    let r = i;
    for (let d = n - 1; d >= 0; d--) {
      coord[d] = r % shape[d];
      r = Math.floor(r / shape[d]);
    }
    out[i] = f(a[idx(pa, coord)], b[idx(pb, coord)]);
  }
  return { out, shape };
}

/** ∂f/∂a and ∂f/∂b of each binary op. */
const PARTIALS: Record<
  string,
  [(a: number, b: number) => number, (a: number, b: number) => number]
> = {
  add: [() => 1, () => 1],
  sub: [() => 1, () => -1],
  mul: [(_, b) => b, (a) => a],
  div: [(_, b) => 1 / b, (a, b) => -a / (b * b)],
};

/** For each position of the broadcast output `shape`, the index of operand `s` it reads. */
function broadcastIndex(s: number[], shape: number[]): Int32Array {
  const n = shape.length;
  const p = [...Array(n - s.length).fill(1), ...s];
  const size = shape.reduce((x, y) => x * y, 1);
  const out = new Int32Array(size);
  for (let i = 0; i < size; i++) {
    let r = i, idx = 0, mul = 1;
    for (let d = n - 1; d >= 0; d--) {
      const c = r % shape[d];
      r = Math.floor(r / shape[d]);
      if (p[d] !== 1) idx += c * mul;
      mul *= p[d];
    }
    out[i] = idx;
  }
  return out;
}

Deno.test("binary ops broadcast like NumPy, forward and backward", async () => {
  await gpuReady;
  const cases: [number[], number[]][] = [
    [[5], [5]],
    [[7, 13], [13]],
    [[7, 13], [7, 1]],
    [[3, 1, 5], [4, 1]],
    [[1], [2, 3, 4]],
    [[2, 3, 4, 5, 6], [3, 1, 5, 1]],
  ];
  for (const name of binaryOps) {
    const f = BINARY_REF[name];
    for (const [as, bs] of cases) {
      const na = as.reduce((x, y) => x * y, 1);
      const nb = bs.reduce((x, y) => x * y, 1);
      const a = f32(randn(na));
      const b = f32(
        randn(nb).map((v) => (name === "div" ? Math.sign(v || 1) * (Math.abs(v) + 0.5) : v)),
      );
      const ref = broadcastRef(f, a, as, b, bs);
      const r = f32(randn(ref.out.length));
      const fn = (ops as unknown as Record<string, (x: Tensor, y: Tensor) => Tensor>)[name];
      const { out, shape, grads } = await runWithGrads(
        (ts) => fn(ts[0], ts[1]),
        [{ data: a, shape: as }, { data: b, shape: bs }],
        r,
      );
      if (shape.join() !== ref.shape.join()) {
        throw new Error(`${name}: shape ${shape} vs ${ref.shape}`);
      }
      assertClose(out, ref.out, 1e-6, `${name} [${as}]·[${bs}]`);
      // The reference sums r·∂f over the positions each operand entry was broadcast to (∂f from
      // PARTIALS, checked against differences of f in the next test). Such sums can cancel, so
      // each entry is judged against the sum of its terms' magnitudes.
      const [pa, pb] = PARTIALS[name];
      const ia = broadcastIndex(as, ref.shape), ib = broadcastIndex(bs, ref.shape);
      const g = [new Float64Array(na), new Float64Array(nb)];
      const mass = [new Float64Array(na), new Float64Array(nb)];
      for (let i = 0; i < r.length; i++) {
        const [x, y] = [a[ia[i]], b[ib[i]]];
        const [tA, tB] = [r[i] * pa(x, y), r[i] * pb(x, y)];
        g[0][ia[i]] += tA;
        g[1][ib[i]] += tB;
        mass[0][ia[i]] += Math.abs(tA);
        mass[1][ib[i]] += Math.abs(tB);
      }
      assertCloseToMass(grads[0]!, g[0], mass[0], 1e-5, `${name} da [${as}]·[${bs}]`);
      assertCloseToMass(grads[1]!, g[1], mass[1], 1e-5, `${name} db [${as}]·[${bs}]`);
    }
  }
});

Deno.test("the binary ops' partial derivatives agree with central differences", () => {
  const r = rng(freshSeed());
  for (const [name, [pa, pb]] of Object.entries(PARTIALS)) {
    const f = BINARY_REF[name];
    for (let k = 0; k < 20; k++) {
      const x = 4 * r() - 2, y = (r() < 0.5 ? -1 : 1) * (0.5 + 2 * r()), h = 1e-6;
      const dx = (f(x + h, y) - f(x - h, y)) / (2 * h), dy = (f(x, y + h) - f(x, y - h)) / (2 * h);
      if (Math.abs(dx - pa(x, y)) > 1e-6 * (1 + Math.abs(dx))) {
        throw new Error(`${name} ∂a at ${x}, ${y}`);
      }
      if (Math.abs(dy - pb(x, y)) > 1e-6 * (1 + Math.abs(dy))) {
        throw new Error(`${name} ∂b at ${x}, ${y}`);
      }
    }
  }
});

Deno.test("binary ops refuse mismatched shapes and dtypes before dispatch", async () => {
  await gpuReady;
  const a = tensor([1, 2, 3], [3]);
  const b = tensor([1, 2], [2]);
  const i = tensor([1, 2, 3], [3], "i32");
  assertThrows(() => ops.add(a, b), /add: shapes \[3\] and \[2\] do not broadcast/, "shape");
  assertThrows(() => ops.mul(a, i), /mul: dtypes differ/, "dtype");
  a.dispose();
  b.dispose();
  i.dispose();
});

Deno.test("an output over the device's buffer limit is refused before dispatch, naming the op", async () => {
  await gpuReady;
  const { gpu } = await import("../lib/gpu/mod.ts");
  const limit = gpu().limits.maxStorageBufferBindingSize;
  const rows = Math.ceil(limit / 4 / 1024) + 1;
  // [rows, 1] + [1, 1024] broadcasts to more bytes than one binding may hold.
  const b = ops.zeros([1, 1024]);
  const tall = ops.zeros([rows, 1]);
  assertThrows(
    () => ops.add(tall, b),
    /add: output \[\d+,1024\] f32 needs \d+ bytes, over/,
    "limit",
  );
  b.dispose();
  tall.dispose();
});

/** (y + u·D)·silu(z) in float64, z = xz[r, di + c]: Mamba's output gate. */
function mambaGateRef(y: Float64Array, u: Float64Array, d: Float64Array, xz: Float64Array) {
  const di = d.length;
  const out = new Float64Array(y.length), mass = new Float64Array(y.length);
  for (let i = 0; i < y.length; i++) {
    const c = i % di, z = xz[Math.floor(i / di) * 2 * di + di + c];
    const s = z * sig(z);
    out[i] = (y[i] + u[i] * d[c]) * s;
    // silu(−90) ≈ −7e-38: f32's exp(90) overflows, and silu is 0 there (as the unary op's).
    mass[i] = (Math.abs(y[i]) + Math.abs(u[i] * d[c])) * Math.max(Math.abs(s), 1e-30);
  }
  return { out, mass };
}

/** Gate inputs with z (the second half of xz's rows) reaching far into both tails. */
function mambaGateInputs(lead: number[], di: number) {
  const rows = lead.reduce((a, b) => a * b, 1);
  const TAILS = [-90, -30, -12, -5, 5, 12, 30, 90];
  const xz = f32(randn(rows * 2 * di, undefined, 3));
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < di; c++) {
      if ((r * di + c) % 3 === 0) xz[r * 2 * di + di + c] = TAILS[(r + c) % TAILS.length];
    }
  }
  return {
    y: f32(randn(rows * di)),
    u: f32(randn(rows * di)),
    d: f32(randn(di)),
    xz,
  };
}

Deno.test("mambaGate: (y + u·D)·silu(z), z read in place from xz, matches float64 and the composed ops", async () => {
  await gpuReady;
  const cases: [number[], number][] = [[[3, 5], 37], [[1, 1], 1], [[2, 7], 256], [[4], 3]];
  for (const [lead, di] of cases) {
    const { y, u, d, xz } = mambaGateInputs(lead, di);
    const shapes = [[...lead, di], [...lead, di], [di], [...lead, 2 * di]];
    const data = [y, u, d, xz];
    const what = `[${lead}] di ${di}`;
    const ref = mambaGateRef(y, u, d, xz);
    // Without gradients: the fused kernel.
    const [fused, composed] = await tidyAsync(async () => {
      const ts = data.map((x, k) => tensor(x, shapes[k]));
      const [tY, tU, tD, tXz] = ts;
      const before = recorderStats.dispatches;
      const g = noGrad(() => ops.mambaGate(tY, tU, tD, tXz));
      assert(recorderStats.dispatches - before === 1, `${what}: one dispatch without gradients`);
      const z = ops.slice(tXz, -1, di, 2 * di);
      const c = noGrad(() => ops.mul(ops.add(tY, ops.mul(tU, tD)), ops.silu(z)));
      return [await g.toArray(), await c.toArray()];
    });
    assertCloseToMass(fused, ref.out, ref.mass, 1e-5, `mambaGate ${what}`);
    // The composed ops' own values, to f32 rounding (a few ulps of the terms).
    assertCloseToMass(fused, composed, ref.mass, 4e-7, `mambaGate vs composed ${what}`);
    // With gradients: the composed ops, whose backward reaches every input.
    const r = f32(randn(y.length));
    const { out, grads } = await runWithGrads(
      (ts) => ops.mambaGate(ts[0], ts[1], ts[2], ts[3]),
      data.map((x, k) => ({ data: x, shape: shapes[k] })),
      r,
    );
    assertCloseToMass(out, ref.out, ref.mass, 1e-5, `mambaGate with grad ${what}`);
    // Each gradient against the magnitude of its terms, silu floored where f32 flushes it to 0
    // (z = −90), silu' at 0.03 as in the unary test (it crosses 0 near −1.28, where f32 leaves
    // an absolute error of about 1e-7).
    const F = (v: number) => Math.max(Math.abs(v), 1e-30);
    const want = [y, u, d, xz].map((x) => new Float64Array(x.length));
    const mass = [y, u, d, xz].map((x) => new Float64Array(x.length));
    for (let i = 0; i < y.length; i++) {
      const c = i % di, zi = Math.floor(i / di) * 2 * di + di + c, z = xz[zi];
      const s = z * sig(z), ds = sig(z) * (1 + z * (1 - sig(z))), a = y[i] + u[i] * d[c];
      want[0][i] = r[i] * s;
      mass[0][i] = Math.abs(r[i]) * F(s);
      want[1][i] = r[i] * s * d[c];
      mass[1][i] = Math.abs(r[i] * d[c]) * F(s);
      want[2][c] += r[i] * s * u[i];
      mass[2][c] += Math.abs(r[i] * u[i]) * F(s);
      want[3][zi] = r[i] * a * ds;
      mass[3][zi] = Math.abs(r[i]) * (Math.abs(y[i]) + Math.abs(u[i] * d[c])) *
        Math.max(Math.abs(ds), 0.03);
    }
    // xz's first half (xs) gets no gradient from the gate: mass 0 there demands exact zeros.
    ["dy", "du", "dD", "dxz"].forEach((name, k) =>
      assertCloseToMass(grads[k]!, want[k], mass[k], 1e-5, `mambaGate ${name} ${what}`)
    );
  }
});

Deno.test("mambaGate refuses disagreeing shapes and dtypes", async () => {
  await gpuReady;
  const y = ops.zeros([2, 3, 4]), D = ops.zeros([4]), xz = ops.zeros([2, 3, 8]);
  const bad = ops.zeros([2, 3, 6]), D3 = ops.zeros([3]), ints = ops.zeros([2, 3, 4], "i32");
  assertThrows(() => ops.mambaGate(y, y, D, bad), /mambaGate: needs y and u/, "xz width");
  assertThrows(() => ops.mambaGate(y, y, D3, xz), /mambaGate: needs y and u/, "D");
  assertThrows(() => ops.mambaGate(y, ints, D, xz), /mambaGate: needs f32/, "dtype");
  for (const t of [y, D, xz, bad, D3, ints]) t.dispose();
});
