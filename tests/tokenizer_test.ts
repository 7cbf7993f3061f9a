// The multi-scale tokenizer (DESIGN §3): the residual quantizer against a float64 version of the
// §3 pseudocode, VAR's state-dict names, determinism, and gradients reaching every part.
import { VQVAE } from "../lib/tokenizer/vqvae.ts";
import { phiIndex } from "../lib/tokenizer/quantizer.ts";
import {
  tokenCount,
  TOKENIZER_PRESETS,
  type TokenizerConfig,
  validateTokenizerConfig,
} from "../lib/tokenizer/config.ts";
import { loadTokenizer } from "../lib/tokenizer/load.ts";
import { saveCheckpoint } from "../lib/io/checkpoint.ts";
import { upload } from "../lib/gpu/mod.ts";
import { backward, zeroGrad } from "../lib/tensor/autograd.ts";
import { abs, add, mean, mul, square, sumAll } from "../lib/tensor/ops.ts";
import { noGrad, type Tensor, tensor, tidyAsync } from "../lib/tensor/tensor.ts";
import { areaMatrix, bicubicMatrix, convRef, nearestRef, separable } from "./image_ref.ts";
import {
  assert,
  assertClose,
  assertDirectionalGrads,
  assertThrows,
  f32,
  gpuReady,
  randn,
} from "./helpers.ts";

const small: TokenizerConfig = {
  ...TOKENIZER_PRESETS.tiny64,
  image: 16,
  ch: 8,
  chMult: [1, 2, 2],
  cvae: 4,
  vocab: 24,
  scales: [1, 2, 3, 4],
};

Deno.test("phi index: the tick of linspace(1/12, 11/12, 4) nearest to (k-1)/(K-1)", () => {
  assert([0, 1, 2, 3, 4, 5].map((k) => phiIndex(k, 6, 4)).join() === "0,0,1,2,3,3", "K = 6");
  assert([0, 9].map((k) => phiIndex(k, 10, 4)).join() === "0,3", "K = 10 ends");
});

/** The §3 loop in float64: indices per scale and f_hat, for f [B, C, H, W]. */
function quantizeRef(
  f: Float64Array,
  [B, C, H]: number[],
  codebook: Float64Array,
  phis: { w: Float64Array; b: Float64Array }[],
  scales: number[],
) {
  const K = scales.length;
  const rest = Float64Array.from(f);
  const fHat = new Float64Array(f.length);
  const indices: Int32Array[] = [];
  scales.forEach((pn, k) => {
    const z = pn === H
      ? rest
      : separable(rest, B * C, [H, H], [pn, pn], areaMatrix(H, pn), areaMatrix(H, pn));
    const hw = pn * pn;
    const { idx } = nearestRef(
      (n, c) => z[(Math.floor(n / hw) * C + c) * hw + (n % hw)],
      codebook,
      B * hw,
      C,
    );
    indices.push(idx);
    const e = new Float64Array(B * C * hw);
    for (let n = 0; n < B * hw; n++) {
      for (let c = 0; c < C; c++) {
        e[(Math.floor(n / hw) * C + c) * hw + (n % hw)] = codebook[idx[n] * C + c];
      }
    }
    const up = pn === H
      ? e
      : separable(e, B * C, [pn, pn], [H, H], bicubicMatrix(pn, H), bicubicMatrix(pn, H));
    const phi = phis[phiIndex(k, K, phis.length)];
    const conv = convRef(up, phi.w, phi.b, {
      x: [B, C, H, H],
      w: [C, C, 3, 3],
      bias: true,
      opts: { padding: 1 },
    }).y;
    for (let i = 0; i < f.length; i++) {
      const h = up[i] * 0.5 + conv[i] * 0.5;
      fHat[i] += h;
      rest[i] -= h;
    }
  });
  return { indices, fHat };
}

Deno.test("residual quantizer matches the float64 §3 loop: same indices, f_hat within 1e-5", async () => {
  await gpuReady;
  const vq = new VQVAE(small, 1);
  const q = vq.quantize;
  const [B, C, H] = [2, small.cvae, 4];
  const codebook = f32(randn(small.vocab * C));
  upload(q.codebook.buffer, Float32Array.from(codebook));
  const phis = q.phis.map((p) => {
    const w = f32(randn(C * C * 9, undefined, 0.2));
    const b = f32(randn(C, undefined, 0.1));
    upload(p.weight.buffer, Float32Array.from(w));
    upload(p.bias.buffer, Float32Array.from(b));
    return { w, b };
  });
  const f = f32(randn(B * C * H * H));
  const ref = quantizeRef(f, [B, C, H], codebook, phis, small.scales);
  await tidyAsync(async () => {
    const ft = tensor(f, [B, C, H, H]);
    const idx = q.encode(ft);
    for (let k = 0; k < idx.length; k++) {
      const got = await idx[k].toArray();
      assert(
        got.every((v, i) => v === ref.indices[k][i]),
        `scale ${k}: indices ${got} vs ${ref.indices[k]}`,
      );
    }
    assertClose(
      await noGrad(() => q.decode(idx, H)).toArray(),
      ref.fHat,
      1e-5,
      "f_hat from indices",
    );
    const trained = q.forward(ft);
    assertClose(await trained.fHat.toArray(), ref.fHat, 1e-5, "f_hat of the training pass");
  });
  vq.dispose();
});

Deno.test("VQVAE has VAR's state-dict names; encode → decode is deterministic", async () => {
  await gpuReady;
  const vq = new VQVAE(small, 2);
  const names = new Set(vq.namedParameters().map(([n]) => n));
  for (
    const n of [
      "encoder.conv_in.weight",
      "encoder.down.0.block.0.norm1.weight",
      "encoder.down.0.block.0.conv1.weight",
      "encoder.down.1.block.0.nin_shortcut.weight",
      "encoder.down.0.downsample.conv.weight",
      "encoder.mid.block_1.conv2.bias",
      "encoder.norm_out.bias",
      "encoder.conv_out.weight",
      "quant_conv.weight",
      "quantize.embedding.weight",
      "quantize.quant_resi.qresi_ls.3.weight",
      "post_quant_conv.bias",
      "decoder.conv_in.weight",
      "decoder.up.2.block.2.conv2.weight",
      "decoder.up.1.upsample.conv.weight",
      "decoder.norm_out.weight",
    ]
  ) assert(names.has(n), `missing ${n}`);
  assert(!names.has("encoder.down.2.downsample.conv.weight"), "deepest level has no downsample");
  assert(!names.has("decoder.up.0.upsample.conv.weight"), "level 0 has no upsample");
  const x = f32(randn(2 * 3 * 16 * 16).map((v) => Math.tanh(v)));
  const run = () =>
    tidyAsync(async () => {
      const f = noGrad(() => vq.encodeMap(tensor(x, [2, 3, 16, 16])));
      const idx = vq.quantize.encode(f);
      const out = noGrad(() => vq.decodeMap(vq.quantize.decode(idx, 4)));
      assert(out.shape.join() === "2,3,16,16", `decoded shape ${out.shape}`);
      return await out.toArray();
    });
  const a = await run(), b = await run();
  assert(a.every((v, i) => v === b[i]), "encode → decode differs between runs");
  assert(tokenCount(small) === 30, "token count");
  vq.dispose();
});

Deno.test("a training step's loss reaches the encoder, decoder, codebook and every φ", async () => {
  await gpuReady;
  const vq = new VQVAE(small, 3);
  const x = tensor(f32(randn(2 * 3 * 16 * 16).map((v) => Math.tanh(v))), [2, 3, 16, 16]);
  await tidyAsync(async () => {
    const f = vq.encodeMap(x);
    const q = vq.quantize.forward(f);
    const rec = vq.decodeMap(q.fHat);
    const d = square(add(rec, noGrad(() => mean(x.reshape([x.size]), 0, true))));
    backward(add(mean(d.reshape([d.size]), 0, true), q.vqLoss));
    for (const [name, p] of vq.namedParameters()) {
      assert(p.grad, `${name} got no gradient`);
      const g = await p.grad.toArray();
      assert(g.every(Number.isFinite), `${name} has a non-finite gradient`);
    }
  });
  x.dispose();
  vq.dispose();
});

Deno.test("encoder and decoder gradients agree with directional differences (attention on)", async () => {
  await gpuReady;
  // The quantizer's straight-through estimator makes the encoder's gradient through it a proxy,
  // not a derivative; so each half is checked on its own, through a fixed random readout.
  const cfg = {
    ...small,
    image: 8,
    chMult: [1, 2],
    numResBlocks: 1,
    scales: [1, 2, 4],
    midAttention: true,
    deepestAttention: true,
  };
  const vq = new VQVAE(cfg, 5);
  const side = cfg.image / 2 ** (cfg.chMult.length - 1);
  const x = tensor(f32(randn(3 * 8 * 8).map((v) => Math.tanh(v))), [1, 3, 8, 8]);
  const fShape = [1, cfg.cvae, side, side];
  const fSize = fShape.reduce((a, b) => a * b);
  const rF = tensor(f32(randn(fSize)), fShape);
  const fHat = tensor(f32(randn(fSize)), fShape);
  const rX = tensor(f32(randn(x.size)), x.shape);
  const named = vq.namedParameters();
  const part = (...prefixes: string[]) =>
    named.filter(([n]) => prefixes.some((p) => n.startsWith(p)));
  // Σ|term| of each readout: the scale of its f32 rounding (the sums cancel to far less).
  const massOf = async (y: () => Tensor, r: Tensor) =>
    await tidyAsync(() => noGrad(() => sumAll(abs(mul(y(), r)))).item());
  const encode = () => vq.encodeMap(x), decode = () => vq.decodeMap(fHat);
  // One joint direction per layer (a conv's weight and bias, a norm's affine pair).
  const groupBy = (n: string) => n.split(".").slice(0, -1).join(".");
  await assertDirectionalGrads(part("encoder.", "quant_conv."), () => sumAll(mul(encode(), rF)), {
    mass: await massOf(encode, rF),
    groupBy,
  });
  zeroGrad(vq.parameters());
  await assertDirectionalGrads(
    part("decoder.", "post_quant_conv."),
    () => sumAll(mul(decode(), rX)),
    { mass: await massOf(decode, rX), groupBy },
  );
  zeroGrad(vq.parameters());
  for (const t of [x, rF, fHat, rX]) t.dispose();
  vq.dispose();
});

Deno.test("normGroups: GroupNorm's group limit, VAR's 32 when absent, kept in a checkpoint", async () => {
  await gpuReady;
  const groups = (vq: VQVAE) =>
    [
      vq.encoder.down[0].blocks[0].norm1.groups, // ch 8
      vq.encoder.normOut.groups, // ch 16
      vq.decoder.mid.block1.norm2.groups, // ch 16
      vq.decoder.normOut.groups, // ch 8
    ].join();
  const plain = new VQVAE(small);
  assert(groups(plain) === "8,16,16,8", `absent: one channel per group, got ${groups(plain)}`);
  plain.dispose();
  const cfg = { ...small, normGroups: 4 };
  const vq = new VQVAE(validateTokenizerConfig(cfg, "cfg"));
  assert(groups(vq) === "4,4,4,4", `normGroups 4: ${groups(vq)}`);
  const dir = await Deno.makeTempDir();
  try {
    await saveCheckpoint(`${dir}/t.safetensors`, vq.namedParameters(), "tokenizer", cfg);
    const loaded = await loadTokenizer(`${dir}/t.safetensors`);
    assert(loaded.cfg.normGroups === 4, `saved config: ${JSON.stringify(loaded.cfg)}`);
    assert(groups(loaded.vq) === "4,4,4,4", `loaded: ${groups(loaded.vq)}`);
    loaded.vq.dispose();
  } finally {
    vq.dispose();
    await Deno.remove(dir, { recursive: true });
  }
  for (const bad of [0, 2.5, -1, "4"]) {
    assertThrows(
      () => validateTokenizerConfig({ ...small, normGroups: bad as number }, "c.json"),
      /c\.json: normGroups must be a positive integer/,
      `normGroups ${bad}`,
    );
  }
});
