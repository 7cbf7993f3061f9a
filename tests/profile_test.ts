// GPU profiling: every dispatch timed in a pass of its own, totals by pipeline label, and the
// results unchanged by it.
import { gpu, gpuProfile, startGpuProfile, stopGpuProfile } from "../lib/gpu/mod.ts";
import { add, mul } from "../lib/tensor/ops.ts";
import { tensor, tidyAsync } from "../lib/tensor/tensor.ts";
import { assert, assertClose, f32, gpuReady, randn } from "./helpers.ts";

Deno.test("the GPU profiler counts and times dispatches by label without changing results", async () => {
  await gpuReady;
  if (!gpu().timestamps) {
    console.log("skipped: this adapter has no timestamp-query feature");
    return;
  }
  const n = 1000;
  const a = f32(randn(n)), b = f32(randn(n));
  await tidyAsync(async () => {
    const [ta, tb] = [tensor(a, [n]), tensor(b, [n])];
    assert(startGpuProfile(), "startGpuProfile");
    let y = add(ta, tb);
    for (let k = 0; k < 2; k++) y = add(y, tb);
    const z = mul(y, ta);
    stopGpuProfile();
    add(z, z); // not timed: profiling stopped
    const prof = await gpuProfile();
    const adds = prof.get("binary:add:f32:main"), muls = prof.get("binary:mul:f32:main");
    assert(adds?.count === 3, `3 adds timed, got ${adds?.count}`);
    assert(muls?.count === 1, `1 mul timed, got ${muls?.count}`);
    assert(adds.ms >= 0 && Number.isFinite(adds.ms), `add time ${adds.ms}`);
    assert((await gpuProfile()).size === 0, "a second read is empty");
    const want = Array.from(a, (ai, i) => (ai + 3 * b[i]) * ai);
    assertClose(await z.toArray(), want, 1e-6, "profiled results");
  });
});
