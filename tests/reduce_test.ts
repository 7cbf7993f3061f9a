import {
  columnChunk,
  concat,
  fill,
  max,
  mean,
  permute,
  slice,
  sum,
  sumTo,
  transpose,
} from "../lib/tensor/ops.ts";
import { tensor } from "../lib/tensor/tensor.ts";
import {
  assert,
  assertClose,
  assertCloseToMass,
  assertThrows,
  f32,
  gpuReady,
  numericGrads,
  randn,
  runWithGrads,
} from "./helpers.ts";

/** float64 reduction over one axis of a row-major array. */
function reduceRef(
  x: ArrayLike<number>,
  shape: number[],
  axis: number,
  kind: "sum" | "mean" | "max",
) {
  const outer = shape.slice(0, axis).reduce((a, b) => a * b, 1);
  const n = shape[axis];
  const inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  const out = new Float64Array(outer * inner);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      let acc = kind === "max" ? -Infinity : 0;
      for (let j = 0; j < n; j++) {
        const v = x[(o * n + j) * inner + i];
        acc = kind === "max" ? Math.max(acc, v) : acc + v;
      }
      out[o * inner + i] = kind === "mean" ? acc / n : acc;
    }
  }
  return out;
}

function maxGradRef(x: ArrayLike<number>, shape: number[], axis: number, r: ArrayLike<number>) {
  const outer = shape.slice(0, axis).reduce((a, b) => a * b, 1);
  const n = shape[axis];
  const inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  const g = new Float64Array(x.length);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      let best = 0;
      for (let j = 1; j < n; j++) {
        if (x[(o * n + j) * inner + i] > x[(o * n + best) * inner + i]) best = j;
      }
      g[(o * n + best) * inner + i] = r[o * inner + i];
    }
  }
  return g;
}

Deno.test("sum, mean and max along each axis, forward and backward", async () => {
  await gpuReady;
  for (const shape of [[1], [300], [7, 13], [3, 1030, 5], [2, 3, 4, 5]]) {
    const size = shape.reduce((a, b) => a * b, 1);
    for (let axis = 0; axis < shape.length; axis++) {
      for (const kind of ["sum", "mean", "max"] as const) {
        const x = f32(randn(size));
        const ref = reduceRef(x, shape, axis, kind);
        const r = f32(randn(ref.length));
        const op = { sum, mean, max }[kind];
        const { out, shape: outShape, grads } = await runWithGrads(
          (ts) => op(ts[0], axis),
          [{ data: x, shape }],
          r,
        );
        const want = shape.filter((_, i) => i !== axis);
        assert(outShape.join() === want.join(), `${kind} shape ${outShape} vs ${want}`);
        // A sum with cancellation is ill-conditioned: scale the tolerance by Σ|x| / |Σx|.
        const absRef = reduceRef(x.map(Math.abs), shape, axis, kind === "max" ? "max" : "sum");
        const cond = kind === "max"
          ? 1
          : Math.hypot(...absRef) / Math.max(Math.hypot(...ref), 1e-30) /
            (kind === "mean" ? shape[axis] : 1);
        assertClose(out, ref, 1e-6 * Math.max(1, cond), `${kind} axis ${axis} of [${shape}]`);
        // max: differences straddle near-ties, so its reference gradient is analytic.
        const [g] = kind === "max"
          ? [maxGradRef(x, shape, axis, r)]
          : numericGrads(([v]) => reduceRef(v, shape, axis, kind), [x.slice()], r, 1e-4);
        assertClose(grads[0]!, g, 1e-4, `${kind} backward axis ${axis} of [${shape}]`);
      }
    }
  }
});

Deno.test("max gives the gradient to the first maximal element", async () => {
  await gpuReady;
  const { out, grads } = await runWithGrads((ts) => max(ts[0], 1), [{
    data: [1, 5, 5, 2, 0, 0],
    shape: [2, 3],
  }], [
    1,
    1,
  ]);
  assertClose(out, [5, 2], 0, "max values");
  assertClose(grads[0]!, [0, 1, 0, 1, 0, 0], 0, "max gradient");
});

Deno.test("columnChunk: chunks only long sums over few columns, never past n", () => {
  assert(columnChunk(1 << 16, 10000) === 10000, "enough columns: one pass");
  assert(columnChunk(512, 40) === 40, "short n: one pass");
  for (const [cols, n] of [[512, 8320], [7, 3001], [15, 1030], [1, 100000]]) {
    const len = columnChunk(cols, n);
    assert(
      len >= 32 && len < n && Math.ceil(n / len) * cols <= 2 * (1 << 16),
      `${cols}×${n}: ${len}`,
    );
  }
});

Deno.test("sumTo reduces broadcast gradients to each operand's shape", async () => {
  await gpuReady;
  const cases: [number[], number[]][] = [
    [[4, 5], [5]],
    [[4, 5], [4, 1]],
    [[2, 3, 4], [1, 3, 1]],
    [[2, 3, 4], [2, 1, 4]],
    [[6, 7], [1]],
    [[3, 4, 5, 6], [4, 1, 6]],
    // A bias gradient: many rows onto few columns, summed in chunks then across them.
    [[3001, 7], [7]],
  ];
  for (const [from, to] of cases) {
    const size = from.reduce((a, b) => a * b, 1);
    const x = f32(randn(size));
    const t = tensor(x, from);
    const s = sumTo(t, to);
    const got = await s.toArray();
    // Reference: accumulate each element into its target index.
    const pad = [...Array(from.length - to.length).fill(1), ...to];
    const want = new Float64Array(pad.reduce((a, b) => a * b, 1));
    const mass = new Float64Array(want.length); // sum of |x| per output: f32 summation's scale
    for (let i = 0; i < size; i++) {
      let r = i, idx = 0, mulBy = 1;
      for (let d = from.length - 1; d >= 0; d--) {
        const c = r % from[d];
        r = Math.floor(r / from[d]);
        if (pad[d] !== 1) idx += c * mulBy;
        mulBy *= pad[d];
      }
      want[idx] += x[i];
      mass[idx] += Math.abs(x[i]);
    }
    assert(s.shape.join() === to.join(), `sumTo shape ${s.shape} vs ${to}`);
    assertCloseToMass(got, want, mass, 1e-6, `sumTo [${from}] -> [${to}]`);
    t.dispose();
    s.dispose();
  }
});

Deno.test("slice and concat along any axis, forward and backward", async () => {
  await gpuReady;
  const shapes = [[5, 7], [3, 4, 6]];
  for (const shape of shapes) {
    for (let axis = 0; axis < shape.length; axis++) {
      const size = shape.reduce((a, b) => a * b, 1);
      const x = f32(randn(size));
      const n = shape[axis];
      const [s0, s1] = [1, n - 1];
      const outer = shape.slice(0, axis).reduce((a, b) => a * b, 1);
      const inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
      const sliceRef = (v: ArrayLike<number>) => {
        const out: number[] = [];
        for (let o = 0; o < outer; o++) {
          for (let j = s0; j < s1; j++) {
            for (let i = 0; i < inner; i++) out.push(v[(o * n + j) * inner + i]);
          }
        }
        return out;
      };
      const ref = sliceRef(x);
      const r = f32(randn(ref.length));
      const { out, grads } = await runWithGrads((ts) => slice(ts[0], axis, s0, s1), [{
        data: x,
        shape,
      }], r);
      assertClose(out, ref, 0, `slice axis ${axis} of [${shape}]`);
      const [g] = numericGrads(([v]) => sliceRef(v), [x.slice()], r);
      assertClose(grads[0]!, g, 1e-6, `slice backward axis ${axis}`);

      // concat(slice(x, 0, k), slice(x, k, n)) == x, and its gradient is the identity.
      const k = Math.floor(n / 2);
      const r2 = f32(randn(size));
      const cat = await runWithGrads(
        (ts) => concat([slice(ts[0], axis, 0, k), slice(ts[0], axis, k, n)], axis),
        [{ data: x, shape }],
        r2,
      );
      assertClose(cat.out, x, 0, `concat of slices axis ${axis}`);
      assertClose(cat.grads[0]!, r2, 0, `concat backward axis ${axis}`);
    }
  }
});

Deno.test("reductions and slices refuse bad axes and ranges", async () => {
  await gpuReady;
  const t = fill([2, 3], 1);
  assertThrows(() => sum(t, 2), /sum: axis 2 out of range/, "axis");
  assertThrows(() => slice(t, 1, 2, 5), /slice: \[2, 5\) out of range/, "slice range");
  assertThrows(() => concat([t, fill([3, 3], 1)], 1), /concat: shapes/, "concat shapes");
  assertThrows(() => sumTo(t, [4]), /sumTo: cannot reduce/, "sumTo");
  t.dispose();
});

Deno.test("permute and transpose reorder dims, forward and backward", async () => {
  await gpuReady;
  const cases: [number[], number[]][] = [
    [[2, 3], [1, 0]],
    [[2, 3, 4], [0, 2, 1]],
    [[2, 3, 4, 5], [0, 2, 1, 3]],
    [[2, 3, 4, 5], [3, 1, 0, 2]],
    [[1, 7, 1, 5], [2, 3, 0, 1]],
  ];
  for (const [shape, perm] of cases) {
    const size = shape.reduce((a, b) => a * b, 1);
    const x = f32(randn(size));
    const strides = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
    const outShape = perm.map((p) => shape[p]);
    const ref = new Float64Array(size);
    for (let i = 0; i < size; i++) {
      let r = i, off = 0;
      for (let d = outShape.length - 1; d >= 0; d--) {
        off += (r % outShape[d]) * strides[perm[d]];
        r = Math.floor(r / outShape[d]);
      }
      ref[i] = x[off];
    }
    const r = f32(randn(size));
    const { out, shape: got, grads } = await runWithGrads((ts) => permute(ts[0], perm), [{
      data: x,
      shape,
    }], r);
    assert(got.join() === outShape.join(), `permute shape ${got} vs ${outShape}`);
    assertClose(out, ref, 0, `permute [${shape}] by [${perm}]`);
    const [g] = numericGrads(
      ([v]) => {
        const o = new Float64Array(size);
        for (let i = 0; i < size; i++) {
          let rr = i, off = 0;
          for (let d = outShape.length - 1; d >= 0; d--) {
            off += (rr % outShape[d]) * strides[perm[d]];
            rr = Math.floor(rr / outShape[d]);
          }
          o[i] = v[off];
        }
        return o;
      },
      [x.slice()],
      r,
    );
    assertClose(grads[0]!, g, 1e-6, `permute backward [${shape}] by [${perm}]`);
  }
  const t = await runWithGrads((ts) => transpose(ts[0], 0, -1), [{
    data: [1, 2, 3, 4, 5, 6],
    shape: [2, 3],
  }]);
  assertClose(t.out, [1, 4, 2, 5, 3, 6], 0, "transpose");
});
