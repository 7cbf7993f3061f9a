// train-tokenizer end to end on a tiny config and a small shapes set: training raises validation
// PSNR, and a run stopped and resumed equals an uninterrupted one step for step.
import { join } from "node:path";
import { main as trainTokenizer } from "../lib/cli/train_tokenizer.ts";
import { VQVAE } from "../lib/tokenizer/vqvae.ts";
import { readSafetensors } from "../lib/io/safetensors.ts";
import { evaluateReconstruction, readImageSet } from "../lib/train/tokenizer_eval.ts";
import { TINY_TOKENIZER, tinyWorld } from "./tokenizer_fixtures.ts";
import { assert, gpuReady } from "./helpers.ts";

type Metric = Record<string, number | string>;
const readMetrics = async (path: string): Promise<Metric[]> =>
  (await Deno.readTextFile(path)).trim().split("\n").map((l) => JSON.parse(l));

// Measured on lavapipe: 8.4 dB before training, 10.0 dB after 40 steps (a 1.6 dB gain). The gain
// is small because channel counts under 32 make every GroupNorm group one channel, which slows
// learning a lot; it still fails when gradients, the optimizer or the schedule break.
const PSNR_GAIN_DB = 1;
const STEPS = 40;

Deno.test(`train-tokenizer: ${STEPS} steps raise validation PSNR by ≥ ${PSNR_GAIN_DB} dB`, async () => {
  await gpuReady;
  const w = await tinyWorld();
  const out = join(w.dir, "tok.safetensors");
  const vq = new VQVAE(TINY_TOKENIZER, 0);
  const val = await readImageSet(w.val, 16, 1000);
  const before = await evaluateReconstruction(vq, val.pixels, val.count);
  vq.dispose();
  await trainTokenizer([
    ...["--data", w.train, "--val", w.val, "--config", w.config, "--out", out],
    ...["--batch", "8", "--steps", String(STEPS), "--warmup", "5", "--lr", "1e-2"],
    ...["--log-every", "20", "--val-every", "0", "--restart-every", "20", "--seed", "0"],
  ]);
  const metrics = await readMetrics(out.replace(".safetensors", ".metrics.jsonl"));
  const after = metrics.filter((m) => m.kind === "val").at(-1)!;
  console.log(`val PSNR ${before.psnr.toFixed(2)} → ${(after.psnr as number).toFixed(2)} dB`);
  assert(
    (after.psnr as number) >= before.psnr + PSNR_GAIN_DB,
    `PSNR ${before.psnr} → ${after.psnr}: less than ${PSNR_GAIN_DB} dB gained`,
  );
  assert(after.step === STEPS, `last validation at step ${after.step}`);
  for (const suffix of [".train-state.safetensors", ".recon.png"]) {
    assert(
      (await Deno.stat(out.replace(".safetensors", suffix))).size > 0,
      `no ${suffix} written`,
    );
  }
});

Deno.test("train-tokenizer --resume continues exactly: same losses and parameters", async () => {
  await gpuReady;
  const w = await tinyWorld(48, 8);
  // Restarts every 2 steps and a shuffled stream, so the state that resume restores matters.
  const common = [
    ...["--data", w.train, "--config", w.config, "--batch", "4", "--steps", "6"],
    ...["--warmup", "2", "--log-every", "1", "--restart-every", "2", "--shuffle-buffer", "20"],
    ...["--checkpoint-every", "0", "--val-every", "0"],
  ];
  const whole = join(w.dir, "whole.safetensors"), split = join(w.dir, "split.safetensors");
  await trainTokenizer([...common, "--out", whole]);
  await trainTokenizer([...common, "--out", split, "--stop-after", "3"]);
  const halfway = await readSafetensors(split);
  assert(halfway.metadata.step === "3", `stopped at step ${halfway.metadata.step}`);
  await trainTokenizer([...common, "--out", split, "--resume"]);
  const losses = async (p: string) =>
    (await readMetrics(p.replace(".safetensors", ".metrics.jsonl")))
      .filter((m) => m.kind === "train")
      .map((m) => `${m.step}:${m.loss}`);
  const [a, b] = [await losses(whole), await losses(split)];
  assert(a.length === 6 && a.join() === b.join(), `losses differ:\n${a}\n${b}`);
  const [pa, pb] = [await readSafetensors(whole), await readSafetensors(split)];
  assert(pb.metadata.step === "6", `resumed run ended at step ${pb.metadata.step}`);
  for (const [name, t] of pa.tensors) {
    const u = pb.tensors.get(name)!;
    assert(t.data.every((x, i) => x === u.data[i]), `${name} differs after resume`);
  }
});
