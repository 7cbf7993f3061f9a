// Flash attention and RoPE against float64 CPU references on fresh random inputs: every mask kind
// (block-causal with text padding, bidirectional with padding, causal), lengths across tile
// boundaries, forward and backward, the KV cache against the full pass, empty rows, bad shapes.
import { recorderStats } from "../lib/gpu/mod.ts";
import {
  attendCached,
  attention,
  type AttentionMask,
  attentionMask,
  blockCausalMask,
  causalMask,
  disposeMask,
  KVCache,
  paddingMask,
  rope,
  rope1dTable,
  rope2dTable,
  scaleLevels,
} from "../lib/tensor/attention.ts";
import { concat, slice } from "../lib/tensor/ops.ts";
import { type Tensor, tensor, tidy, tidyAsync } from "../lib/tensor/tensor.ts";
import {
  assert,
  assertClose,
  assertThrows,
  f32,
  gpuReady,
  numericGrads,
  randn,
  runWithGrads,
} from "./helpers.ts";
import { designCoords, type Geometry, refAttention, refGrads, refRope } from "./attention_ref.ts";

function geometry(mask: AttentionMask, B: number, S: number, H: number, Dh: number): Geometry {
  return { B, sq: S, sk: S, H, Dh, qStart: 0, mask };
}

/** Runs attention forward and backward on random inputs and compares with the references. */
async function checkAttention(
  what: string,
  mask: AttentionMask,
  H: number,
  Dh: number,
  grads = true,
) {
  const B = mask.batch, S = mask.length;
  const g = geometry(mask, B, S, H, Dh);
  const n = B * S * H * Dh;
  const xs = [f32(randn(n)), f32(randn(n)), f32(randn(n))];
  const dout = f32(randn(n));
  const shape = [B, S, H, Dh];
  try {
    const res = await runWithGrads(
      ([q, k, v]) => attention(q, k, v, mask),
      xs.map((data) => ({ data, shape })),
      grads ? dout : undefined,
    );
    assertClose(res.out, refAttention(g, xs), 2e-5, `${what}: forward`);
    if (!grads) return;
    const ref = refGrads(g, xs, dout);
    ["dq", "dk", "dv"].forEach((name, i) =>
      assertClose(res.grads[i]!, ref[i], 1e-4, `${what}: ${name}`)
    );
  } finally {
    disposeMask(mask);
  }
}

const allValid = (B: number, n: number) => Array.from({ length: B }, () => new Array(n).fill(true));
/** Left padding (PAD first, as DESIGN.md §4's captions): row b has pads[b] PADs. */
const leftPadded = (T: number, pads: number[]) =>
  pads.map((p) => Array.from({ length: T }, (_, i) => i >= p));

// ---------------------------------------------------------------------------------------------

Deno.test("the analytic float64 gradients match central differences", () => {
  const mask = {
    levels: [0, 0, 1, 1, 2, 2, 2],
    keyLevels: [0xffffffff, 0, 1, 1, 2, 2, 2],
    length: 7,
  };
  const g: Geometry = { B: 1, sq: 7, sk: 7, H: 2, Dh: 4, qStart: 0, mask };
  const n = 7 * 2 * 4;
  const xs = [randn(n), randn(n), randn(n)];
  const r = randn(n);
  const num = numericGrads((t) => refAttention(g, t), xs.map((x) => Float64Array.from(x)), r);
  refGrads(g, xs, r).forEach((a, i) => assertClose(a, num[i], 1e-7, `reference grad ${i}`));
});

Deno.test("scaleLevels: a level per scale, and one per token in the autoregressive scales", () => {
  const same = (a: number[], b: number[], what: string) =>
    assert(a.join() === b.join(), `${what}: ${a.join()} is not ${b.join()}`);
  same(scaleLevels([1, 2, 3], 2), [0, 0, 1, 2, 2, 2, 2, ...new Array(9).fill(3)], "VAR's");
  same(scaleLevels([1, 2, 3], 2, 1), [0, 0, 1, 2, 3, 4, 5, ...new Array(9).fill(6)], "ar 1");
  same(
    scaleLevels([1, 2, 3], 1, 2),
    [0, 1, 2, 3, 4, 5, ...Array.from({ length: 9 }, (_, i) => 6 + i)],
    "ar 2",
  );
});

Deno.test("attention: block-causal with text padding, forward and backward", async () => {
  await gpuReady;
  // 7 text + scales 1,2,3,4 = 37 positions; tiny64's scales + 8 text = 138 (three tiles).
  await checkAttention(
    "block-causal S=37 Dh=16",
    blockCausalMask([1, 2, 3, 4], leftPadded(7, [3, 0])),
    2,
    16,
  );
  await checkAttention(
    "block-causal S=138 Dh=8",
    blockCausalMask([1, 2, 3, 4, 6, 8], leftPadded(8, [5, 1])),
    2,
    8,
  );
  // ar_scales 2: scales 2 and 3 causal within themselves, a level per position there.
  await checkAttention(
    "block-causal, scales 2–3 causal, S=138 Dh=8",
    blockCausalMask([1, 2, 3, 4, 6, 8], leftPadded(8, [5, 1]), 2),
    2,
    8,
  );
  await checkAttention(
    "block-causal S=37 Dh=128",
    blockCausalMask([1, 2, 3, 4], leftPadded(7, [0, 6])),
    1,
    128,
  );
});

Deno.test("attention: bidirectional with padding, forward and backward", async () => {
  await gpuReady;
  await checkAttention("padding S=7 Dh=64", paddingMask(leftPadded(7, [0, 2, 6])), 2, 64);
  await checkAttention("padding S=37 Dh=16", paddingMask(leftPadded(37, [11, 0])), 3, 16);
  await checkAttention("padding S=130 Dh=64", paddingMask(leftPadded(130, [70])), 1, 64);
});

Deno.test("attention: causal, forward and backward", async () => {
  await gpuReady;
  await checkAttention("causal S=1 Dh=16", causalMask(1, 2), 2, 16);
  await checkAttention("causal S=7 Dh=8", causalMask(7, 1), 2, 8);
  await checkAttention("causal S=130 Dh=16", causalMask(130, 2), 2, 16);
  await checkAttention("causal S=65 Dh=128", causalMask(65, 1), 1, 128);
});

Deno.test("attention: queries at the last positions (qStart), forward and backward", async () => {
  await gpuReady;
  // 20 queries at positions 17..36 over 37 keys of a block-causal mask with padding.
  const mask = blockCausalMask([1, 2, 3, 4], leftPadded(7, [2, 5]));
  const [B, H, Dh, sk, sq] = [2, 2, 16, 37, 20];
  const g: Geometry = { B, sq, sk, H, Dh, qStart: sk - sq, mask };
  const xs = [sq, sk, sk].map((s) => f32(randn(B * s * H * Dh)));
  const dout = f32(randn(B * sq * H * Dh));
  const res = await runWithGrads(
    ([q, k, v]) => attention(q, k, v, mask),
    xs.map((data, i) => ({ data, shape: [B, i === 0 ? sq : sk, H, Dh] })),
    dout,
  );
  disposeMask(mask);
  assertClose(res.out, refAttention(g, xs), 2e-5, "qStart forward");
  const ref = refGrads(g, xs, dout);
  ["dq", "dk", "dv"].forEach((name, i) =>
    assertClose(res.grads[i]!, ref[i], 1e-4, `qStart ${name}`)
  );
});

Deno.test("attention: a query that sees no key gives 0, zero gradient and no NaN", async () => {
  await gpuReady;
  // Row 0 of a causal mask whose first key is PAD; every row of an all-PAD batch entry.
  const cases = [
    {
      mask: causalMask(9, 2, [[false, ...new Array(8).fill(true)], new Array(9).fill(true)]),
      empty: [[0, 0]],
    },
    {
      mask: paddingMask([new Array(5).fill(true), new Array(5).fill(false)]),
      empty: [0, 1, 2, 3, 4].map((i) => [1, i]),
    },
  ];
  for (const { mask, empty } of cases) {
    const B = mask.batch, S = mask.length, H = 2, Dh = 8;
    const n = B * S * H * Dh;
    const res = await runWithGrads(
      ([q, k, v]) => attention(q, k, v, mask),
      [0, 1, 2].map(() => ({ data: f32(randn(n)), shape: [B, S, H, Dh] })),
      f32(randn(n)),
    );
    for (const arr of [res.out, ...res.grads.map((x) => x!)]) {
      assert(arr.every(Number.isFinite), "NaN or Inf");
    }
    for (const [b, i] of empty) {
      const o = ((b * S + i) * H) * Dh;
      const rows = [res.out, res.grads[0]!].map((a) => a.slice(o, o + H * Dh));
      assert(rows.every((r) => r.every((x) => x === 0)), `row (${b}, ${i}) is not 0`);
    }
    disposeMask(mask);
  }
});

// ---------------------------------------------------------------------------------------------
// RoPE

Deno.test("rope 1D and 2D match float64, forward and backward", async () => {
  await gpuReady;
  const layouts = [
    {
      what: "1D",
      table: () => rope1dTable(37, 16),
      coords: Array.from({ length: 37 }, (_, p) => [p]),
      Dh: 16,
    },
    {
      what: "1D Dh=64",
      table: () => rope1dTable(130, 64),
      coords: Array.from({ length: 130 }, (_, p) => [p]),
      Dh: 64,
    },
    {
      what: "2D",
      table: () => rope2dTable([1, 2, 3, 4], 5, 16),
      coords: designCoords([1, 2, 3, 4], 5),
      Dh: 16,
    },
    {
      what: "2D Dh=128",
      table: () => rope2dTable([1, 2, 3, 4, 6, 8], 3, 128),
      coords: designCoords([1, 2, 3, 4, 6, 8], 3),
      Dh: 128,
    },
  ];
  for (const { what, table, coords, Dh } of layouts) {
    const shape = [2, coords.length, 3, Dh];
    const n = shape.reduce((a, b) => a * b, 1);
    const x = f32(randn(n)), r = f32(randn(n));
    const t = table();
    const res = await runWithGrads(([a]) => rope(a, t), [{ data: x, shape }], r);
    t.dispose();
    assertClose(res.out, refRope(x, shape, coords), 2e-6, `rope ${what} forward`);
    // The rotation is orthogonal: the gradient turns r the other way.
    assertClose(res.grads[0]!, refRope(r, shape, coords, -1), 2e-6, `rope ${what} backward`);
  }
});

// ---------------------------------------------------------------------------------------------
// KV cache

Deno.test("attention with the KV cache, scale by scale, equals the full pass", async () => {
  await gpuReady;
  const scales = [1, 2, 3, 4], T = 6, B = 2, H = 2, Dh = 16;
  const mask = blockCausalMask(scales, leftPadded(T, [2, 0]));
  const S = mask.length;
  const table = rope2dTable(scales, T, Dh);
  const shape = [B, S, H, Dh];
  const n = B * S * H * Dh;
  const [q, k, v] = [0, 1, 2].map(() => tensor(f32(randn(n)), shape));
  const cache = new KVCache(B, S + 3, H, Dh);
  const [full, steps] = await tidyAsync(async () => {
    {
      const [qr, kr] = [rope(q, table), rope(k, table)];
      const full = await attention(qr, kr, v, mask).toArray();
      // Step 1 is the text prefix with scale 1; then one scale per step (DESIGN.md §4).
      const bounds = [0, T + 1];
      for (const pn of scales.slice(1)) bounds.push(bounds.at(-1)! + pn * pn);
      const outs = [];
      for (let i = 0; i + 1 < bounds.length; i++) {
        const [a, b] = [bounds[i], bounds[i + 1]];
        const step = (x: typeof q) => slice(x, 1, a, b);
        cache.append(rope(step(k), table, a), step(v));
        outs.push(attendCached(rope(step(q), table, a), cache, mask));
      }
      return [full, await concat(outs, 1).toArray()];
    }
  });
  let worst = 0;
  for (let i = 0; i < full.length; i++) worst = Math.max(worst, Math.abs(full[i] - steps[i]));
  assert(worst <= 1e-5, `cached vs full: max difference ${worst}`);
  assertThrows(() => cache.append(q, v), /capacity/, "cache overflow");
  for (const t of [q, k, v, table]) t.dispose();
  cache.dispose();
  disposeMask(mask);
});

// ---------------------------------------------------------------------------------------------
// Refusals

Deno.test("attention, rope and masks refuse bad shapes before dispatching", async () => {
  await gpuReady;
  const mask = paddingMask(allValid(2, 8));
  const t = (shape: number[], dtype: "f32" | "i32" = "f32") =>
    tensor(new Array(shape.reduce((a, b) => a * b, 1)).fill(0), shape, dtype);
  tidy(() => refusals(mask, t));
  disposeMask(mask);
});

function refusals(mask: AttentionMask, t: (shape: number[], dtype?: "f32" | "i32") => Tensor) {
  const q = t([2, 8, 2, 16]), k = t([2, 8, 2, 16]);
  const before = recorderStats.dispatches;
  const cases: [() => unknown, RegExp, string][] = [
    [() => attention(t([2, 8, 32]), k, k, mask), /\[B, S, H, Dh\]/, "rank 3 q"],
    [() => attention(q, t([2, 8, 2, 8]), k, mask), /k and v must be/, "head dims differ"],
    [() => attention(q, k, t([2, 7, 2, 16]), mask), /k and v must be/, "k and v lengths differ"],
    [
      () => attention(t([2, 8, 2, 6]), t([2, 8, 2, 6]), t([2, 8, 2, 6]), mask),
      /multiple of 4/,
      "Dh 6",
    ],
    [() => attention(q, k, t([2, 8, 2, 16], "i32"), mask), /f32/, "i32 v"],
    [
      () => attention(t([3, 8, 2, 16]), t([3, 8, 2, 16]), t([3, 8, 2, 16]), mask),
      /batch/,
      "mask batch",
    ],
    [
      () => attention(t([2, 9, 2, 16]), t([2, 9, 2, 16]), t([2, 9, 2, 16]), mask),
      /positions/,
      "mask too short",
    ],
    [() => rope(q, t([8, 4, 2])), /table/, "rope table for another head dim"],
    [() => rope(q, t([8, 8, 2]), 1), /outside the table/, "rope rows past the table"],
    [() => attentionMask([0, -1], allValid(1, 2)), /level/, "negative level"],
    [() => blockCausalMask([1, 2], [[true, true], [true]]), /text rows/, "ragged text rows"],
  ];
  for (const [fn, pattern, what] of cases) assertThrows(fn, pattern, what);
  assert(recorderStats.dispatches === before, "a refused op dispatched work");
}
