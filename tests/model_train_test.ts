// vmambar train and generate: a tiny model memorises 8 captions' tokens and generates them back,
// --resume continues exactly, guidance and seeds behave, distillation's loss vanishes against
// itself, and bad input gets one clear line each.
import { tinyTokenData } from "./checkpoint_fixtures.ts";
import { join } from "node:path";
import { batchCaptionIds } from "../lib/data/text.ts";
import { readSafetensors, toFloat32 } from "../lib/io/safetensors.ts";
import { saveCheckpoint } from "../lib/io/checkpoint.ts";
import { generateScales } from "../lib/model/generate.ts";
import { loadModel } from "../lib/model/load.ts";
import {
  DEFAULT_SAMPLING,
  guidanceCfg,
  samplingPicker,
  scaleGuidance,
  scaleTemperature,
} from "../lib/model/sample.ts";
import { SAMPLING_OPTIONS, samplingFlags, samplingText } from "../lib/cli/sampling.ts";
import { UserError } from "../lib/errors.ts";
import { VMambAR } from "../lib/model/vmambar.ts";
import { fittedSteps } from "../lib/train/schedule.ts";
import { sampleTokens } from "../lib/tensor/sample.ts";
import { keep, noGrad, type Tensor, tensor, tidy, tidyAsync } from "../lib/tensor/tensor.ts";
import { loadTokenizer } from "../lib/tokenizer/load.ts";
import { VQVAE } from "../lib/tokenizer/vqvae.ts";
import {
  DEFAULT_MODEL_SETTINGS,
  distillationLoss,
  ModelTrainer,
} from "../lib/train/model_trainer.ts";
import { assert, assertClose, gpuReady, randn, runCli } from "./helpers.ts";
import { randomBatch, tinyModelConfig, tinyQuantizer } from "./model_fixtures.ts";
import { TINY_TOKENIZER } from "./tokenizer_fixtures.ts";

const CAPTIONS = [
  "red circle",
  "blue square",
  "green triangle",
  "two dots",
  "big sun",
  "a cat",
  "small box",
  "night",
];
/** The sampling flags' defaults, as parseCommand gives them. */
const flagDefaults = Object.fromEntries(
  Object.entries(SAMPLING_OPTIONS).map(([k, o]) => [k, o.default]),
);
const TINY_SET = "d=64,n_layers=2,gsa_every=1,heads=2,text_layers=1,text_length=16";

/** A random tiny tokenizer, and token shards of 8 short captions with seeded indices. */
const tinyRun = (name: string) => tinyTokenData(name, CAPTIONS, 7919, 13);

const trainArgs = (r: { tokenizer: string; tokens: string }, out: string, ...more: string[]) => [
  "train",
  "--data",
  r.tokens,
  "--tokenizer",
  r.tokenizer,
  "--set",
  TINY_SET,
  "--batch",
  "8",
  "--caption-dropout",
  "0",
  "--sample-every",
  "0",
  "--val-every",
  "0",
  "--out",
  out,
  ...more,
];

Deno.test("train: a tiny model memorises 8 captions' tokens and greedy generation gives them back", async () => {
  await gpuReady;
  const r = await tinyRun("memorise");
  const out = join(r.dir, "model.safetensors");
  const res = await runCli(
    ...trainArgs(
      r,
      out,
      "--steps",
      "150",
      "--lr",
      "5e-3",
      "--warmup",
      "10",
      "--min-lr-ratio",
      "1",
      "--ema",
      "0",
      "--log-every",
      "10",
      "--val",
      r.tokens,
    ),
  );
  assert(res.code === 0, `train failed: ${res.stderr}`);
  const lines = (await Deno.readTextFile(join(r.dir, "model.metrics.jsonl"))).trim().split("\n")
    .map((l) => JSON.parse(l));
  const last = lines.filter((l) => l.kind === "train").at(-1);
  assert(last.loss < 0.1, `final loss ${last.loss} ≥ 0.1`);
  assert(last.accuracy.every((a: number) => a === 1), `token accuracy ${last.accuracy}`);
  const val = lines.filter((l) => l.kind === "val");
  assert(val.length === 1 && val[0].loss < 0.1, `validation lines ${JSON.stringify(val)}`);
  assert(await exists(join(r.dir, "model.samples.png")), "no sample grid");
  const { model } = await loadModel(out);
  const tok = await loadTokenizer(r.tokenizer);
  const got = await tidyAsync(async () => {
    const g = generateScales(
      model,
      tok.vq.quantize,
      batchCaptionIds(CAPTIONS, 16),
      0,
      (k, cond) => sampleTokens(cond, null, { temperature: 0, seed: 0, stream: k }),
    );
    const perScale = await Promise.all(g.indices.map((t) => t.toArray()));
    // Back to [B, L] in scale order.
    const flat: number[] = [];
    for (let b = 0; b < CAPTIONS.length; b++) {
      TINY_TOKENIZER.scales.forEach((pn, k) =>
        flat.push(...perScale[k].slice(b * pn * pn, (b + 1) * pn * pn))
      );
    }
    return flat;
  });
  const wrong = got.filter((v, i) => v !== r.indices[i]).length;
  assert(wrong === 0, `${wrong} of ${got.length} generated tokens differ from the training tokens`);
  model.dispose();
  tok.vq.dispose();
});

Deno.test("train: --resume after a stop gives the same weights as an uninterrupted run", async () => {
  await gpuReady;
  const r = await tinyRun("resume");
  const common = [
    "--steps",
    "6",
    "--lr",
    "3e-3",
    "--warmup",
    "2",
    "--log-every",
    "2",
    "--checkpoint-every",
    "0",
  ];
  common.push("--set", "d=32,n_layers=2,gsa_every=1,heads=2,text_layers=1,text_length=16");
  const a = join(r.dir, "a.safetensors"), b = join(r.dir, "b.safetensors");
  const full = await runCli(...trainArgs(r, a, ...common));
  assert(full.code === 0, full.stderr);
  const first = await runCli(...trainArgs(r, b, ...common, "--stop-after", "3"));
  assert(
    first.code === 0 && /--resume/.test(first.stdout),
    `stop: ${first.stdout} ${first.stderr}`,
  );
  const again = await runCli(...trainArgs(r, b, ...common, "--resume"));
  assert(again.code === 0, again.stderr);
  const [x, y] = await Promise.all(
    [a, b].map((p) => readSafetensors(p.replace(/\.safetensors$/, ".train-state.safetensors"))),
  );
  for (const [name, t] of x.tensors) {
    if (!name.startsWith("model.") && !name.startsWith("ema.")) continue;
    const u = y.tensors.get(name)!;
    assert(t.data.every((v, i) => v === u.data[i]), `${name} differs after resume`);
  }
  assert(x.metadata.step === "6" && y.metadata.step === "6", "both runs reach step 6");
  // The resumed run refuses other data, and --force with --resume.
  const other = await runCli(...trainArgs({ ...r, tokens: r.dir }, b, ...common, "--resume"));
  assert(
    other.code === 1 && other.stderr.trim().split("\n").length === 1,
    `other data: ${other.stderr}`,
  );
  const both = await runCli(...trainArgs(r, b, ...common, "--resume", "--force"));
  assert(both.code === 1 && /contradict/.test(both.stderr), both.stderr);

  // --init starts a new run from a's weights: at a vanishing learning rate they stay a's.
  const c = join(r.dir, "c.safetensors");
  const init = (...more: string[]) =>
    runCli(
      "train",
      "--data",
      r.tokens,
      "--tokenizer",
      r.tokenizer,
      "--init",
      a,
      "--batch",
      "8",
      "--sample-every",
      "0",
      "--val-every",
      "0",
      "--out",
      c,
      ...more,
    );
  const tuned = await init("--steps", "1", "--warmup", "0", "--lr", "1e-12");
  assert(tuned.code === 0, tuned.stderr);
  const [from, to] = await Promise.all([a, c].map((p) => readSafetensors(p)));
  assert(to.metadata.init === a, `init recorded: ${to.metadata.init}`);
  for (const [name, t] of from.tensors) {
    const x = toFloat32(t), y = toFloat32(to.tensors.get(name)!);
    const worst = x.reduce((m, v, i) => Math.max(m, Math.abs(v - y[i])), 0);
    assert(worst < 1e-6, `${name}: not a's weights (off by ${worst})`);
  }
  // --set KEY=N under --init (one step at lr 1e-12): a's weights all kept, the config changed.
  const setInit = async (set: string, key: string, value: number) => {
    const run = await init(
      "--steps",
      "1",
      "--warmup",
      "0",
      "--lr",
      "1e-12",
      "--set",
      set,
      "--force",
    );
    assert(run.code === 0, run.stderr);
    const out = await readSafetensors(c);
    assert(JSON.parse(out.metadata.config)[key] === value, out.metadata.config);
    for (const [name, t] of from.tensors) {
      const x = toFloat32(t), y = toFloat32(out.tensors.get(name)!);
      const worst = x.reduce((m, v, i) => Math.max(m, Math.abs(v - y[i])), 0);
      assert(worst < 1e-6, `${set}: ${name} off by ${worst}`);
    }
    return out;
  };
  // --set ar_scales=N goes with --init: the same weights, and prev_embed at zero.
  const arModel = await setInit("ar_scales=1", "ar_scales", 1);
  const prev = arModel.tensors.get("prev_embed.weight");
  assert(prev && toFloat32(prev).every((v) => Math.abs(v) < 1e-9), "prev_embed starts at zero");
  // --set n_layers=N grows a hybrid: the old weights, and each new block's out_proj at zero.
  const deepModel = await setInit("n_layers=3", "n_layers", 3);
  for (const name of ["blocks.2.mamba.out_proj.weight", "gsa_out.1.weight"]) {
    const t = deepModel.tensors.get(name);
    assert(t && toFloat32(t).every((v) => Math.abs(v) < 1e-9), `${name} starts at zero`);
  }
  for (
    const more of [
      ["--resume"],
      ["--set", "n_layers=1", "--force"],
      ["--set", "d=64"],
      ["--set", "ar_scales=1,d=64"],
      ["--set", "ar_scales=9", "--force"],
      ["--preset", "cpu32"],
    ]
  ) {
    const bad = await init(...more);
    assert(bad.code === 1 && bad.stderr.trim().split("\n").length === 1, `${more}: ${bad.stderr}`);
  }
});

Deno.test("train: distils from a teacher; a loss gone NaN stops the run and keeps the last checkpoint", async () => {
  await gpuReady;
  const r = await tinyRun("teacher");
  const small = ["--set", "d=32,n_layers=2,gsa_every=1,heads=2,text_layers=1,text_length=16"];
  const teacher = join(r.dir, "teacher.safetensors");
  const t = await runCli(
    ...trainArgs(
      r,
      teacher,
      "--steps",
      "2",
      ...small,
      "--set",
      "d=32,n_layers=2,heads=2,text_layers=1,text_length=16,arch=transformer",
    ),
  );
  assert(t.code === 0, t.stderr);
  const student = join(r.dir, "student.safetensors");
  const s = await runCli(
    ...trainArgs(
      r,
      student,
      "--steps",
      "2",
      "--log-every",
      "1",
      ...small,
      "--teacher",
      teacher,
      "--kd-alpha",
      "0.5",
      "--kd-temp",
      "2",
    ),
  );
  assert(s.code === 0, s.stderr);
  const lines = (await Deno.readTextFile(join(r.dir, "student.metrics.jsonl"))).trim().split("\n")
    .map((l) => JSON.parse(l));
  assert(lines.every((l) => l.kind !== "train" || l.kd > 0), `kd terms ${lines.map((l) => l.kd)}`);
  // A learning rate this large drives the weights to infinity within a few steps.
  const nan = join(r.dir, "nan.safetensors");
  const bad = await runCli(
    ...trainArgs(
      r,
      nan,
      "--steps",
      "40",
      "--lr",
      "1e30",
      "--warmup",
      "0",
      "--grad-clip",
      "0",
      "--log-every",
      "1",
      "--checkpoint-every",
      "1",
      ...small,
    ),
  );
  assert(
    bad.code === 1 && /the loss is (NaN|Infinity|-Infinity)/.test(bad.stderr),
    `NaN run: ${bad.stderr}`,
  );
  assert(
    bad.stderr.trim().split("\n").at(-1)!.includes("keeps the last good checkpoint"),
    bad.stderr,
  );
  const saved = await readSafetensors(nan.replace(/\.safetensors$/, ".train-state.safetensors"));
  const weights = [...saved.tensors].filter(([n]) => n.startsWith("model."));
  assert(
    weights.every(([, w]) => {
      const f = new Float32Array(w.data.slice().buffer);
      return f.every(Number.isFinite);
    }),
    "the kept checkpoint holds non-finite weights",
  );
});

Deno.test("generate: guidance's conditional half equals cfg 0; same seed, same tokens", async () => {
  await gpuReady;
  const c = tinyModelConfig();
  const model = new VMambAR(c, 4);
  const q = tinyQuantizer();
  const { textIds } = randomBatch(c, 3, 9);
  const run = (cfg: number, seed: number) =>
    tidyAsync(async () => {
      const conds: Tensor[] = [];
      const g = generateScales(model, q, textIds, cfg, (k, cond, uncond, t) => {
        conds.push(keep(noGrad(() => cond.reshape([-1]))));
        return sampleTokens(cond, uncond, { guidance: t, seed, stream: k });
      });
      const idx = (await Promise.all(g.indices.map((t) => t.toArray()))).flat();
      const logits = (await Promise.all(conds.map((t) => t.toArray()))).flat();
      conds.forEach((t) => t.dispose());
      return { idx, logits };
    });
  const [a, b, c0, d] = [await run(3, 7), await run(3, 7), await run(0, 7), await run(3, 8)];
  assert(a.idx.join() === b.idx.join(), "same seed, other tokens");
  assert(a.idx.join() !== d.idx.join(), "another seed gave the same tokens");
  // With cfg 0 and the same tokens fed back, scale 1's conditional logits are the guided run's.
  const first = c.vocab * 3;
  assertClose(
    c0.logits.slice(0, first),
    a.logits.slice(0, first),
    1e-5,
    "scale 1 logits, cfg 3 vs 0",
  );
  model.dispose();
  q.dispose();
});

Deno.test("sampling: --temperature T1,T2,… sets each scale's temperature, the last repeating", async () => {
  // The flag: one value is every scale's; a list is per scale; bad entries are one line each.
  const flags = (t: string) => samplingFlags({ ...flagDefaults, temperature: t }, 5);
  assert(flags("0.7").temperatureByScale === undefined && flags("0.7").temperature === 0.7, "one");
  const list = flags("1, 0.5");
  assert(list.temperatureByScale?.join() === "1,0.5" && list.temperature === 1, "list");
  assert([0, 1, 2, 5].map((k) => scaleTemperature(list, k)).join() === "1,0.5,0.5,0.5", "repeat");
  assert(samplingText(list).includes("temperature 1/0.5"), samplingText(list));
  for (const bad of ["1,,2", "-1", "x", "0.5,-2", ""]) {
    let msg = "";
    try {
      flags(bad);
    } catch (e) {
      msg = e instanceof UserError ? e.message : `not a UserError: ${e}`;
    }
    assert(/^--temperature/.test(msg), `${JSON.stringify(bad)}: ${msg}`);
  }
  // The picker: greedy at the first scale, hot after it, against greedy everywhere. The first
  // scale's tokens agree and the later ones don't.
  await gpuReady;
  const c = tinyModelConfig();
  const model = new VMambAR(c, 4);
  const q = tinyQuantizer();
  const { textIds } = randomBatch(c, 4, 9);
  const run = (temperature: number, temperatureByScale?: number[]) =>
    tidyAsync(async () => {
      const o = { ...DEFAULT_SAMPLING, cfg: 0, seed: 3, temperature, temperatureByScale };
      const g = generateScales(model, q, textIds, 0, samplingPicker(o));
      return await Promise.all(g.indices.map((t) => t.toArray()));
    });
  const greedy = await run(0), mixed = await run(0, [0, 100]), same = await run(0, [0, 0]);
  assert(mixed[0].join() === greedy[0].join(), "scale 1 is greedy in both");
  assert(mixed.slice(1).flat().join() !== greedy.slice(1).flat().join(), "later scales not hot");
  assert(same.flat().join() === greedy.flat().join(), "0,0 is not greedy everywhere");
  model.dispose();
  q.dispose();
});

Deno.test("sampling: --cfg G1,G2,… sets each scale's guidance; --sequential is a count, not with --candidates", () => {
  const flags = (over: Record<string, string>) => samplingFlags({ ...flagDefaults, ...over }, 5);
  const one = flags({ cfg: "1.5" });
  assert(one.guidanceByScale === undefined && one.cfg === 1.5 && guidanceCfg(one) === 1.5, "one");
  // The ramp: t = cfg·k/(K−1), passed in by generation; a list replaces it, the last repeating.
  assert(scaleGuidance(one, 3, 0.9) === 0.9, "a single cfg keeps the ramp's t");
  const list = flags({ cfg: "0, 2,1" });
  assert(list.guidanceByScale?.join() === "0,2,1" && guidanceCfg(list) === 2, "list");
  assert([0, 1, 2, 5].map((k) => scaleGuidance(list, k, 0.3)).join() === "0,2,1,1", "repeat");
  assert(samplingText(list).startsWith("guidance 0/2/1"), samplingText(list));
  assert(guidanceCfg(flags({ cfg: "0,0" })) === 0, "all zero: unguided");
  // Down to −1 (towards the null caption); a list of negatives and zeros is still guided.
  assert(guidanceCfg(flags({ cfg: "-0.5,0" })) === -0.5, "negative: guided");
  assert(guidanceCfg(flags({ cfg: "-1,2" })) === 2 && flags({ cfg: "-1" }).cfg === -1, "−1");
  const seq = flags({ sequential: "2" });
  assert(seq.sequential === 2 && samplingText(seq).includes("scales 2–3 token by token"), "seq");
  assert(flags({}).sequential === undefined, "off by default");
  for (
    const [bad, want] of [
      [{ cfg: "1,-1.5" }, /^--cfg/],
      [{ cfg: "" }, /^--cfg/],
      [{ sequential: "-1" }, /sequential/],
      [{ sequential: "1.5" }, /sequential/],
      [{ sequential: "1", candidates: "4" }, /do not go together/],
    ] as const
  ) {
    let msg = "";
    try {
      flags(bad as Record<string, string>);
    } catch (e) {
      msg = e instanceof UserError ? e.message : `not a UserError: ${e}`;
    }
    assert(want.test(msg), `${JSON.stringify(bad)}: ${msg}`);
  }
});

Deno.test("distillation: KL is 0 against itself, positive and as a float64 reference otherwise", async () => {
  await gpuReady;
  const [N, V, tau] = [5, 7, 2];
  const s = randn(N * V), t = randn(N * V);
  const [self, other] = await tidyAsync(async () => [
    await distillationLoss(tensor(s, [N, V]), tensor(s, [N, V]), tau).item(),
    await distillationLoss(tensor(t, [N, V]), tensor(s, [N, V]), tau).item(),
  ]);
  assert(Math.abs(self) < 1e-6, `KL(p‖p) = ${self}`);
  let want = 0;
  for (let r = 0; r < N; r++) {
    const soft = (x: Float64Array) => {
      const row = Array.from(x.slice(r * V, (r + 1) * V), (v) => v / tau);
      const m = Math.max(...row), z = row.reduce((a, v) => a + Math.exp(v - m), 0);
      return row.map((v) => Math.exp(v - m) / z);
    };
    const p = soft(t), q = soft(s);
    want += p.reduce((a, pi, i) => a + pi * Math.log(pi / q[i]), 0);
  }
  want *= (tau * tau) / N;
  assert(
    Math.abs(other - want) < 1e-5 * Math.max(1, want) && other > 0,
    `KL ${other}, want ${want}`,
  );
});

Deno.test("train and generate: bad input is one clear line, nothing written", async () => {
  await gpuReady;
  const r = await tinyRun("bad");
  const out = join(r.dir, "m.safetensors");
  const oneLine = (res: { code: number; stderr: string }, re: RegExp, what: string) => {
    assert(res.code !== 0, `${what}: exit 0`);
    const lines = res.stderr.trim().split("\n");
    assert(lines.length === 1 && re.test(lines[0]), `${what}: ${res.stderr}`);
  };
  oneLine(
    await runCli(...trainArgs(r, out, "--preset", "huge")),
    /unknown --preset huge/,
    "preset",
  );
  oneLine(
    await runCli("train", "--data", r.tokens, "--set", "wings=2"),
    /--set wings: unknown field/,
    "set",
  );
  oneLine(
    await runCli(...trainArgs(r, out, "--fit")),
    /--fit needs --max-minutes/,
    "fit without a time limit",
  );
  // Shards made by another tokenizer.
  const other = join(r.dir, "other.safetensors");
  const vq = new VQVAE(TINY_TOKENIZER, 2);
  await saveCheckpoint(other, vq.namedParameters(), "tokenizer", TINY_TOKENIZER);
  vq.dispose();
  oneLine(
    await runCli(...trainArgs({ ...r, tokenizer: other }, out)),
    /another tokenizer/,
    "tokenizer",
  );
  assert(!(await exists(out)), "a refused run wrote its --out");
  // generate: empty prompt, a missing and a truncated model.
  oneLine(await runCli("generate", ""), /empty/, "empty prompt");
  oneLine(
    await runCli("generate", "x", "--model", join(r.dir, "none.safetensors")),
    /no such file/,
    "missing",
  );
  const cut = join(r.dir, "cut.safetensors");
  const good = join(r.dir, "good.safetensors");
  const model = new VMambAR(
    tinyModelConfig({ scales: TINY_TOKENIZER.scales, vocab: 64, cvae: 8, text_length: 16 }),
  );
  await saveCheckpoint(good, model.namedParameters(), "model", model.cfg);
  model.dispose();
  const bytes = await Deno.readFile(good);
  await Deno.writeFile(cut, bytes.subarray(0, bytes.length - 100));
  const outDir = join(r.dir, "gen");
  oneLine(
    await runCli("generate", "x", "--model", cut, "--tokenizer", r.tokenizer, "--out", outDir),
    /truncated|past the data/,
    "truncated model",
  );
  // A prompt over T bytes is cut with a warning, and the image is still written.
  const long = await runCli(
    "generate",
    "a".repeat(40),
    "--model",
    good,
    "--tokenizer",
    r.tokenizer,
    "--out",
    join(outDir, "x.png"),
  );
  assert(long.code === 0 && /warning: prompt 1 has 40 bytes/.test(long.stderr), long.stderr);
  assert(await exists(join(outDir, "x.png")), "no image written");
});

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test("models/: the default tokenizer and model load, fit together and stay within 16 MB", async () => {
  await gpuReady;
  const { DEFAULT_MODEL, DEFAULT_TOKENIZER } = await import("../lib/cli/defaults.ts");
  const { checkTokenGrid } = await import("../lib/model/load.ts");
  const bytes = (await Deno.stat(DEFAULT_MODEL)).size + (await Deno.stat(DEFAULT_TOKENIZER)).size;
  assert(bytes <= 16e6, `models/ holds ${bytes} bytes, over DESIGN §5's 16 MB`);
  const { model, cfg, metadata } = await loadModel(DEFAULT_MODEL);
  const tok = await loadTokenizer(DEFAULT_TOKENIZER);
  checkTokenGrid(cfg, tok.cfg, DEFAULT_MODEL);
  assert(metadata.tokenizer_sha256 === tok.sha256, "the default model names another tokenizer");
  const params = model.parameterCount();
  assert(params > 1e6, `${params} parameters`);
  model.dispose();
  tok.vq.dispose();
});

Deno.test("train: micro-batches accumulate to the full batch's loss and gradient", async () => {
  await gpuReady;
  const c = tinyModelConfig();
  const q = tinyQuantizer();
  const { textIds, indices } = randomBatch(c, 4, 21);
  const L = indices.length / 4, T = c.text_length;
  const part = (from: number, n: number) => ({
    size: n,
    textIds: textIds.slice(from * T, (from + n) * T),
    indices: indices.slice(from * L, (from + n) * L),
    position: { epoch: 0, offset: 0 },
  });
  const settings = { ...DEFAULT_MODEL_SETTINGS, batchSize: 4, microBatch: 4, captionDropout: 0 };
  const stats = [];
  for (const [micro, parts] of [[4, [part(0, 4)]], [2, [part(0, 2), part(2, 2)]]] as const) {
    const trainer = new ModelTrainer(c, { ...settings, microBatch: micro }, q);
    trainer.trainStep([...parts]);
    stats.push(await trainer.readStats());
    trainer.dispose();
  }
  const [full, acc] = stats;
  assertClose([acc.loss, acc.gradNorm], [full.loss, full.gradNorm], 1e-5, "accumulated vs full");
  q.dispose();
});

Deno.test("train: SIGINT finishes the step, saves, says how to resume, and --resume completes", async () => {
  await gpuReady;
  const r = await tinyRun("sigint");
  const out = join(r.dir, "m.safetensors");
  const args = trainArgs(r, out, "--steps", "12", "--log-every", "1", "--checkpoint-every", "0");
  args.push("--set", "d=32,n_layers=2,gsa_every=1,heads=2,text_layers=1,text_length=16");
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts", ...args],
    cwd: new URL("..", import.meta.url).pathname,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // Wait for the first logged step (stderr, logged steps are lines when not a terminal).
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let err = "";
  while (!/step \d+\/12/.test(err)) {
    const { value, done } = await reader.read();
    if (done) break;
    err += value;
  }
  child.kill("SIGINT");
  const [status, stdout] = await Promise.all([
    child.status,
    new Response(child.stdout).text(),
    (async () => {
      for (let x = await reader.read(); !x.done; x = await reader.read()) err += x.value;
    })(),
  ]);
  assert(status.code === 1 && /stopped by SIGINT at step \d+ of 12 and saved/.test(err), err);
  assert(/wrote /.test(stdout), `no checkpoint reported: ${stdout}`);
  const saved = await readSafetensors(out.replace(/\.safetensors$/, ".train-state.safetensors"));
  const step = Number(saved.metadata.step);
  assert(step >= 1 && step < 12, `saved at step ${step}`);
  const rest = await runCli(...args, "--resume");
  assert(rest.code === 0 && /trained to step 12/.test(rest.stdout), rest.stderr);
});

Deno.test("fittedSteps: the schedule ends within the time limit, keeping a reserve", () => {
  const s = { steps: 1000, warmup: 20 };
  // 0.5 s a step from step 10 (at 5 s) to 40 (at 20 s); 1 minute: 57 − 20 − 30 = 7 s → 14 steps.
  const fit = fittedSteps(s, 40, { step: 10, time: 5 }, 20, 1);
  assert(fit === 54, `1 minute: ${fit}`);
  assert(fittedSteps(s, 40, { step: 10, time: 5 }, 20, 60) === 1000, "an hour: unchanged");
  assert(fittedSteps(s, 40, { step: 10, time: 5 }, 20, 0.5) === 21, "too little time: warmup + 1");
});

Deno.test("scaleWeightedLoss: Σ_k c_k·CE_k in float64; equal weights give the plain loss", async () => {
  await gpuReady;
  const scales = [1, 2, 3], B = 3, V = 11, L = 14;
  const logits = randn(B * L * V);
  const indices = Int32Array.from({ length: B * L }, (_, i) => (i * 7 + 3) % V);
  // float64: each token's −log softmax, averaged per scale, then weighted by w_k·n_k.
  const nll = (r: number) => {
    const row = Array.from(logits.slice(r * V, (r + 1) * V));
    const m = Math.max(...row);
    return m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0)) - row[indices[r]];
  };
  const ref = (w: number[]) => {
    const n = scales.map((p) => p * p);
    const wk = scales.map((_, k) => w[Math.min(k, w.length - 1)]);
    const total = n.reduce((a, nk, k) => a + wk[k] * nk, 0);
    let loss = 0, start = 0;
    n.forEach((nk, k) => {
      let s = 0;
      for (let b = 0; b < B; b++) for (let i = 0; i < nk; i++) s += nll(b * L + start + i);
      loss += (wk[k] * nk / total) * (s / (B * nk));
      start += nk;
    });
    return loss;
  };
  for (const w of [[1], [8, 4, 1], [0, 1], [2, 0, 0]]) {
    const got = await tidyAsync(async () =>
      await VMambAR.scaleWeightedLoss(tensor(logits, [B, L, V]), indices, scales, w).item()
    );
    const want = ref(w);
    assert(Math.abs(got - want) < 1e-5 * Math.max(1, want), `weights [${w}]: ${got}, want ${want}`);
  }
  const plain = await tidyAsync(async () => [
    await VMambAR.loss(tensor(logits, [B, L, V]), indices).item(),
    await VMambAR.scaleWeightedLoss(tensor(logits, [B, L, V]), indices, scales, [3]).item(),
  ]);
  assert(Math.abs(plain[0] - plain[1]) < 1e-6, `equal weights ${plain[1]}, plain ${plain[0]}`);
  assert(Math.abs(plain[0] - ref([8, 4, 1])) > 1e-3, "the weights change the loss");
  for (const bad of [[0], [-1, 1], [1, Number.NaN]]) {
    let threw = false;
    tidy(() => {
      try {
        VMambAR.scaleWeightedLoss(tensor(logits, [B, L, V]), indices, scales, bad);
      } catch {
        threw = true;
      }
    });
    assert(threw, `weights [${bad}] accepted`);
  }
});

Deno.test("train --scale-weights: the weights reach the trainer's loss; bad lists are one line", async () => {
  await gpuReady;
  const r = await tinyRun("scale-weights");
  const out = join(r.dir, "m.safetensors");
  const bad = await runCli(...trainArgs(r, out, "--scale-weights", "1,x"));
  assert(bad.code !== 0 && /--scale-weights must be non-negative/.test(bad.stderr), bad.stderr);
  const many = await runCli(...trainArgs(r, out, "--scale-weights", "1,1,1,1,1,1,1,1,1,1,1,1"));
  assert(many.code !== 0 && /the model has \d+ scales/.test(many.stderr), many.stderr);
  for (const f of ["m.safetensors", "m.metrics.jsonl", "m.train-state.safetensors"]) {
    assert(!(await exists(join(r.dir, f))), `a refused run wrote ${f}`);
  }
  // The first step's trained loss is the weighted one (here the first scale alone); `ce` is not.
  const firstStep = async (...more: string[]) => {
    const res = await runCli(...trainArgs(r, out, "--steps", "1", "--log-every", "1", ...more));
    assert(res.code === 0, res.stderr);
    const line = (await Deno.readTextFile(join(r.dir, "m.metrics.jsonl"))).split("\n")
      .map((l) => l && JSON.parse(l)).find((m) => m && m.kind === "train");
    return line as { loss: number; ce: number };
  };
  const plain = await firstStep("--force");
  assert(Math.abs(plain.loss - plain.ce) < 1e-6, `unweighted: loss ${plain.loss}, ce ${plain.ce}`);
  const weighted = await firstStep("--force", "--scale-weights", "1,0");
  assert(Math.abs(weighted.ce - plain.ce) < 1e-5, `same weights, same ce: ${weighted.ce}`);
  assert(Math.abs(weighted.loss - weighted.ce) > 1e-3, `weighted loss ${weighted.loss} = ce`);
  const state = await readSafetensors(join(r.dir, "m.train-state.safetensors"));
  const settings = JSON.parse(state.metadata.settings);
  assert(settings.scaleWeights?.join() === "1,0", `saved settings ${state.metadata.settings}`);
});
