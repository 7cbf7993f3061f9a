import { areaResize, bicubicResize, upsampleNearest2x } from "../lib/tensor/resize.ts";
import { tensor, tidyAsync } from "../lib/tensor/tensor.ts";
import { areaMatrix, bicubicMatrix, separable } from "./image_ref.ts";
import { assertClose, assertThrows, f32, gpuReady, randn, runWithGrads } from "./helpers.ts";

// VAR's scale pairs and a few awkward ones.
const PAIRS: [number[], number[]][] = [
  [[16, 16], [13, 13]],
  [[13, 13], [16, 16]],
  [[1, 1], [8, 8]],
  [[8, 8], [1, 1]],
  [[6, 6], [8, 8]],
  [[1, 1], [16, 16]],
  [[5, 3], [4, 7]],
  [[3, 16], [16, 5]],
  [[7, 7], [7, 7]],
];

Deno.test("bicubic and area resize match float64 references, forward and backward", async () => {
  await gpuReady;
  for (
    const [op, fn, matrix] of [
      ["bicubic", bicubicResize, bicubicMatrix],
      ["area", areaResize, areaMatrix],
    ] as const
  ) {
    for (const [[H, W], [oH, oW]] of PAIRS) {
      const B = 2, C = 3;
      const x = f32(randn(B * C * H * W));
      const r = f32(randn(B * C * oH * oW));
      const Ry = matrix(H, oH), Rx = matrix(W, oW);
      const { out, shape, grads } = await runWithGrads(
        ([t]) => fn(t, oH, oW),
        [{ data: x, shape: [B, C, H, W] }],
        r,
      );
      const what = `${op} ${H}×${W} → ${oH}×${oW}`;
      if (shape.join() !== [B, C, oH, oW].join()) throw new Error(`${what}: shape [${shape}]`);
      assertClose(out, separable(x, B * C, [H, W], [oH, oW], Ry, Rx), 1e-6, what);
      const dx = separable(r, B * C, [H, W], [oH, oW], Ry, Rx, true);
      // Each input's gradient sums about oH·oW/(H·W) output gradients in f32, whose rounding
      // grows like the square root of the count (1×1 → 16×16 sums 256 of them; at a flat 1e-6
      // the random draws failed it now and then).
      const dxTol = 1e-6 * Math.sqrt(Math.max(1, (oH * oW) / (H * W)));
      assertClose(grads[0]!, dx, dxTol, `${what} dx`);
    }
  }
});

// From tools/resize_reference.py (PyTorch 2.13, float64): [in, out, Σ y·cos(0.37j + 0.1), y[:4]].
type Golden = [number[], number[], number, number[]];
const TORCH: Record<"bicubic" | "area", Golden[]> = {
  bicubic: [
    [[16, 16], [13, 13], 0.538489470829, [0.232323076, 0.874932851, 0.876501683, 0.287007305]],
    [[13, 13], [16, 16], 3.68080739023, [0.27564029, 0.747235764, 1.10980439, 1.05516594]],
    [[1, 1], [8, 8], 1.4887805889, [0.295520207, 0.295520207, 0.295520207, 0.295520207]],
    [[8, 8], [1, 1], 1.27504709952, [0.366725899, 1.02084531]],
    [[6, 6], [8, 8], 4.31286067594, [0.345381425, 0.743192766, 1.09923439, 1.06541874]],
    [[5, 3], [4, 7], 0.0838872877417, [0.306777003, 0.401694523, 0.587362683, 0.767373921]],
    [[16, 16], [1, 1], 1.50918379814, [1.02962586, 0.543650761]],
    [[3, 16], [16, 5], -0.109674408368, [1.01403811, -0.314783929, -0.662781572, 1.10797609]],
  ],
  area: [
    [[16, 16], [13, 13], -0.889618652446, [-0.0241725664, 0.450595238, 0.713441061, 0.640744406]],
    [[13, 13], [16, 16], 14.5082084428, [0.295520207, 0.568495596, 0.916567898, 0.833563996]],
    [[1, 1], [8, 8], 1.4887805889, [0.295520207, 0.295520207, 0.295520207, 0.295520207]],
    [[8, 8], [1, 1], 0.0221203129098, [0.00636218979, 0.0177102615]],
    [[6, 6], [8, 8], 3.84210124795, [0.295520207, 0.568495596, 0.916567898, 0.99166481]],
    [[5, 3], [4, 7], -0.381646140432, [0.485491694, 0.485491694, 0.463508759, 0.441525824]],
    [[16, 16], [1, 1], 0.0166611351074, [0.0113668962, 0.0060018129]],
    [[3, 16], [16, 5], -0.0380228132522, [0.701029796, -0.218086041, -0.480830019, 0.703576365]],
  ],
};

Deno.test("bicubic and area resize agree with PyTorch's own outputs", async () => {
  await gpuReady;
  for (const mode of ["bicubic", "area"] as const) {
    for (const [[H, W], [oH, oW], dot, first] of TORCH[mode]) {
      const x = Array.from(
        { length: 2 * H * W },
        (_, i) => Math.sin(0.7 * (i % (H * W)) + 0.3 + Math.floor(i / (H * W))),
      );
      const fn = mode === "bicubic" ? bicubicResize : areaResize;
      const y = await tidyAsync(() => fn(tensor(x, [1, 2, H, W]), oH, oW).toArray());
      const what = `${mode} ${H}×${W} → ${oH}×${oW} vs PyTorch`;
      assertClose(y.slice(0, first.length), first, 1e-6, what);
      // The weighted sum cancels: bound its error by the sum of the terms' magnitudes.
      const terms = y.map((v, j) => v * Math.cos(0.37 * j + 0.1));
      const got = terms.reduce((s, v) => s + v, 0);
      const scale = terms.reduce((s, v) => s + Math.abs(v), 0);
      if (!(Math.abs(got - dot) <= 1e-6 * scale)) {
        throw new Error(`${what}: weighted sum ${got} vs ${dot} (terms' magnitude ${scale})`);
      }
    }
  }
});

Deno.test("nearest ×2 upsampling and its gradient", async () => {
  await gpuReady;
  const [B, C, H, W] = [2, 3, 5, 3];
  const x = f32(randn(B * C * H * W));
  const r = f32(randn(B * C * 4 * H * W));
  const { out, grads } = await runWithGrads(
    ([t]) => upsampleNearest2x(t),
    [{ data: x, shape: [B, C, H, W] }],
    r,
  );
  const eye = (n: number) => {
    const R = new Float64Array(2 * n * n);
    for (let o = 0; o < 2 * n; o++) R[o * n + (o >> 1)] = 1;
    return R;
  };
  const [Ry, Rx] = [eye(H), eye(W)];
  assertClose(out, separable(x, B * C, [H, W], [2 * H, 2 * W], Ry, Rx), 0, "nearest2x");
  const dx = separable(r, B * C, [H, W], [2 * H, 2 * W], Ry, Rx, true);
  assertClose(grads[0]!, dx, 1e-7, "nearest2x dx");
});

Deno.test("resizes refuse bad sizes, naming the op and the shapes", async () => {
  await gpuReady;
  await tidyAsync(async () => {
    const x = tensor(new Float32Array(12), [1, 3, 4]);
    assertThrows(() => areaResize(x, 0, 2), /areaResize: sizes .*x \[1, 3, 4\] → 0×2/, "zero");
    assertThrows(() => bicubicResize(x, 2.5), /bicubicResize: sizes/, "fraction");
    assertThrows(() => upsampleNearest2x(x.reshape([12])), /upsampleNearest2x: needs x/, "rank");
    await Promise.resolve();
  });
});
