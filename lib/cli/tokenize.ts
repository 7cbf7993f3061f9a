// `vmambar tokenize`: image–caption shards → token shards (DESIGN §1, §5): each image's
// multi-scale code indices from the tokenizer, each caption's text ids (§4), and the tokenizer's
// SHA-256 in every shard's metadata.
import { UserError } from "../errors.ts";
import { type CommandSpec, intFlag, parseCommand } from "./args.ts";
import { resolveTokenizer, TOKENIZER_OPTION } from "./defaults.ts";
import { prepareOutputFolder, stagedFolder } from "./output.ts";

const spec: CommandSpec = {
  name: "tokenize",
  usage: "tokenize [--tokenizer T] --data SHARDS --out DIR [--text-length T] [--batch N]",
  summary: "Encode every image of SHARDS into multi-scale code indices and every caption into " +
    "text ids, written as token shards DIR/00000.safetensors… that record the tokenizer's hash.",
  options: {
    tokenizer: TOKENIZER_OPTION,
    data: { type: "string", value: "SHARDS", help: "image–caption shards, folder or manifest" },
    out: { type: "string", value: "DIR", help: "directory for the token shards" },
    "text-length": {
      type: "string",
      value: "T",
      help: "text ids per caption (default: 96 for 64-px tokenizers, else 128)",
    },
    batch: { type: "string", value: "N", default: "64", help: "images encoded at once" },
    "per-shard": { type: "string", value: "N", default: "10000", help: "samples per shard" },
    "decode-threads": { type: "string", value: "N", default: "8", help: "images decoded at once" },
    force: { type: "boolean", help: "replace token shards already in --out" },
  },
  more: "example: vmambar tokenize --data data/shapes --out data/shapes-tokens",
};

/** Refuses to mix shards of two runs in one directory unless --force, which clears them. */
function prepareOut(dir: string, force: boolean): void {
  prepareOutputFolder(dir, { flag: "--out" });
  const old = [...Deno.readDirSync(dir)].filter((e) => /^\d+\.safetensors$/.test(e.name));
  if (old.length && !force) {
    throw new UserError(`${dir} already holds token shards: pass --force to replace them`);
  }
  for (const e of old) Deno.removeSync(`${dir}/${e.name}`);
}

export async function main(argv: string[]): Promise<void> {
  const parsed = parseCommand(spec, argv);
  if (!parsed) return;
  const v = parsed.values;
  for (const k of ["data", "out"]) {
    if (typeof v[k] !== "string" || v[k] === "") {
      throw new UserError(`--${k} is required (see vmambar tokenize --help)`);
    }
  }
  const data = v.data as string, out = v.out as string;
  const batchSize = intFlag(v, "batch", 1, 4096), perShard = intFlag(v, "per-shard", 1, 1e6);
  const decodeConcurrency = intFlag(v, "decode-threads", 1, 256);
  const tokenizerPath = resolveTokenizer(v.tokenizer);
  prepareOut(out, v.force === true);
  const { initGpu } = await import("../gpu/mod.ts");
  await initGpu();
  const { loadTokenizer } = await import("../tokenizer/load.ts");
  const tok = await loadTokenizer(tokenizerPath);
  const { cfg } = tok;
  const T = v["text-length"] === undefined
    ? (cfg.image <= 64 ? 96 : 128)
    : intFlag(v, "text-length", 2, 1 << 16);
  const { openLoader } = await import("../data/loader.ts");
  const loader = openLoader({
    source: data,
    batchSize,
    imageSize: cfg.image,
    textLength: T,
    shuffleBuffer: 0,
    epochs: 1,
    pixels: "float32",
    decodeConcurrency,
  });
  const { tensor, tidyAsync } = await import("../tensor/tensor.ts");
  const { encodeImages } = await import("../tokenizer/reconstruct.ts");
  const { tokenShardName, writeTokenShard } = await import("../data/token_shards.ts");
  const { Progress } = await import("../data/progress.ts");
  const info = {
    tokenizerSha256: tok.sha256,
    scales: cfg.scales,
    vocab: cfg.vocab,
    textLength: T,
    source: data,
  };
  const L = cfg.scales.reduce((a, p) => a + p * p, 0);
  // The shards are written under DIR.partial and published as DIR once all are there.
  const stage = stagedFolder(out);
  const progress = new Progress("tokenize");
  let shard = 0, rows: Int32Array[] = [], texts: Int32Array[] = [], inShard = 0, total = 0;
  const flushShard = async () => {
    if (inShard === 0) return;
    const join = (parts: Int32Array[], n: number) => {
      const all = new Int32Array(n);
      let at = 0;
      for (const p of parts) all.set(p, (at += p.length) - p.length);
      return all;
    };
    await writeTokenShard(
      `${stage.path}/${tokenShardName(shard++)}`,
      info,
      join(rows, inShard * L),
      join(texts, inShard * T),
    );
    rows = [];
    texts = [];
    inShard = 0;
  };
  try {
    const batches = loader.batches();
    let next = batches.next();
    next.catch(() => {});
    while (true) {
      const r = await next;
      if (r.done) break;
      const b = r.value;
      // Ask for the next batch first, so its images decode while the GPU encodes this one (a
      // failure there is thrown when it is awaited, not reported as unhandled before).
      next = batches.next();
      next.catch(() => {});
      const perScale = await tidyAsync(async () => {
        const x = tensor(b.pixels as Float32Array, [b.size, 3, cfg.image, cfg.image]);
        return await Promise.all(encodeImages(tok.vq, x).map((t) => t.read()));
      });
      for (let i = 0; i < b.size; i++) {
        const row = new Int32Array(L);
        let at = 0;
        perScale.forEach((idx, k) => {
          const n = cfg.scales[k] ** 2;
          row.set((idx as Int32Array).subarray(i * n, (i + 1) * n), at);
          at += n;
        });
        rows.push(row);
        texts.push(b.ids.subarray(i * T, (i + 1) * T));
        total++;
        if (++inShard === perShard) await flushShard();
      }
      progress.tick(b.size);
    }
    await flushShard();
  } finally {
    progress.finish();
    tok.vq.dispose();
  }
  const skipped = loader.skipped.summary();
  if (skipped) console.error(skipped);
  if (total === 0) throw new UserError(`no images could be read from ${data}`);
  stage.publish();
  console.log(
    `tokenized ${total} images into ${shard} shard(s) in ${out} (${progress.rate.toFixed(0)} ` +
      `images/s; ${L} tokens + ${T} text ids each; tokenizer sha256 ${tok.sha256.slice(0, 16)}…)`,
  );
}
