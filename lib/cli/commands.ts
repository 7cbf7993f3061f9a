// The subcommand table: each entry is loaded only when it runs, so `--help` and light commands
// never pay for heavy imports (sharp, the GPU).

export interface Command {
  summary: string;
  run: (argv: string[]) => Promise<void>;
}

export const commands: Record<string, Command> = {
  generate: {
    summary: "generate images from captions with a trained model (the default one in models/)",
    run: async (argv) => (await import("./generate.ts")).main(argv),
  },
  eval: {
    summary: "score a model on the shapes world, token shards or a tokenizer on images",
    run: async (argv) => (await import("./eval.ts")).main(argv),
  },
  train: {
    summary: "train VMambAR on token shards (next-scale prediction, Mamba + shared attention)",
    run: async (argv) => (await import("./train.ts")).main(argv),
  },
  bench: {
    summary:
      "measure matmul, elementwise and dispatch throughput; bench generate: time to one image",
    run: async (argv) => (await import("./bench.ts")).main(argv),
  },
  info: {
    summary: "show a checkpoint's or token shard's metadata, config and tensors",
    run: async (argv) => (await import("./info.ts")).main(argv),
  },
  data: {
    summary: "make and inspect image–caption shards: shapes, emoji, folder, stats",
    run: async (argv) => (await import("./data.ts")).main(argv),
  },
  "train-tokenizer": {
    summary: "train the multi-scale VQ-VAE image tokenizer on image shards",
    run: async (argv) => (await import("./train_tokenizer.ts")).main(argv),
  },
  tokenize: {
    summary: "turn image–caption shards into token shards (multi-scale indices + text ids)",
    run: async (argv) => (await import("./tokenize.ts")).main(argv),
  },
  reconstruct: {
    summary: "encode and decode images through a tokenizer; writes NAME.recon.png, prints PSNR",
    run: async (argv) => (await import("./reconstruct.ts")).main(argv),
  },
  "import-tokenizer": {
    summary: "wrap a VAR tokenizer's state dict (safetensors) as a vmambar tokenizer checkpoint",
    run: async (argv) => (await import("./import_tokenizer.ts")).main(argv),
  },
};
