// The buffer pool hands out each size class's oldest free buffer, so a repeated sequence of
// requests gets the same buffers whatever order they were freed in; the recorder then finds its
// bind groups in its cache.
import { acquireBuffer, poolStats, recorderStats, releaseBuffer, sync } from "../lib/gpu/mod.ts";
import { add, mul } from "../lib/tensor/ops.ts";
import { tensor, tidyAsync } from "../lib/tensor/tensor.ts";
import { assert, assertClose, f32, gpuReady, randn } from "./helpers.ts";

Deno.test("the pool hands out the oldest free buffer of a class, whatever the release order", async () => {
  await gpuReady;
  const bytes = 4096 * 3 + 4;
  // Drain the class's free list first (other tests may have left buffers there).
  const drained: GPUBuffer[] = [];
  for (;;) {
    const made = poolStats.buffers;
    drained.push(acquireBuffer(bytes));
    if (poolStats.buffers > made) break;
  }
  const bufs = Array.from({ length: 6 }, () => acquireBuffer(bytes));
  for (const order of [[0, 1, 2, 3, 4, 5], [5, 3, 1, 4, 0, 2], [2, 5, 0, 4, 1, 3]]) {
    for (const i of order) releaseBuffer(bufs[i]);
    const again = Array.from({ length: 6 }, () => acquireBuffer(bytes));
    assert(again.every((b, i) => b === bufs[i]), `release order ${order}: buffers handed out anew`);
  }
  for (const b of [...bufs, ...drained]) releaseBuffer(b);
});

Deno.test("a repeated step reuses its bind groups and still computes with new values", async () => {
  await gpuReady;
  const n = 333;
  const step = async (a: Float64Array, b: Float64Array) =>
    await tidyAsync(async () => {
      const [ta, tb] = [tensor(a, [n]), tensor(b, [n])];
      const y = mul(add(ta, tb), tb);
      const out = await y.toArray(); // flushes: the next step starts at uniform slot 0
      return out;
    });
  await step(f32(randn(n)), f32(randn(n)));
  await step(f32(randn(n)), f32(randn(n)));
  const before = { ...recorderStats };
  const [a, b] = [f32(randn(n)), f32(randn(n))];
  const got = await step(a, b);
  await sync();
  assert(recorderStats.bindGroupHits - before.bindGroupHits === 2, "both dispatches cached");
  assert(recorderStats.bindGroupMisses === before.bindGroupMisses, "no new bind groups");
  assertClose(got, Array.from(a, (ai, i) => (ai + b[i]) * b[i]), 1e-6, "(a + b)·b");
});
