// `vmambar tokenize`: image–caption shards → token shards (DESIGN §1, §5): each image's
// multi-scale code indices from the tokenizer, each caption's text ids (§4), and the tokenizer's
// SHA-256 in every shard's metadata.
import { UserError } from "../errors.ts";
import { type CommandSpec, intFlag, parseCommand } from "./args.ts";
import { resolveTokenizer, TOKENIZER_OPTION } from "./defaults.ts";
import { prepareOutputFolder, stagedFolder, stagedPath } from "./output.ts";
import type { Collective } from "../dist/collective.ts";
import type { Batch, Loader } from "../data/loader.ts";
import type { TokenShardInfo } from "../data/token_shards.ts";
import type { Progress } from "../data/progress.ts";
import type { SampleSource } from "../data/sources.ts";
import type { VQVAE } from "../tokenizer/vqvae.ts";
import type { TokenizerConfig } from "../tokenizer/config.ts";

const spec: CommandSpec = {
  name: "tokenize",
  usage:
    "tokenize [--tokenizer T] --data SHARDS --out DIR [--text-length T] [--batch N] [--world N]",
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
    world: {
      type: "string",
      value: "N",
      help: "run as N processes under mpirun, each on its share of the shards (the same output)",
    },
  },
  more: "example: vmambar tokenize --data data/shapes --out data/shapes-tokens",
};

/** The source cut into parts for `world` processes; refused when there are fewer parts. */
async function splitSource(data: string, world: number) {
  const { SkipReport } = await import("../data/skips.ts");
  const { openSource } = await import("../data/sources.ts");
  const openSkips = new SkipReport(), readSkips = new SkipReport();
  const parts = openSource(data, openSkips).split(readSkips, world);
  if (parts.length < world) {
    throw new UserError(
      `--world ${world}: ${data} splits into ${parts.length} part(s) (one per shard): ` +
        `run at most ${parts.length} processes`,
    );
  }
  return { parts, openSkips, readSkips };
}

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
  const { launchWorld } = await import("../dist/launch.ts");
  const given = v.world === undefined ? undefined : intFlag(v, "world", 1);
  // Too few parts for the processes is refused before any is started or any folder made.
  if (given !== undefined && given > 1) await splitSource(data, given);
  // The launcher returns null once the processes it started have all finished.
  if (await launchWorld("tokenize", argv, given) === null) return;
  const { collective } = await import("../dist/collective.ts");
  const comm = collective();
  const lead = comm.rank === 0;
  const split = comm.size > 1 ? await splitSource(data, comm.size) : null;
  // Rank 0 alone clears --out and makes the staging folder; the others wait for it (a barrier)
  // before they write there.
  if (lead) prepareOut(out, v.force === true);
  const stage = lead ? stagedFolder(out) : { path: stagedPath(out), publish() {} };
  const { initGpu } = await import("../gpu/mod.ts");
  await initGpu();
  const { loadTokenizer } = await import("../tokenizer/load.ts");
  const tok = await loadTokenizer(tokenizerPath);
  const { cfg } = tok;
  const T = v["text-length"] === undefined
    ? (cfg.image <= 64 ? 96 : 128)
    : intFlag(v, "text-length", 2, 1 << 16);
  const { Loader, openLoader } = await import("../data/loader.ts");
  const { Progress } = await import("../data/progress.ts");
  const info: TokenShardInfo = {
    tokenizerSha256: tok.sha256,
    scales: cfg.scales,
    vocab: cfg.vocab,
    textLength: T,
    source: data,
  };
  const L = cfg.scales.reduce((a, p) => a + p * p, 0);
  const options = {
    source: data,
    batchSize,
    imageSize: cfg.image,
    textLength: T,
    shuffleBuffer: 0,
    epochs: 1,
    pixels: "float32" as const,
    decodeConcurrency,
  };
  const encoder = { vq: tok.vq, cfg, L, T };
  const progress = lead ? new Progress("tokenize") : null;
  const t0 = performance.now();
  let total: number, shards: number;
  try {
    if (comm.size === 1) {
      const loader = openLoader(options);
      ({ total, shards } = await tokenizeAll(
        loader,
        encoder,
        info,
        stage.path,
        perShard,
        progress,
      ));
      const skipped = loader.skipped.summary();
      if (skipped) console.error(skipped);
    } else {
      const { parts, openSkips, readSkips } = split!;
      const share = shareSource(parts, comm);
      const loader = new Loader({ ...options, allowEmpty: true }, share.source, readSkips);
      ({ total, shards } = await tokenizeShare(
        loader,
        share,
        parts.length,
        comm,
        encoder,
        info,
        stage.path,
        perShard,
        progress,
      ));
      const skipped = [...(lead ? [openSkips.summary()] : []), readSkips.summary()]
        .filter((l) => l !== null);
      for (const l of skipped) console.error(`rank ${comm.rank} of ${comm.size}: ${l}`);
    }
  } finally {
    progress?.finish();
    tok.vq.dispose();
  }
  if (total === 0) throw new UserError(`no images could be read from ${data}`);
  if (lead) stage.publish();
  comm.close();
  if (!lead) return;
  const rate = total / Math.max(1e-9, (performance.now() - t0) / 1000);
  const over = comm.size > 1 ? ` over ${comm.size} processes` : "";
  console.log(
    `tokenized ${total} images into ${shards} shard(s) in ${out} (${rate.toFixed(0)} ` +
      `images/s${over}; ${L} tokens + ${T} text ids each; tokenizer sha256 ` +
      `${tok.sha256.slice(0, 16)}…)`,
  );
}

interface Encoder {
  vq: VQVAE;
  cfg: TokenizerConfig;
  /** Code indices per image (Σ pn²) and text ids per caption. */
  L: number;
  T: number;
}

/**
 * Encodes every batch of `loader`, handing each image's code indices and text ids to `take` with
 * the batch and its place there. The next batch decodes while the GPU encodes this one.
 */
async function encodeBatches(
  loader: Loader,
  { vq, cfg, L, T }: Encoder,
  progress: Progress | null,
  take: (row: Int32Array, ids: Int32Array, batch: Batch, i: number) => Promise<void> | void,
): Promise<void> {
  const { tensor, tidyAsync } = await import("../tensor/tensor.ts");
  const { encodeImages } = await import("../tokenizer/reconstruct.ts");
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
      return await Promise.all(encodeImages(vq, x).map((t) => t.read()));
    });
    for (let i = 0; i < b.size; i++) {
      const row = new Int32Array(L);
      let at = 0;
      perScale.forEach((idx, k) => {
        const n = cfg.scales[k] ** 2;
        row.set((idx as Int32Array).subarray(i * n, (i + 1) * n), at);
        at += n;
      });
      await take(row, b.ids.subarray(i * T, (i + 1) * T), b, i);
    }
    progress?.tick(b.size);
  }
}

/** Rows of equal length joined into one array. */
function joinRows(parts: Int32Array[], width: number): Int32Array {
  const all = new Int32Array(parts.length * width);
  parts.forEach((p, i) => all.set(p, i * width));
  return all;
}

/** Images' code indices and text ids gathered for one token shard file, then written. */
class ShardRows {
  #rows: Int32Array[] = [];
  #texts: Int32Array[] = [];
  constructor(readonly info: TokenShardInfo, readonly encoder: Encoder) {}

  get length(): number {
    return this.#rows.length;
  }

  push(row: Int32Array, ids: Int32Array): void {
    this.#rows.push(row);
    this.#texts.push(ids);
  }

  /** Writes the gathered rows to `path` and starts empty again. */
  async write(path: string): Promise<void> {
    const { writeTokenShard } = await import("../data/token_shards.ts");
    const { L, T } = this.encoder;
    await writeTokenShard(path, this.info, joinRows(this.#rows, L), joinRows(this.#texts, T));
    this.#rows = [];
    this.#texts = [];
  }
}

/** One process: every image, in order, into shards of `perShard` under `dir`. */
async function tokenizeAll(
  loader: Loader,
  encoder: Encoder,
  info: TokenShardInfo,
  dir: string,
  perShard: number,
  progress: Progress | null,
): Promise<{ total: number; shards: number }> {
  const { tokenShardName } = await import("../data/token_shards.ts");
  const rows = new ShardRows(info, encoder);
  let shard = 0, total = 0;
  const flushShard = async () => {
    if (rows.length > 0) await rows.write(`${dir}/${tokenShardName(shard++)}`);
  };
  await encodeBatches(loader, encoder, progress, async (row, ids) => {
    rows.push(row, ids);
    total++;
    if (rows.length === perShard) await flushShard();
  });
  await flushShard();
  return { total, shards: shard };
}

/** A process's share of a split source: parts rank, rank + size, …, read one after another. */
interface Share {
  source: SampleSource;
  /** Indices of this rank's parts among all. */
  parts: number[];
  /** The part (an index into `parts`) a sample of the share's stream came from. */
  partOf(sample: number): number;
}

function shareSource(all: SampleSource[], comm: Collective): Share {
  const parts = all.map((_, j) => j).filter((j) => j % comm.size === comm.rank);
  // Where each part starts in the share's stream, recorded as the stream reaches it.
  const starts: number[] = [];
  let read = 0, current = 0;
  return {
    parts,
    source: {
      description: `part ${comm.rank} of ${comm.size}`,
      async *samples() {
        for (const [k, j] of parts.entries()) {
          starts[k] = read;
          for await (const s of all[j].samples()) {
            read++;
            yield s;
          }
        }
      },
      split: () => {
        throw new Error("a share is not split again");
      },
    },
    // Samples are asked for in stream order, so the answer only moves forward.
    partOf(sample: number) {
      while (current + 1 < starts.length && starts[current + 1] <= sample) current++;
      return current;
    },
  };
}

/**
 * Several processes: this rank encodes its parts of the source, one file of rows per part under
 * DIR/parts; the part counts are summed over the ranks, and then every rank writes its token
 * shards (shard k for k ≡ rank mod size) from the parts' files: the same rows, in the same order
 * and shards, as one process writes. The parts are removed once every rank has finished.
 */
async function tokenizeShare(
  loader: Loader,
  share: Share,
  nParts: number,
  comm: Collective,
  encoder: Encoder,
  info: TokenShardInfo,
  dir: string,
  perShard: number,
  progress: Progress | null,
): Promise<{ total: number; shards: number }> {
  const { tokenShardName, writeTokenShard, readTokenShard } = await import(
    "../data/token_shards.ts"
  );
  const { L, T } = encoder;
  const partsDir = `${dir}/parts`;
  const partPath = (j: number) => `${partsDir}/${String(j).padStart(6, "0")}.safetensors`;
  if (comm.rank === 0) Deno.mkdirSync(partsDir, { recursive: true });
  await comm.barrier();
  // Counts are summed as f32: exact below 2^24 rows a part.
  const counts = new Float32Array(nParts);
  const rows = new ShardRows(info, encoder);
  let part = -1;
  const flushPart = async () => {
    if (rows.length === 0) return;
    const j = share.parts[part];
    if (rows.length >= 1 << 24) throw new UserError(`part ${j} holds 2^24 images or more`);
    counts[j] = rows.length;
    await rows.write(partPath(j));
  };
  await encodeBatches(loader, encoder, progress, async (row, ids, batch, i) => {
    const k = share.partOf(batch.samples[i]);
    if (k !== part) {
      await flushPart();
      part = k;
    }
    rows.push(row, ids.slice());
  });
  await flushPart();
  // Also the barrier after which every part's file is written.
  await comm.allReduceSum(counts);
  const starts = new Array<number>(nParts + 1).fill(0);
  counts.forEach((n, j) => (starts[j + 1] = starts[j] + n));
  const total = starts[nParts], shards = Math.ceil(total / perShard);
  let cached: { j: number; indices: Int32Array; textIds: Int32Array } | null = null;
  const readPart = async (j: number) => {
    if (cached?.j !== j) {
      const p = await readTokenShard(partPath(j));
      cached = { j, indices: p.indices, textIds: p.textIds };
    }
    return cached;
  };
  for (let k = comm.rank; k < shards; k += comm.size) {
    const from = k * perShard, to = Math.min(total, from + perShard);
    const indices = new Int32Array((to - from) * L), textIds = new Int32Array((to - from) * T);
    for (let j = 0; j < nParts; j++) {
      const a = Math.max(from, starts[j]), b = Math.min(to, starts[j + 1]);
      if (a >= b) continue;
      const p = await readPart(j);
      const at = a - starts[j], n = b - a;
      indices.set(p.indices.subarray(at * L, (at + n) * L), (a - from) * L);
      textIds.set(p.textIds.subarray(at * T, (at + n) * T), (a - from) * T);
    }
    await writeTokenShard(`${dir}/${tokenShardName(k)}`, info, indices, textIds);
  }
  // Every shard is written: rank 0 removes the parts (and then publishes the folder).
  await comm.barrier();
  if (comm.rank === 0) Deno.removeSync(partsDir, { recursive: true });
  return { total, shards };
}
