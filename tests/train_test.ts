// End-to-end: a small MLP learns a fixed regression task, and a long run's pooled GPU memory
// stops growing (every intermediate is freed by tidy()).
import { poolStats, sync } from "../lib/gpu/mod.ts";
import { backward, zeroGrad } from "../lib/tensor/autograd.ts";
import { linear } from "../lib/tensor/matmul.ts";
import { mean, silu, square, sub } from "../lib/tensor/ops.ts";
import { parameter, type Tensor, tensor, tidy } from "../lib/tensor/tensor.ts";
import { AdamW } from "../lib/train/optim.ts";
import { assert, gpuReady, rng, uniform } from "./helpers.ts";

function mlp(sizes: number[], seed: number) {
  const r = rng(seed);
  const params: Tensor[] = [];
  for (let i = 0; i + 1 < sizes.length; i++) {
    const bound = 1 / Math.sqrt(sizes[i]);
    const w = Array.from({ length: sizes[i + 1] * sizes[i] }, () => (2 * r() - 1) * bound);
    const b = Array.from({ length: sizes[i + 1] }, () => (2 * r() - 1) * bound);
    params.push(parameter(w, [sizes[i + 1], sizes[i]]), parameter(b, [sizes[i + 1]]));
  }
  const forward = (x: Tensor) => {
    let h = x;
    for (let i = 0; i < params.length; i += 2) {
      h = linear(h, params[i], params[i + 1]);
      if (i + 2 < params.length) h = silu(h);
    }
    return h;
  };
  return { params, forward };
}

/** y = sin(2·x0)·cos(x1) on [-1.5, 1.5]²: smooth, nonlinear, learnable by a small MLP. */
function task(n: number) {
  const xs = uniform(2 * n, -1.5, 1.5, 1234);
  const ys = Array.from({ length: n }, (_, i) => Math.sin(2 * xs[2 * i]) * Math.cos(xs[2 * i + 1]));
  return { x: tensor(xs, [n, 2]), y: tensor(ys, [n, 1]) };
}

function trainStep(model: ReturnType<typeof mlp>, opt: AdamW, x: Tensor, y: Tensor): Tensor {
  return tidy(() => {
    zeroGrad(model.params);
    const loss = mean(square(sub(model.forward(x), y)).reshape([-1]), 0, true);
    backward(loss);
    opt.update();
    return loss;
  });
}

Deno.test("a small MLP trained for 200 steps fits sin(2x)·cos(y) to MSE < 0.01", async () => {
  await gpuReady;
  const { x, y } = task(256);
  const model = mlp([2, 32, 32, 1], 7);
  const opt = new AdamW(model.params, { lr: 1e-2, weightDecay: 0, maxGradNorm: 1 });
  let first = NaN, last = NaN;
  for (let step = 0; step < 200; step++) {
    const loss = trainStep(model, opt, x, y);
    if (step === 0) first = await loss.item();
    if (step === 199) last = await loss.item();
    loss.dispose();
  }
  console.log(`MLP MSE: ${first.toFixed(4)} -> ${last.toFixed(5)}`);
  assert(last < 0.01, `MSE after 200 steps is ${last} (started at ${first}), want < 0.01`);
  assert(last < first / 10, `loss fell only from ${first} to ${last}`);
  opt.dispose();
  zeroGrad(model.params);
  for (const t of [...model.params, x, y]) t.dispose();
});

Deno.test("pooled GPU memory stops growing over 1000 training steps", async () => {
  await gpuReady;
  const { x, y } = task(64);
  const model = mlp([2, 16, 16, 1], 3);
  const opt = new AdamW(model.params, { lr: 1e-3, maxGradNorm: 1 });
  let afterWarmup = 0;
  let inUse = 0;
  for (let step = 0; step < 1000; step++) {
    trainStep(model, opt, x, y).dispose();
    if (step === 9) {
      await sync();
      afterWarmup = poolStats.allocatedBytes;
      inUse = poolStats.inUseBytes;
    }
  }
  await sync();
  assert(
    poolStats.allocatedBytes === afterWarmup,
    `pool grew from ${afterWarmup} to ${poolStats.allocatedBytes} bytes between steps 10 and 1000`,
  );
  assert(
    poolStats.inUseBytes === inUse,
    `in-use bytes went from ${inUse} to ${poolStats.inUseBytes}`,
  );
  opt.dispose();
  zeroGrad(model.params);
  for (const t of [...model.params, x, y]) t.dispose();
});
