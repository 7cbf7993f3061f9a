// The tape: gradients that several inputs share (add passes its gradient through without a
// kernel), leaves that take a gradient over instead of copying it, and accumulation across
// backward calls into those taken-over buffers.
import { backward, zeroGrad } from "../lib/tensor/autograd.ts";
import { add, mul, sub, sumAll } from "../lib/tensor/ops.ts";
import { parameter, tensor, tidyAsync } from "../lib/tensor/tensor.ts";
import { assertClose, f32, gpuReady, randn } from "./helpers.ts";

Deno.test("shared and passed-through gradients: add, sub, repeats, broadcasts, two backwards", async () => {
  await gpuReady;
  const n = 37;
  const [av, bv, cv, rv] = [0, 0, 0, 0].map(() => f32(randn(n)));
  const biasV = f32(randn(1));
  const a = parameter(av, [n]), b = parameter(bv, [n]), c = parameter(cv, [n]);
  const bias = parameter(biasV, [1]);
  // L = Σ r·((a + b) + (a − c) + (b + b) + bias) + Σ (a + b)·c
  //   dL/da = 2r + c,  dL/db = 3r + c,  dL/dc = −r + a + b,  dL/dbias = Σ r
  const loss = () => {
    const ab = add(a, b);
    const y = add(add(add(ab, sub(a, c)), add(b, b)), bias);
    return add(sumAll(mul(y, tensor(rv, [n]))), sumAll(mul(ab, c)));
  };
  const want = {
    a: rv.map((r, i) => 2 * r + cv[i]),
    b: rv.map((r, i) => 3 * r + cv[i]),
    c: rv.map((r, i) => -r + av[i] + bv[i]),
    bias: [rv.reduce((s, r) => s + r, 0)],
  };
  await tidyAsync(async () => {
    backward(loss());
    assertClose(await a.grad!.toArray(), want.a, 1e-6, "da");
    assertClose(await b.grad!.toArray(), want.b, 1e-6, "db");
    assertClose(await c.grad!.toArray(), want.c, 1e-6, "dc");
    assertClose(await bias.grad!.toArray(), want.bias, 1e-5, "dbias");
    // A second backward accumulates into the buffers the first one handed over.
    backward(loss());
    const twice = (v: ArrayLike<number>) => Array.from(v, (x) => 2 * x);
    assertClose(await a.grad!.toArray(), twice(want.a), 1e-6, "da after two backwards");
    assertClose(await b.grad!.toArray(), twice(want.b), 1e-6, "db after two backwards");
    assertClose(await c.grad!.toArray(), twice(want.c), 1e-6, "dc after two backwards");
  });
  zeroGrad([a, b, c, bias]);
  // Two leaves offered one and the same gradient tensor: at most one may take it over.
  await tidyAsync(async () => {
    for (let k = 0; k < 2; k++) backward(sumAll(mul(add(a, b), tensor(rv, [n]))));
    assertClose(await a.grad!.toArray(), Array.from(rv, (r) => 2 * r), 1e-6, "da, shared g");
    assertClose(await b.grad!.toArray(), Array.from(rv, (r) => 2 * r), 1e-6, "db, shared g");
  });
  zeroGrad([a, b, c, bias]);
  // A gradient given by the caller is never taken over: it stays the caller's, unchanged.
  await tidyAsync(async () => {
    const g = tensor(rv, [n]);
    backward(add(a, b), g);
    backward(add(a, b), g);
    assertClose(await g.toArray(), rv, 0, "caller's gradient untouched");
    assertClose(await a.grad!.toArray(), Array.from(rv, (r) => 2 * r), 1e-6, "da from given g");
  });
  zeroGrad([a, b, c, bias]);
  for (const t of [a, b, c, bias]) t.dispose();
});
