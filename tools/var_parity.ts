// VAR tokenizer parity (issue 5, item 6): for each model that tools/var_reference.py wrote, import
// its state dict with `vmambar import-tokenizer`, run our encode (tokenize's path) and decode on
// the same images, and compare with PyTorch: the indices at every scale must be equal, and the
// encoder map f, f_hat and the reconstruction within --tol relative. Two more rows separate the
// halves: f_hat from VAR's own indices (quantizer decode alone) and the decoder on VAR's f_hat.
// Then training: the loss of one step on the same images and every parameter's gradient against
// PyTorch's (within --grad-tol, per tensor ‖Δ‖/‖ref‖; PyTorch's own f32-vs-f64 spread is shown).
//   python3 tools/var_reference.py --out DIR && deno run -A tools/var_parity.ts DIR [--tol 1e-4]
// Prints a one-screen report (also to --report FILE); exits 1 when anything is off.
import { parseArgs } from "node:util";
import { gpu, initGpu } from "../lib/gpu/mod.ts";
import { main as importTokenizer } from "../lib/cli/import_tokenizer.ts";
import { loadTokenizer } from "../lib/tokenizer/load.ts";
import { decodeIndices, encodeImages } from "../lib/tokenizer/reconstruct.ts";
import { readSafetensors, type StTensor, toFloat32 } from "../lib/io/safetensors.ts";
import { noGrad, type Tensor, tensor, tidyAsync } from "../lib/tensor/tensor.ts";
import { backward, zeroGrad } from "../lib/tensor/autograd.ts";
import { tokenizerLoss } from "../lib/train/tokenizer_trainer.ts";

const { values, positionals } = parseArgs({
  args: Deno.args,
  options: {
    names: { type: "string", default: "small,attn" },
    tol: { type: "string", default: "1e-4" },
    "grad-tol": { type: "string", default: "2e-3" },
    report: { type: "string" },
  },
  allowPositionals: true,
});
const dir = positionals[0] ?? "out/var";
const tol = Number(values.tol);
const gradTol = Number(values["grad-tol"]);

/** ‖a − b‖₂ / ‖b‖₂ and max|a − b| / max|b|. */
function errors(a: ArrayLike<number>, b: ArrayLike<number>): { rel: number; max: number } {
  let num = 0, den = 0, dmax = 0, bmax = 0;
  for (let i = 0; i < b.length; i++) {
    const d = a[i] - b[i];
    num += d * d;
    den += b[i] * b[i];
    dmax = Math.max(dmax, Math.abs(d));
    bmax = Math.max(bmax, Math.abs(b[i]));
  }
  if (a.length !== b.length) return { rel: Infinity, max: Infinity };
  return { rel: Math.sqrt(num / den), max: dmax / bmax };
}

const ints = (t: StTensor) => new Int32Array(t.data.slice().buffer);
const e = (x: number) => x.toExponential(1);

const lines: string[] = [];
const say = (s: string) => {
  lines.push(s);
  console.log(s);
};

await initGpu();
let ok = true;
say(`VAR tokenizer parity on ${gpu().name}, tolerance ${tol} (relative)`);
for (const name of values.names!.split(",")) {
  const out = await Deno.makeTempFile({ suffix: ".safetensors" });
  const io = await readSafetensors(`${dir}/${name}.io.safetensors`);
  const quiet = console.log;
  const imported: string[] = [];
  console.log = (s: string) => imported.push(s);
  try {
    await importTokenizer([
      `${dir}/${name}.vqvae.safetensors`,
      "--config",
      `${dir}/${name}.config.json`,
      "--out",
      out,
    ]);
  } finally {
    console.log = quiet;
  }
  const tok = await loadTokenizer(out);
  const { cfg, vq } = tok;
  const get = (k: string) => {
    const t = io.tensors.get(k);
    if (!t) throw new Error(`${name}.io.safetensors lacks ${k}`);
    return t;
  };
  const images = get("images");
  const [B, , S] = images.shape;
  const side = cfg.scales.at(-1)!;
  const refIdx = cfg.scales.map((_, k) => ints(get(`idx_${k}`)));
  const margins = cfg.scales.map((_, k) => toFloat32(get(`margin_${k}`)));
  const f64 = JSON.parse(io.metadata.f64 ?? "{}");
  say("");
  say(`${name}: ${imported[0].replace(/^config: /, "")}`);
  say(
    `  PyTorch ${io.metadata.torch} on ${io.metadata.device}; ${B} images ${S}×${S}; ` +
      `${imported.find((l) => l.startsWith("skipped"))?.replace(/ \(.*/, "") ?? "nothing skipped"}`,
  );
  const got = await tidyAsync(async () => {
    const x = tensor(toFloat32(images), images.shape);
    const f = noGrad(() => vq.encodeMap(x));
    const idx = encodeImages(vq, x);
    const fHat = noGrad(() => vq.quantize.decode(idx, side));
    const rec = decodeIndices(vq, idx);
    const refIdxT = refIdx.map((d, k) => tensor(d, [B, cfg.scales[k], cfg.scales[k]], "i32"));
    const fHatFromRef = noGrad(() => vq.quantize.decode(refIdxT, side));
    const refFHat = tensor(toFloat32(get("f_hat")), get("f_hat").shape);
    const recFromRef = noGrad(() => vq.decodeMap(refFHat));
    const read = (t: Tensor) => t.toArray();
    return {
      idx: await Promise.all(idx.map(read)),
      f: await read(f),
      fHat: await read(fHat),
      rec: await read(rec),
      fHatFromRef: await read(fHatFromRef),
      recFromRef: await read(recFromRef),
    };
  });
  const perScale = cfg.scales.map((pn, k) => {
    const same = got.idx[k].filter((v, i) => v === refIdx[k][i]).length;
    return { pn, same, n: refIdx[k].length, margin: Math.min(...margins[k]) };
  });
  const agree = perScale.every((s) => s.same === s.n);
  ok &&= agree;
  say(
    `  indices: ${agree ? "equal at every scale" : "DIFFER"} (` +
      perScale.map((s) => `${s.pn}:${s.same}/${s.n}`).join(" ") + ")",
  );
  say(
    `  nearest-vs-second distance gap, min over scales: ${
      e(Math.min(...perScale.map((s) => s.margin)))
    } (f32 rounding of these distances ~1e-7)`,
  );
  const rows: [string, ArrayLike<number>, ArrayLike<number>][] = [
    ["encoder map f", got.f, toFloat32(get("f"))],
    ["f_hat", got.fHat, toFloat32(get("f_hat"))],
    ["reconstruction (decoder output, unclamped)", got.rec, toFloat32(get("recon"))],
    ["f_hat from VAR's indices", got.fHatFromRef, toFloat32(get("f_hat"))],
    ["decoder on VAR's f_hat", got.recFromRef, toFloat32(get("recon"))],
  ];
  say(`  ${"".padEnd(44)}rel ‖Δ‖   max|Δ|/max|ref|`);
  for (const [what, a, b] of rows) {
    const r = errors(a, b);
    const pass = r.rel <= tol && r.max <= tol;
    ok &&= pass;
    say(`  ${what.padEnd(44)}${e(r.rel).padEnd(10)}${e(r.max).padEnd(10)}${pass ? "ok" : "OVER"}`);
  }
  if (f64.f !== undefined) {
    say(
      `  (PyTorch f32 vs its own f64: f ${e(f64.f)}, f_hat ${e(f64.f_hat)}, recon ${
        e(f64.recon)
      }, indices ${f64.indices_equal ? "equal" : "differ"})`,
    );
  }
  // Training: one loss and its gradients, as train-tokenizer computes them.
  const gradFile = `${dir}/${name}.grads.safetensors`;
  const refGrads = await readSafetensors(gradFile);
  const train = await tidyAsync(async () => {
    const x = tensor(toFloat32(images), images.shape);
    zeroGrad(vq.parameters());
    const { loss } = tokenizerLoss(vq, x);
    const value = await loss.item();
    backward(loss);
    const grads = new Map<string, number[]>();
    for (const [n, p] of vq.namedParameters()) grads.set(n, p.grad ? await p.grad.toArray() : []);
    zeroGrad(vq.parameters());
    return { value, grads };
  });
  const refLoss = Number(refGrads.metadata.loss);
  const lossErr = Math.abs(train.value - refLoss) / Math.abs(refLoss);
  // Per tensor ‖Δ‖/‖ref‖, the denominator floored at 1e-4 of the largest ‖ref‖ (as
  // var_reference.py's own spread): gradients that are zero in exact arithmetic (a conv bias
  // under a one-channel-per-group norm) are judged against the others' scale.
  const norm = (v: ArrayLike<number>) => Math.hypot(...Array.from(v));
  const refs = [...train.grads.keys()].map((n) => {
    const t = refGrads.tensors.get(`grad.${n}`);
    if (!t) throw new Error(`${gradFile} lacks grad.${n}`);
    return [n, toFloat32(t)] as const;
  });
  const floor = 1e-4 * Math.max(...refs.map(([, r]) => norm(r)));
  let worst = { name: "", err: 0 };
  for (const [n, ref] of refs) {
    const ours = train.grads.get(n)!;
    const err = ours.length === ref.length
      ? norm(ref.map((r, i) => ours[i] - r)) / Math.max(norm(ref), floor)
      : Infinity;
    if (err > worst.err) worst = { name: n, err };
  }
  const lossOk = lossErr <= tol, gradsOk = worst.err <= gradTol;
  ok &&= lossOk && gradsOk;
  say(
    `  training loss: ${train.value.toFixed(6)} vs ${refLoss.toFixed(6)} (rel ${e(lossErr)}) ` +
      (lossOk ? "ok" : "OVER"),
  );
  say(
    `  gradients, ${refs.length} tensors: worst ${e(worst.err)} (${worst.name}), ` +
      `PyTorch f32 vs f64 ${e(Number(refGrads.metadata.f64_grad_rel_max))} ` +
      (gradsOk ? "ok" : `OVER ${gradTol}`),
  );
  vq.dispose();
  await Deno.remove(out);
}
say("");
say(
  ok
    ? "PASS: same indices at every scale; f, f_hat, reconstruction, training loss and gradients " +
      "within tolerance"
    : "FAIL",
);
if (values.report) await Deno.writeTextFile(values.report, lines.join("\n") + "\n");
Deno.exit(ok ? 0 : 1);
