// VAR interop (`vmambar import-tokenizer`): a state dict under VAR's names, written from one of our
// own VQVAEs, imports and round-trips; missing tensors, wrong shapes and bad configs are one line;
// φ is picked as VAR's PhiPartiallyShared picks it. The PyTorch parity check is
// tools/var_parity.ts (accelerator machine; figures in tools/BENCHMARKS.md).
import { loadTokenizer } from "../lib/tokenizer/load.ts";
import { phiIndex } from "../lib/tokenizer/quantizer.ts";
import { fromVarStateDict, tokenizerConfigFromJson } from "../lib/tokenizer/var_import.ts";
import type { TokenizerConfig } from "../lib/tokenizer/config.ts";
import { VQVAE } from "../lib/tokenizer/vqvae.ts";
import { tensorsToHost } from "../lib/io/checkpoint.ts";
import { type StTensor, stTensor, writeSafetensors } from "../lib/io/safetensors.ts";
import { floatToHalf, halfToFloat, noGrad, tensor, tidyAsync } from "../lib/tensor/tensor.ts";
import { assert, assertThrows, f32, gpuReady, randn, runCli } from "./helpers.ts";

/** A small tokenizer with attention in the mid block and at the deepest level, in VAR's keys. */
const varConfig = {
  image_size: 16,
  ch: 8,
  ch_mult: [1, 2, 2],
  num_res_blocks: 1,
  using_sa: true,
  using_mid_sa: true,
  z_channels: 4,
  vocab_size: 24,
  v_patch_nums: [1, 2, 3, 4],
  share_quant_resi: 4,
  using_znorm: false,
  dropout: 0.0,
};
const cfg: TokenizerConfig = tokenizerConfigFromJson(varConfig, "test").cfg;

/** Our VQVAE's parameters as VAR's state dict: same names, plus VAR's EMA usage buffer. */
async function varStateDict(vq: VQVAE, half = false): Promise<Map<string, StTensor>> {
  const sd = await tensorsToHost(vq.namedParameters());
  if (half) {
    for (const [name, t] of sd) {
      const f = new Float32Array(t.data.slice().buffer);
      sd.set(name, stTensor(Uint16Array.from(f, floatToHalf), t.shape, "F16"));
    }
  }
  sd.set("quantize.ema_vocab_hit_SV", stTensor(new Float32Array(4 * 24), [4, 24]));
  return sd;
}

async function writeCase(dir: string, sd: Map<string, StTensor>, config: unknown = varConfig) {
  await writeSafetensors(`${dir}/var.safetensors`, sd);
  await Deno.writeTextFile(`${dir}/var.json`, JSON.stringify(config));
  return [`${dir}/var.safetensors`, "--config", `${dir}/var.json`, "--out", `${dir}/t.safetensors`];
}

async function encodeDecode(vq: VQVAE, x: Float64Array): Promise<number[]> {
  return await tidyAsync(async () => {
    const f = noGrad(() => vq.encodeMap(tensor(x, [2, 3, 16, 16])));
    const idx = vq.quantize.encode(f);
    return await noGrad(() => vq.decodeMap(vq.quantize.decode(idx, 4))).toArray();
  });
}

function oneLine(r: { code: number; stderr: string }, pattern: RegExp, what: string) {
  assert(r.code === 1, `${what}: exit ${r.code}: ${r.stderr}`);
  const lines = r.stderr.trim().split("\n");
  assert(lines.length === 1 && !r.stderr.includes("    at "), `${what}: ${r.stderr}`);
  assert(pattern.test(lines[0]), `${what}: ${lines[0]}`);
}

Deno.test("import-tokenizer: our VQVAE under VAR's names imports and round-trips", async () => {
  await gpuReady;
  const dir = await Deno.makeTempDir();
  const vq = new VQVAE(cfg, 7);
  // Beside the state dict, what a parity file holds: expected indices (I32) and inputs (F32).
  const sd = await varStateDict(vq);
  sd.set("expected.idx.0", stTensor(new Int32Array(2 * 16), [2, 4, 4]));
  sd.set("images", stTensor(new Float32Array(2 * 3 * 16 * 16), [2, 3, 16, 16]));
  const args = await writeCase(dir, sd);
  const r = await runCli("import-tokenizer", ...args);
  assert(r.code === 0, `exit ${r.code}: ${r.stderr}`);
  assert(/skipped quantize\.ema_vocab_hit_SV \[4, 24\]/.test(r.stdout), r.stdout);
  assert(/skipped expected\.idx\.0 \[2, 4, 4\] \(I32, not a floating/.test(r.stdout), r.stdout);
  assert(/skipped images \[2, 3, 16, 16\] \(not a VQVAE parameter\)/.test(r.stdout), r.stdout);
  const tok = await loadTokenizer(`${dir}/t.safetensors`);
  assert(tok.metadata.format === "vmambar" && tok.metadata.kind === "tokenizer", "metadata");
  assert(JSON.stringify(tok.cfg) === JSON.stringify(cfg), `config ${JSON.stringify(tok.cfg)}`);
  const want = new Map(vq.namedParameters());
  for (const [name, p] of tok.vq.namedParameters()) {
    const a = await p.toArray(), b = await want.get(name)!.toArray();
    assert(a.every((v, i) => v === b[i]), `${name} changed on import`);
  }
  const x = f32(randn(2 * 3 * 16 * 16).map(Math.tanh));
  const [got, ref] = [await encodeDecode(tok.vq, x), await encodeDecode(vq, x)];
  assert(got.every((v, i) => v === ref[i]), "imported tokenizer decodes differently");
  tok.vq.dispose();
  vq.dispose();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("import-tokenizer: F16 tensors are stored as f32", async () => {
  await gpuReady;
  const dir = await Deno.makeTempDir();
  const vq = new VQVAE(cfg, 8);
  const args = await writeCase(dir, await varStateDict(vq, true));
  const r = await runCli("import-tokenizer", ...args);
  assert(r.code === 0 && /converted to f32: \d+ F16/.test(r.stdout), `${r.stdout}${r.stderr}`);
  const tok = await loadTokenizer(`${dir}/t.safetensors`);
  const w = await tok.vq.quantize.codebook.toArray();
  const ref = await vq.quantize.codebook.toArray();
  assert(
    w.every((v, i) => v === halfToFloat(floatToHalf(ref[i]))),
    "codebook not the f16-rounded values",
  );
  tok.vq.dispose();
  vq.dispose();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("import-tokenizer refuses a missing tensor, a wrong shape and a bad config in one line", async () => {
  await gpuReady;
  const dir = await Deno.makeTempDir();
  const vq = new VQVAE(cfg, 9);
  const sd = await varStateDict(vq);
  vq.dispose();

  const missing = new Map(sd);
  missing.delete("encoder.mid.attn_1.qkv.weight");
  oneLine(
    await runCli("import-tokenizer", ...await writeCase(dir, missing)),
    /missing encoder\.mid\.attn_1\.qkv\.weight/,
    "missing tensor",
  );

  const wrong = new Map(sd);
  wrong.set("quantize.embedding.weight", stTensor(new Float32Array(25 * 4), [25, 4]));
  oneLine(
    await runCli("import-tokenizer", ...await writeCase(dir, wrong)),
    /quantize\.embedding\.weight is \[25,4\], the model needs \[24,4\]/,
    "wrong shape",
  );

  // Names that differ from the config's model say which setting explains them.
  const mismatch = async (
    file: Map<string, StTensor>,
    config: unknown,
    hint: RegExp,
    what: string,
  ) => oneLine(await runCli("import-tokenizer", ...await writeCase(dir, file, config)), hint, what);
  await mismatch(
    sd,
    { ...varConfig, using_mid_sa: false },
    /unexpected encoder\.mid\.attn_1.*attention in the mid block: set using_mid_sa to true/,
    "config without the file's mid attention",
  );
  const noDeepest = new Map(
    [...sd].filter(([n]) => !/^(encoder\.down|decoder\.up)\.\d+\.attn\./.test(n)),
  );
  await mismatch(
    noDeepest,
    varConfig,
    /missing encoder\.down\.2\.attn\.0\.norm\.weight.*no attention at the deepest level: set using_sa to false/,
    "file without the config's deepest attention",
  );
  await mismatch(
    sd,
    { ...varConfig, ch_mult: [1, 2], image_size: 8 },
    /the file has 3 encoder levels, ch_mult \[1,2\] gives 2: ch_mult needs 3 entries\)$/,
    "fewer levels",
  );
  await mismatch(
    sd,
    { ...varConfig, num_res_blocks: 2 },
    /missing encoder\.down\.0\.block\.1\..*set num_res_blocks to 1/,
    "more res blocks",
  );
  await mismatch(
    sd,
    { ...varConfig, share_quant_resi: 2 },
    /unexpected quantize\.quant_resi\.qresi_ls\.2\..*4 φ convs: set share_quant_resi to 4/,
    "φ count",
  );

  const badScales = { ...varConfig, v_patch_nums: [1, 2, 3] };
  oneLine(
    await runCli("import-tokenizer", ...await writeCase(dir, sd, badScales)),
    /last scale must be the encoder map's side 4, got 3/,
    "bad config",
  );
  oneLine(await runCli("import-tokenizer", `${dir}/var.safetensors`), /--config/, "no --config");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("import-tokenizer --help", async () => {
  const r = await runCli("import-tokenizer", "--help");
  assert(r.code === 0, `exit ${r.code}: ${r.stderr}`);
  const help = r.stdout;
  assert(help.includes("usage: vmambar import-tokenizer") && help.includes("v_patch_nums"), help);
});

Deno.test("VAR config keys: aliases, defaults and refusals", () => {
  const ours = tokenizerConfigFromJson(
    { ch: 8, chMult: [1, 2, 2], cvae: 4, vocab: 24, scales: [1, 2, 3, 4] },
    "ours.json",
  ).cfg;
  assert(ours.image === 16, `image from the scales: ${ours.image}`);
  assert(ours.numResBlocks === 2 && ours.midAttention && ours.deepestAttention, "VAR defaults");
  assert(ours.normGroups === undefined, `normGroups absent: VAR's 32, got ${ours.normGroups}`);
  const grouped = tokenizerConfigFromJson({ ...varConfig, norm_groups: 4 }, "g.json").cfg;
  assert(grouped.normGroups === 4, `norm_groups: ${grouped.normGroups}`);
  const { z_channels: _, ...withoutZ } = varConfig;
  const alias = tokenizerConfigFromJson({ ...withoutZ, Cvae: 4 }, "a");
  assert(alias.cfg.cvae === 4, "Cvae");
  const refuse = (json: unknown, pattern: RegExp, what: string) =>
    assertThrows(() => tokenizerConfigFromJson(json, "c.json"), pattern, what);
  refuse({ ...varConfig, chmult: [1] }, /c\.json: unknown key chmult/, "typo");
  const { ch: _ch, ...withoutCh } = varConfig;
  refuse(withoutCh, /ch is missing/, "no ch");
  refuse({ ...varConfig, using_znorm: true }, /using_znorm must be false/, "znorm");
  refuse({ ...varConfig, Cvae: 8 }, /Cvae and z_channels disagree/, "two values");
  refuse({ ...varConfig, using_sa: "yes" }, /deepestAttention must be true or false/, "bool");
  refuse({ ...varConfig, ch_mult: [1, 0] }, /chMult must be a list of positive integers/, "mult");
  refuse([1, 2], /not a JSON object/, "array");
  refuse({ ...varConfig, normGroups: 0 }, /normGroups must be a positive integer/, "groups");
});

Deno.test("VAR's share_quant_resi 0 and 1: φ renamed to the partially shared layout", () => {
  const t = stTensor(new Float32Array(4 * 4 * 9), [4, 4, 3, 3]);
  const one = tokenizerConfigFromJson({ ...varConfig, share_quant_resi: 1 }, "c");
  const sd1 = fromVarStateDict(new Map([["quantize.quant_resi.qresi.weight", t]]), one);
  assert(sd1.tensors.has("quantize.quant_resi.qresi_ls.0.weight"), "share 1");
  assert(one.cfg.shareQuantResi === 1, "one φ");
  const none = tokenizerConfigFromJson({ ...varConfig, share_quant_resi: 0 }, "c");
  const sd0 = fromVarStateDict(new Map([["quantize.quant_resi.3.weight", t]]), none);
  assert(sd0.tensors.has("quantize.quant_resi.qresi_ls.3.weight"), "share 0");
  assert(none.cfg.shareQuantResi === 4, "one φ per scale");
});

Deno.test("phi index picks as VAR's PhiPartiallyShared (np.linspace ticks, np.argmin)", () => {
  // Rows from numpy: [shared φ, scales K, the φ of each scale].
  const table: [number, number, string][] = [
    [4, 10, "0,0,1,1,1,2,2,3,3,3"], // k = 7 is an exact tie that rounding gives to φ 3
    [4, 7, "0,0,1,2,2,3,3"],
    [4, 6, "0,0,1,2,3,3"],
    [4, 5, "0,1,2,2,3"],
    [2, 5, "0,0,0,1,1"],
    [3, 7, "0,0,0,1,1,2,2"],
    [6, 10, "0,0,1,1,2,3,3,4,5,5"],
    [1, 4, "0,0,0,0"],
  ];
  for (const [shared, K, want] of table) {
    const got = Array.from({ length: K }, (_, k) => phiIndex(k, K, shared)).join();
    assert(got === want, `${shared} φ, ${K} scales: ${got}, numpy ${want}`);
  }
});
