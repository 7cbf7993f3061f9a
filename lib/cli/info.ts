// vmambar info FILE: what a checkpoint or token shard holds.
import { UserError } from "../errors.ts";
import { readSafetensors, ST_BYTES } from "../io/safetensors.ts";
import { type CommandSpec, parseCommand } from "./args.ts";
import { VOCABULARY_KEY } from "../data/vocabulary.ts";

const spec: CommandSpec = {
  name: "info",
  usage: "info FILE.safetensors [--tensors]",
  summary: "Show a checkpoint's or token shard's metadata, config and tensors.",
  options: { tensors: { type: "boolean", help: "list every tensor (default: the first 20)" } },
  allowPositionals: true,
};

export async function main(argv: string[]): Promise<void> {
  const parsed = parseCommand(spec, argv);
  if (!parsed) return;
  const [path] = parsed.positionals;
  if (!path || parsed.positionals.length > 1) {
    throw new UserError("give one FILE (see vmambar info --help)");
  }
  const { metadata, tensors } = await readSafetensors(path);
  if (metadata.format === "vmambar" && metadata.kind === "model") {
    console.log(modelSummary(metadata, tensors));
  }
  const { config, ...rest } = metadata;
  for (const [k, v] of Object.entries(rest)) {
    console.log(`${k}: ${k === VOCABULARY_KEY ? wordList(v) : v}`);
  }
  if (config) {
    try {
      console.log(`config: ${JSON.stringify(JSON.parse(config), null, 2)}`);
    } catch {
      console.log(`config: ${config}`);
    }
  }
  let elements = 0, bytes = 0;
  for (const t of tensors.values()) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    elements += n;
    bytes += n * ST_BYTES[t.dtype];
  }
  console.log(
    `tensors: ${tensors.size}, ${elements.toLocaleString("en-US")} elements, ${
      (bytes / 2 ** 20).toFixed(2)
    } MiB`,
  );
  const list = [...tensors];
  const shown = parsed.values.tensors ? list : list.slice(0, 20);
  const w = Math.max(...shown.map(([k]) => k.length), 4) + 2;
  for (const [k, t] of shown) {
    console.log(`  ${k.padEnd(w)}${t.dtype.padEnd(5)} [${t.shape.join(", ")}]`);
  }
  if (shown.length < list.length) {
    console.log(`  … ${list.length - shown.length} more (--tensors lists all)`);
  }
}

/** One line for a model checkpoint: arch, preset, size, step and the tokenizer it needs. */
function modelSummary(
  m: Record<string, string>,
  tensors: Map<string, { shape: number[] }>,
): string {
  let cfg: Record<string, unknown> = {};
  try {
    cfg = JSON.parse(m.config ?? "{}");
  } catch { /* shown raw below */ }
  const params = [...tensors.values()].reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1), 0);
  const shape = `d ${cfg.d}, ${cfg.n_layers} layers` +
    (cfg.arch === "hybrid" ? `, GSA every ${cfg.gsa_every}` : "") +
    `, ${cfg.heads} heads, ${cfg.text_layers} text layers, T ${cfg.text_length}` +
    (Number(cfg.ar_scales) > 0 ? `, scales 2–${Number(cfg.ar_scales) + 1} token by token` : "");
  return `model: ${cfg.arch ?? "?"}${m.preset ? ` (preset ${m.preset})` : ""}, ` +
    `${(params / 1e6).toFixed(2)} M parameters; ${shape}; trained ${m.step ?? "?"} steps; ` +
    `tokenizer sha256 ${m.tokenizer_sha256 ?? "not recorded"}`;
}

/** The training captions' vocabulary, shortened: its size and the first words. */
function wordList(v: string): string {
  const words = v.split(" ").filter((w) => w !== "");
  const head = words.slice(0, 12).join(" ");
  return `${words.length} words: ${head}${words.length > 12 ? " …" : ""}`;
}
