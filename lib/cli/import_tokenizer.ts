// `vmambar import-tokenizer FILE --config CONFIG.json --out T`: a VAR tokenizer (its `VQVAE`
// state dict as safetensors) becomes a vmambar tokenizer checkpoint that tokenize, reconstruct
// and generate load like one of ours (DESIGN §3, §5).
import { UserError } from "../errors.ts";
import { type CommandSpec, parseCommand } from "./args.ts";
import { prepareOutputFile } from "./output.ts";

const spec: CommandSpec = {
  name: "import-tokenizer",
  usage: "import-tokenizer FILE.safetensors --config CONFIG.json --out T.safetensors",
  summary: "Wrap a VAR tokenizer (the state dict of VAR's VQVAE, converted from its .pth to " +
    "safetensors) as a vmambar tokenizer checkpoint. Every parameter must be present with the " +
    "shape that CONFIG implies (a mismatch names the CONFIG setting to change); F16/BF16/F64 " +
    "tensors are stored as f32; tensors that are not parameters are skipped and listed.",
  options: {
    config: {
      type: "string",
      value: "JSON",
      help: "the tokenizer's structure, in VAR's key names or vmambar's (below)",
    },
    out: { type: "string", value: "FILE", help: "the vmambar tokenizer checkpoint to write" },
    force: { type: "boolean", help: "replace an existing --out file" },
  },
  allowPositionals: true,
  more: [
    "CONFIG keys (vmambar's | VAR's):",
    "  ch | ch                       base channels, e.g. 160",
    "  chMult | ch_mult              channel multipliers per level, e.g. [1, 1, 2, 2, 4]",
    "  cvae | Cvae, z_channels       channels of the quantised map, e.g. 32",
    "  vocab | V, vocab_size         codebook size, e.g. 4096",
    "  scales | v_patch_nums         token-map sides, ascending, e.g. [1, 2, 3, 4, 5, 6, 8, 10, 13, 16]",
    "  image | image_size            image side (default: last scale × 2^(levels − 1))",
    "  numResBlocks | num_res_blocks          (default 2)",
    "  midAttention | using_mid_sa            (default true)",
    "  deepestAttention | using_sa            (default true)",
    "  quantResi | quant_resi                 (default 0.5)",
    "  shareQuantResi | share_quant_resi      (default 4; 0 and 1 are renamed on import)",
    "  beta                                   (default 0.25)",
    "VAR's using_znorm must be false and quant_conv_ks 3; dropout and test_mode are ignored.",
    "",
    "example (VAR's released 256px tokenizer, vae_ch160v4096z32.pth converted to safetensors):",
    '  echo \'{"ch": 160, "ch_mult": [1, 1, 2, 2, 4], "z_channels": 32, "vocab_size": 4096,',
    '         "v_patch_nums": [1, 2, 3, 4, 5, 6, 8, 10, 13, 16]}\' > var.json',
    "  vmambar import-tokenizer vae_ch160v4096z32.safetensors --config var.json --out var256.safetensors",
  ].join("\n"),
};

export async function main(argv: string[]): Promise<void> {
  const parsed = parseCommand(spec, argv);
  if (!parsed) return;
  const [file, ...extra] = parsed.positionals;
  if (!file || extra.length) throw new UserError("give one FILE (see import-tokenizer --help)");
  const config = parsed.values.config as string | undefined;
  const out = parsed.values.out as string | undefined;
  if (!config) {
    throw new UserError("--config CONFIG.json is required (see import-tokenizer --help)");
  }
  if (!out) throw new UserError("--out FILE is required (see import-tokenizer --help)");
  prepareOutputFile(out, { force: parsed.values.force === true, flag: "--out" });
  const { initGpu } = await import("../gpu/mod.ts");
  await initGpu();
  const { importVarTokenizer } = await import("../tokenizer/var_import.ts");
  const r = await importVarTokenizer(file, config, out);
  const c = r.cfg;
  const attention = [c.midAttention ? "mid" : "", c.deepestAttention ? "deepest level" : ""]
    .filter(Boolean).join(" + ") || "none";
  console.log(
    `config: image ${c.image}, ch ${c.ch} × [${c.chMult}], ${c.numResBlocks} res blocks, ` +
      `attention ${attention}, Cvae ${c.cvae}, V ${c.vocab}, scales ${c.scales.join(",")}, ` +
      `${c.shareQuantResi} φ (r ${c.quantResi})`,
  );
  console.log(
    `loaded ${r.parameters} tensors, ${r.elements.toLocaleString("en-US")} parameters` +
      (Object.keys(r.converted).length
        ? ` (converted to f32: ${
          Object.entries(r.converted).map(([d, n]) => `${n} ${d}`).join(", ")
        })`
        : ""),
  );
  for (const s of r.skipped) console.log(`skipped ${s}`);
  console.log(`wrote ${out}`);
}
