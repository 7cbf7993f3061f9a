// The multi-scale VQ-VAE of DESIGN §3: VQGAN's encoder and decoder as VAR builds them, quant_conv,
// post_quant_conv and the residual quantizer, under VAR's `VQVAE` state-dict names.
import type { Tensor } from "../tensor/tensor.ts";
import { Init, Module } from "../nn/module.ts";
import { AttnBlock, Conv2d, Downsample2x, GroupNorm, ResnetBlock, Upsample2x } from "./blocks.ts";
import { normGroups, type TokenizerConfig } from "./config.ts";
import { ResidualQuantizer } from "./quantizer.ts";

/** One resolution level: res blocks, attention after each where the config has it, a resampler. */
class Level extends Module {
  readonly blocks: ResnetBlock[] = [];
  readonly attns: AttnBlock[] = [];
  resample?: Downsample2x | Upsample2x;
  constructor() {
    super();
  }
  run(h: Tensor): Tensor {
    this.blocks.forEach((b, i) => {
      h = b.forward(h);
      if (this.attns[i]) h = this.attns[i].forward(h);
    });
    return this.resample ? this.resample.forward(h) : h;
  }
}

class Mid extends Module {
  readonly block1: ResnetBlock;
  readonly attn1?: AttnBlock;
  readonly block2: ResnetBlock;
  constructor(init: Init, ch: number, attention: boolean, g: number) {
    super();
    this.block1 = this.child("block_1", new ResnetBlock(init, ch, ch, g));
    if (attention) this.attn1 = this.child("attn_1", new AttnBlock(init, ch, g));
    this.block2 = this.child("block_2", new ResnetBlock(init, ch, ch, g));
  }
  forward(h: Tensor): Tensor {
    h = this.block1.forward(h);
    if (this.attn1) h = this.attn1.forward(h);
    return this.block2.forward(h);
  }
}

function levelModule(parent: Module, name: string, level: Level): Level {
  return parent.child(name, level);
}

export class Encoder extends Module {
  readonly convIn: Conv2d;
  readonly down: Level[] = [];
  readonly mid: Mid;
  readonly normOut: GroupNorm;
  readonly convOut: Conv2d;
  constructor(init: Init, cfg: TokenizerConfig) {
    super();
    const L = cfg.chMult.length, g = normGroups(cfg);
    this.convIn = this.child("conv_in", new Conv2d(init, 3, cfg.ch, 3));
    const downs = this.child("down", new Module());
    let cin = cfg.ch;
    for (let i = 0; i < L; i++) {
      const level = levelModule(downs, `${i}`, new Level());
      const blocks = level.child("block", new Module());
      const attns = level.child("attn", new Module());
      const cout = cfg.ch * cfg.chMult[i];
      for (let j = 0; j < cfg.numResBlocks; j++) {
        level.blocks.push(blocks.child(`${j}`, new ResnetBlock(init, cin, cout, g)));
        cin = cout;
        if (i === L - 1 && cfg.deepestAttention) {
          level.attns.push(attns.child(`${j}`, new AttnBlock(init, cin, g)));
        }
      }
      if (i !== L - 1) level.resample = level.child("downsample", new Downsample2x(init, cin));
      this.down.push(level);
    }
    this.mid = this.child("mid", new Mid(init, cin, cfg.midAttention, g));
    this.normOut = this.child("norm_out", new GroupNorm(init, cin, g));
    this.convOut = this.child("conv_out", new Conv2d(init, cin, cfg.cvae, 3));
  }
  forward(x: Tensor): Tensor {
    let h = this.convIn.forward(x);
    for (const level of this.down) h = level.run(h);
    h = this.mid.forward(h);
    return this.convOut.forward(this.normOut.forward(h, true));
  }
}

export class Decoder extends Module {
  readonly convIn: Conv2d;
  readonly mid: Mid;
  readonly up: Level[] = [];
  readonly normOut: GroupNorm;
  readonly convOut: Conv2d;
  constructor(init: Init, cfg: TokenizerConfig) {
    super();
    const L = cfg.chMult.length, g = normGroups(cfg);
    let cin = cfg.ch * cfg.chMult[L - 1];
    this.convIn = this.child("conv_in", new Conv2d(init, cfg.cvae, cin, 3));
    this.mid = this.child("mid", new Mid(init, cin, cfg.midAttention, g));
    const ups = this.child("up", new Module());
    const levels: Level[] = new Array(L);
    for (let i = L - 1; i >= 0; i--) {
      const level = new Level();
      const blocks = level.child("block", new Module());
      const attns = level.child("attn", new Module());
      const cout = cfg.ch * cfg.chMult[i];
      // The decoder has one more res block per level than the encoder (VAR's).
      for (let j = 0; j < cfg.numResBlocks + 1; j++) {
        level.blocks.push(blocks.child(`${j}`, new ResnetBlock(init, cin, cout, g)));
        cin = cout;
        if (i === L - 1 && cfg.deepestAttention) {
          level.attns.push(attns.child(`${j}`, new AttnBlock(init, cin, g)));
        }
      }
      if (i !== 0) level.resample = level.child("upsample", new Upsample2x(init, cin));
      levels[i] = level;
    }
    // Registered in index order so names read up.0 … up.{L-1}, as VAR's ModuleList.
    levels.forEach((lv, i) => levelModule(ups, `${i}`, lv));
    this.up = levels;
    this.normOut = this.child("norm_out", new GroupNorm(init, cin, g));
    this.convOut = this.child("conv_out", new Conv2d(init, cin, 3, 3));
  }
  forward(z: Tensor): Tensor {
    let h = this.mid.forward(this.convIn.forward(z));
    for (let i = this.up.length - 1; i >= 0; i--) h = this.up[i].run(h);
    return this.convOut.forward(this.normOut.forward(h, true));
  }
}

export class VQVAE extends Module {
  readonly encoder: Encoder;
  readonly decoder: Decoder;
  readonly quantConv: Conv2d;
  readonly postQuantConv: Conv2d;
  readonly quantize: ResidualQuantizer;
  constructor(readonly cfg: TokenizerConfig, seed = 0) {
    super();
    const init = new Init(seed);
    this.encoder = this.child("encoder", new Encoder(init, cfg));
    this.decoder = this.child("decoder", new Decoder(init, cfg));
    this.quantize = this.child("quantize", new ResidualQuantizer(init, cfg));
    this.quantConv = this.child("quant_conv", new Conv2d(init, cfg.cvae, cfg.cvae, 3));
    this.postQuantConv = this.child("post_quant_conv", new Conv2d(init, cfg.cvae, cfg.cvae, 3));
  }

  /** Pixels in [-1, 1], NCHW → the encoder map f [B, Cvae, h, w]. */
  encodeMap(x: Tensor): Tensor {
    return this.quantConv.forward(this.encoder.forward(x));
  }

  /** f_hat → pixels in (about) [-1, 1]. */
  decodeMap(fHat: Tensor): Tensor {
    return this.decoder.forward(this.postQuantConv.forward(fHat));
  }
}
