// The subcommand table: each entry is loaded only when it runs, so `--help` and light commands
// never pay for heavy imports (sharp, the GPU).

export interface Command {
  summary: string;
  run: (argv: string[]) => Promise<void>;
}

export const commands: Record<string, Command> = {
  bench: {
    summary: "measure matmul, elementwise and dispatch throughput on this GPU",
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
};
