import convTiles from "../kernels/conv_tiles.json" with { type: "json" };
import { type MatmulTile, parseTile, tileName, TILES, tileValid } from "../kernels/matmul.ts";
import {
  conv2d,
  type Conv2dMethod,
  type Conv2dOptions,
  DOWNSAMPLE,
  setImplicitGenerations,
} from "../lib/tensor/conv2d.ts";
import { biasGrad } from "../lib/tensor/conv2d_im2col.ts";
import { convBiasGrad, lastConvGenerations } from "../lib/tensor/conv2d_implicit.ts";
import { tensor, tidyAsync } from "../lib/tensor/tensor.ts";
import {
  assertClose,
  assertThrows,
  f32,
  gpuReady,
  type Input,
  numericGrads,
  randn,
  runWithGrads,
} from "./helpers.ts";
import { type Case, convRef } from "./image_ref.ts";

async function check(c: Case, what: string) {
  const x = f32(randn(c.x.reduce((a, b) => a * b)));
  const w = f32(randn(c.w.reduce((a, b) => a * b), undefined, 0.3));
  const bias = c.bias ? f32(randn(c.w[0])) : null;
  const ref0 = convRef(x, w, bias, c);
  const r = f32(randn(ref0.y.length));
  const ref = convRef(x, w, bias, c, r);
  const inputs: Input[] = [{ data: x, shape: [...c.x] }, { data: w, shape: [...c.w] }];
  if (bias) inputs.push({ data: bias, shape: [c.w[0]] });
  const { out, shape, grads } = await runWithGrads(
    ([xt, wt, bt]) => conv2d(xt, wt, bt, c.opts),
    inputs,
    r,
  );
  if (shape.join() !== ref.shape.join()) throw new Error(`${what}: shape [${shape}]`);
  assertClose(out, ref.y, 1e-5, `${what} y`);
  assertClose(grads[0]!, ref.dx, 1e-5, `${what} dx`);
  assertClose(grads[1]!, ref.dw, 1e-5, `${what} dw`);
  if (bias) assertClose(grads[2]!, ref.db, 1e-5, `${what} dbias`);
}

const METHODS: Conv2dMethod[] = ["implicit", "implicit-v1", "im2col"];
const IMPLICIT: Conv2dMethod[] = ["implicit", "implicit-v1"];

Deno.test("conv2d forward and gradients match float64 at odd sizes, strides and paddings", async () => {
  await gpuReady;
  const cases: [string, Case][] = [
    ["3x3 s1 p1", { x: [2, 3, 7, 6], w: [5, 3, 3, 3], bias: true, opts: { padding: 1 } }],
    ["3x3 s2 p1", {
      x: [1, 4, 9, 7],
      w: [6, 4, 3, 3],
      bias: true,
      opts: { stride: 2, padding: 1 },
    }],
    ["downsample 8x8", { x: [2, 4, 8, 8], w: [4, 4, 3, 3], bias: true, opts: DOWNSAMPLE }],
    ["downsample 7x9", { x: [1, 3, 7, 9], w: [2, 3, 3, 3], bias: true, opts: DOWNSAMPLE }],
    ["downsample 10x10 vec4", {
      x: [3, 8, 10, 10],
      w: [12, 8, 3, 3],
      bias: true,
      opts: DOWNSAMPLE,
    }],
    ["1x1", { x: [3, 5, 5, 3], w: [7, 5, 1, 1], bias: false, opts: {} }],
    ["1x1 vec4", { x: [2, 12, 4, 4], w: [20, 12, 1, 1], bias: true, opts: {} }],
    ["1x1 s2", { x: [1, 2, 5, 6], w: [3, 2, 1, 1], bias: true, opts: { stride: 2 } }],
    [
      "2x3 asymmetric",
      { x: [2, 2, 5, 4], w: [3, 2, 2, 3], bias: true, opts: { padding: [2, 0, 1, 3] } },
    ],
    ["vec4 paths", { x: [2, 8, 12, 12], w: [16, 8, 3, 3], bias: true, opts: { padding: 1 } }],
    // More than one tile along every GEMM dim, K not a multiple of 4.
    ["70 channels", { x: [2, 9, 9, 11], w: [70, 9, 3, 3], bias: true, opts: { padding: 1 } }],
    // Batch 3, odd channel counts, H ≠ W: downsampling, 1×1 (planes of 4n and not), 3×3.
    ["downsample b3 9x7", { x: [3, 5, 9, 7], w: [7, 5, 3, 3], bias: true, opts: DOWNSAMPLE }],
    ["1x1 b3 odd", { x: [3, 7, 5, 9], w: [5, 7, 1, 1], bias: true, opts: {} }],
    ["1x1 b3 vec4", { x: [3, 5, 4, 6], w: [3, 5, 1, 1], bias: true, opts: {} }],
    ["3x3 b3 p1 odd", { x: [3, 3, 6, 11], w: [5, 3, 3, 3], bias: true, opts: { padding: 1 } }],
    // Unpadded, with taps that never leave the image (no bounds checks generated).
    ["3x3 s2 unpadded", { x: [3, 3, 9, 11], w: [5, 3, 3, 3], bias: true, opts: { stride: 2 } }],
    // Pixels a stride-2 phase misses (H = 1): the phase without pixels dispatches nothing.
    ["1 row s2", { x: [2, 3, 1, 6], w: [4, 3, 3, 3], bias: true, opts: { stride: 2, padding: 1 } }],
    // 2376 pixels: the automatic K split of the weight gradient cuts 2 slabs.
    ["auto slabs", { x: [3, 5, 33, 24], w: [7, 5, 3, 3], bias: true, opts: { padding: 1 } }],
  ];
  for (const method of METHODS) {
    for (const [what, c] of cases) {
      await check({ ...c, opts: { ...c.opts, method } }, `${method} ${what}`);
    }
  }
});

Deno.test("conv2d gives the same result when cut into image units, row bands and blocks", async () => {
  await gpuReady;
  const base = { x: [3, 4, 11, 9], w: [5, 4, 3, 3], bias: true } as const;
  const perRow = 4 * 9 * 9 * 4; // Cin·kh·kw rows × Wo columns × 4 bytes, padding 1
  const controls: [string, Conv2dOptions][] = [
    ["one image per unit", { columnBytes: perRow * 11 }],
    ["row bands of 3", { columnBytes: perRow * 3 }],
    ["row bands of 1, stride 2", { columnBytes: perRow, stride: 2 }],
    ["5 blocks", { splits: 5 }],
    ["bands and blocks", { columnBytes: perRow * 4, splits: 3 }],
  ];
  for (const [what, o] of controls) {
    const opts = { padding: 1, method: "im2col", ...o } as const;
    await check({ ...base, x: [...base.x], w: [...base.w], opts }, what);
  }
  // 640 columns in 2 blocks of whole 128-column tiles: 384 + 256, the last one padded.
  for (const method of METHODS) {
    await check(
      { x: [2, 2, 16, 20], w: [3, 2, 3, 3], bias: true, opts: { padding: 1, splits: 2, method } },
      `${method} tile-aligned blocks`,
    );
  }
  // The implicit weight gradient's K split into 5 and 7 slabs of vec4s (the last ones short).
  for (const method of IMPLICIT) {
    for (const splits of [5, 7]) {
      await check(
        { ...base, x: [...base.x], w: [...base.w], opts: { padding: 1, splits, method } },
        `${method} ${splits} slabs`,
      );
    }
  }
});

Deno.test("implicit conv2d's forward and dx with K split into slabs", async () => {
  // K = Cin·9 = 108 (forward) and Cout·9 = 90 (dx) in slabs of 32 or 64: the last ones short, the
  // bias in slab 0 only. Stride 2 splits the forward only (dx has four phases there).
  await gpuReady;
  for (const kSplits of [2, 3, 4]) {
    for (const stride of [1, 2]) {
      await check(
        { x: [2, 12, 7, 9], w: [10, 12, 3, 3], bias: true, opts: { padding: 1, stride, kSplits } },
        `${kSplits} slabs, stride ${stride}`,
      );
    }
  }
});

Deno.test("implicit conv2d with its kernels' generations mixed", async () => {
  // Each kernel of the second generation beside the first generation's others (and the reverse),
  // as tools/profile_tokenizer_step.ts times them.
  await gpuReady;
  const keys = ["forward", "dx", "dw", "bias"] as const;
  try {
    for (const key of keys) {
      for (const [on, off] of [[2, 1], [1, 2]] as const) {
        const gens = Object.fromEntries(keys.map((k) => [k, k === key ? on : off]));
        setImplicitGenerations(gens);
        await check(
          { x: [3, 5, 9, 7], w: [7, 5, 3, 3], bias: true, opts: { ...DOWNSAMPLE } },
          `${key} ${on}, others ${off}`,
        );
      }
    }
  } finally {
    setImplicitGenerations({ forward: 3, dx: 3, dw: 3, bias: 2 });
  }
});

Deno.test("implicit conv2d's third generation (tap-major K, slices inside one row) matches float64", async () => {
  // Generation 3 runs where a K slice lies in one tap (channels a multiple of BK) and, for dW, in
  // one output row (Wo a multiple of BK); elsewhere generation 2 does. Each case says which
  // passes must have run at 3, so a shape that silently fell back can't pass for it.
  await gpuReady;
  const bk8 = { bm: 32, bn: 32, bk: 8, tm: 4, tn: 4, prefetch: false };
  const bk16 = { bm: 64, bn: 32, bk: 16, tm: 4, tn: 4, prefetch: true };
  type Gens = ReturnType<typeof lastConvGenerations>;
  const cases: [string, Case, Gens][] = [
    ["3x3 p1", {
      x: [2, 16, 5, 16],
      w: [24, 16, 3, 3],
      bias: true,
      opts: { padding: 1, tile: bk8 },
    }, { forward: 3, dx: 3, dw: 3 }],
    ["3x3 p1 bk16 prefetch, odd rows", {
      x: [3, 32, 7, 16],
      w: [16, 32, 3, 3],
      bias: true,
      opts: { padding: 1, tile: bk16 },
    }, { forward: 3, dx: 3, dw: 3 }],
    ["3x3 p1, K split in 3 slabs", {
      x: [2, 16, 6, 8],
      w: [32, 16, 3, 3],
      bias: true,
      opts: { padding: 1, tile: bk8, kSplits: 3 },
    }, { forward: 3, dx: 3, dw: 3 }],
    // Stride 2: forward and dW at 3, dx (four phases) at 2.
    ["downsample", {
      x: [2, 8, 16, 16],
      w: [8, 8, 3, 3],
      bias: true,
      opts: { ...DOWNSAMPLE, tile: bk8 },
    }, { forward: 3, dx: 2, dw: 3 }],
    // Channels not a multiple of BK, and Wo not: every pass falls back to 2.
    ["fallback", {
      x: [2, 12, 5, 12],
      w: [20, 12, 3, 3],
      bias: true,
      opts: { padding: 1, tile: bk8 },
    }, { forward: 2, dx: 2, dw: 2 }],
    ["1x1", { x: [2, 8, 4, 8], w: [16, 8, 1, 1], bias: true, opts: { tile: bk8 } }, {
      forward: 3,
      dx: 3,
      dw: 3,
    }],
  ];
  for (const [what, c, want] of cases) {
    await check(c, `generation 3 ${what}`);
    const got = lastConvGenerations();
    for (const pass of ["forward", "dx", "dw"] as const) {
      if (got[pass] !== want[pass]) {
        throw new Error(`${what}: ${pass} ran at generation ${got[pass]}, expected ${want[pass]}`);
      }
    }
  }
});

Deno.test("implicit conv2d is right with the large matmul tiles", async () => {
  // The GEMM tile decides which thread loads which patch element; tests' shapes alone only
  // ever pick the small one on a GPU, and cpuTile's on a CPU adapter.
  await gpuReady;
  const cases: [MatmulTile, Conv2dOptions][] = [
    [TILES.large, { padding: 1 }],
    [TILES.small, { padding: 1 }],
    [TILES.small, DOWNSAMPLE],
    [TILES.wide, DOWNSAMPLE],
    [{ ...TILES.large, prefetch: true }, DOWNSAMPLE],
    // Three vec4 accumulators a thread row (a 192-wide tile fits 64 input channels' 576 = 3 × 192).
    [{ bm: 64, bn: 192, bk: 32, tm: 4, tn: 12, prefetch: false }, { padding: 1 }],
  ];
  for (const method of IMPLICIT) {
    for (const [tile, opts] of cases) {
      await check(
        { x: [2, 6, 9, 10], w: [10, 6, 3, 3], bias: true, opts: { ...opts, tile, method } },
        `${method} tile ${tileName(tile)} stride ${opts.stride ?? 1}`,
      );
    }
  }
  // 1×1 at 128×128 (the generation-2 path with no bounds checks) and a 4-deep K tile.
  await check(
    { x: [3, 9, 7, 5], w: [11, 9, 1, 1], bias: true, opts: { tile: TILES.large } },
    "1x1 tile 128x128",
  );
  await check(
    {
      x: [3, 5, 7, 6],
      w: [6, 5, 3, 3],
      bias: true,
      opts: { ...DOWNSAMPLE, tile: { bm: 64, bn: 64, bk: 4, tm: 8, tn: 8, prefetch: false } },
    },
    "downsample tile 64x64x4",
  );
});

Deno.test("every tile of the measured table (kernels/conv_tiles.json) is well formed and right", async () => {
  // The table is read when conv2d_implicit.ts loads: a misspelt tile would stop every command,
  // and a tile the tests never ran would reach users' GPUs unchecked (the table applies on GPUs
  // only, so the tiles are forced here).
  await gpuReady;
  const KEY = /^(forward|dx|dw) \d+>\d+ \d+x\d+ k\d+s\d+$/;
  const names = new Set<string>();
  for (const [key, name] of Object.entries(convTiles.tiles as Record<string, string>)) {
    if (!KEY.test(key)) throw new Error(`conv_tiles.json: key '${key}'`);
    if (!tileValid(parseTile(name))) throw new Error(`conv_tiles.json: tile ${name} of ${key}`);
    names.add(name);
  }
  // One convolution a tile on the second-generation GEMMs (6 channels), stride 1 and VQGAN's
  // downsample in turn, then one on the third (32 channels, rows of 32: every pass at 3).
  for (const [i, name] of [...names].entries()) {
    const opts: Conv2dOptions = i % 2 ? DOWNSAMPLE : { padding: 1 };
    const tile = parseTile(name);
    await check(
      { x: [2, 6, 9, 10], w: [10, 6, 3, 3], bias: true, opts: { ...opts, tile } },
      `table tile ${name} stride ${opts.stride ?? 1}`,
    );
    await check(
      { x: [1, 32, 3, 32], w: [32, 32, 3, 3], bias: true, opts: { padding: 1, tile } },
      `table tile ${name}, generation 3`,
    );
    const gens = lastConvGenerations();
    if (gens.forward !== 3 || gens.dx !== 3 || gens.dw !== 3) {
      throw new Error(`table tile ${name}: generation 3 not run (${JSON.stringify(gens)})`);
    }
  }
});

Deno.test("the conv2d reference agrees with central differences", () => {
  // Guards the analytic gradients the GPU is checked against.
  const c: Case = { x: [1, 2, 5, 4], w: [2, 2, 3, 3], bias: true, opts: DOWNSAMPLE };
  const x = randn(40), w = randn(36), b = randn(2);
  const r = randn(convRef(x, w, b, c).y.length);
  const ref = convRef(x, w, b, c, r);
  const num = numericGrads(([xs, ws, bs]) => convRef(xs, ws, bs, c).y, [x, w, b], r, 1e-4);
  assertClose(ref.dx, num[0], 1e-8, "dx");
  assertClose(ref.dw, num[1], 1e-8, "dw");
  assertClose(ref.db, num[2], 1e-8, "db");
});

Deno.test("conv2d refuses shapes that disagree, naming the op and the shapes", async () => {
  await gpuReady;
  await tidyAsync(async () => {
    const x = tensor(new Float32Array(2 * 3 * 4 * 4), [2, 3, 4, 4]);
    const w = (shape: number[]) => tensor(new Float32Array(shape.reduce((a, b) => a * b)), shape);
    assertThrows(
      () => conv2d(x, w([4, 2, 3, 3])),
      /conv2d: .*x \[2, 3, 4, 4\], w \[4, 2, 3, 3\]/,
      "Cin",
    );
    assertThrows(() => conv2d(x, w([4, 3, 3, 3]), w([3])), /conv2d: bias must be \[4\]/, "bias");
    assertThrows(() => conv2d(x.reshape([6, 4, 4]), w([4, 3, 3, 3])), /conv2d: needs x/, "rank");
    assertThrows(() => conv2d(x, w([4, 3, 5, 5])), /conv2d: the kernel is larger/, "kernel");
    assertThrows(() => conv2d(x, w([4, 3, 3, 3]), undefined, { stride: 0 }), /stride/, "stride");
    await Promise.resolve();
  });
});

Deno.test("the conv bias gradient (plane sums, then channel sums) matches float64", async () => {
  // Direct calls of both kernels, so a gradient the op never asks for is still checked: planes of
  // 4n pixels (vec4 loads) and not, more pixels than a workgroup's threads, one channel.
  await gpuReady;
  const shapes: [number, number, number, number][] = [
    [3, 5, 7, 9],
    [3, 7, 4, 6],
    [2, 3, 33, 41],
    [1, 1, 3, 1],
    [5, 130, 2, 2],
  ];
  for (const [B, C, Ho, Wo] of shapes) {
    const n = B * C * Ho * Wo;
    const data = f32(randn(n));
    const ref = new Float64Array(C);
    for (let i = 0; i < n; i++) ref[Math.floor(i / (Ho * Wo)) % C] += data[i];
    const g = {
      B,
      Cin: 1,
      H: Ho,
      W: Wo,
      Cout: C,
      kh: 1,
      kw: 1,
      stride: 1,
      pad: [0, 0, 0, 0] as const,
      Ho,
      Wo,
    };
    for (const [what, fn] of [["convBiasGrad", convBiasGrad], ["biasGrad", biasGrad]] as const) {
      const out = await tidyAsync(async () => {
        const gy = tensor(Float32Array.from(data), [B, C, Ho, Wo]);
        const db = fn(gy, g);
        const got = await db.toArray();
        db.dispose();
        return got;
      });
      assertClose(out, ref, 1e-5, `${what} [${B}, ${C}, ${Ho}, ${Wo}]`);
    }
  }
});
