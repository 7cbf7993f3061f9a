// `vmambar data shapes|emoji|folder|stats`: make image–caption shards and look at them.
import { join } from "node:path";
import { UserError } from "../errors.ts";
import {
  type CommandSpec,
  intFlag,
  numberFlag,
  numberListFlag,
  parseCommand,
  type Values,
} from "./args.ts";
import { SkipReport } from "../data/skips.ts";
import type { SceneMix } from "../data/shapes.ts";
import { prepareOutputFile, prepareOutputFolder, stagedFolder } from "./output.ts";

const SUBCOMMANDS: Record<string, { summary: string; run: (argv: string[]) => Promise<void> }> = {
  shapes: { summary: "render the synthetic shapes world (DESIGN.md §6) as shards", run: shapes },
  emoji: {
    summary: "import an emoji-datasource image set as train and validation shards",
    run: emoji,
  },
  folder: {
    summary: "convert a folder of images + .txt captions (or a manifest) to shards",
    run: folder,
  },
  stats: {
    summary: "count samples and caption lengths; --sheet writes a contact sheet",
    run: stats,
  },
};

function usage(): string {
  return [
    "usage: vmambar data <shapes|emoji|folder|stats> [options]",
    "",
    "Make and inspect webdataset shards (img2dataset layout: 00000.tar holding",
    "000000000.png|jpg, .txt caption, .json metadata).",
    "",
    "subcommands:",
    ...Object.entries(SUBCOMMANDS).map(([k, c]) => `  ${k.padEnd(8)}${c.summary}`),
    "",
    "Run `vmambar data <subcommand> --help` for its options.",
  ].join("\n");
}

export async function main(argv: string[]): Promise<void> {
  const [name, ...rest] = argv;
  if (!name || name === "-h" || name === "--help") {
    console.log(usage());
    return;
  }
  const sub = SUBCOMMANDS[name];
  if (!sub) {
    throw new UserError(
      `unknown subcommand '${name}' (one of: ${Object.keys(SUBCOMMANDS).join(", ")})`,
    );
  }
  try {
    await sub.run(rest);
  } catch (e) {
    // main prints "vmambar data: …"; the subcommand's name completes the prefix.
    if (e instanceof UserError) throw new UserError(`${name}: ${e.message}`);
    throw e;
  }
}

/**
 * Sets `multiple: false` on every option: parseCommand forwards `multiple: undefined`, which
 * node:util's parseArgs rejects.
 */
function singleValued(spec: CommandSpec): CommandSpec {
  const options = Object.fromEntries(
    Object.entries(spec.options).map(([k, o]) => [k, { multiple: false, ...o }]),
  );
  return { ...spec, options };
}

function stringFlag(values: Values, name: string): string {
  const v = values[name];
  if (typeof v !== "string" || v === "") throw new UserError(`--${name} is required`);
  return v;
}

function reportSkips(skips: SkipReport): void {
  const line = skips.summary();
  if (line) console.error(line);
}

/** The largest image side the data commands make (a 4096² RGB image is 48 MB). */
const MAX_SIDE = 4096;

const outOption = {
  type: "string",
  value: "DIR",
  help: "output directory for the shards",
} as const;
const forceOption = { type: "boolean", help: "replace shards already in --out" } as const;
const perShardOption = {
  type: "string",
  value: "N",
  default: "10000",
  help: "samples per shard",
} as const;

/** The default --workers of data shapes is min(CPU cores, this). */
const MAX_DEFAULT_WORKERS = 8;
/** The most --workers data shapes accepts. */
const MAX_WORKERS = 64;

const shapesSpec: CommandSpec = singleValued({
  name: "data shapes",
  usage: "data shapes --n N --size 64 --out DIR [--seed S] [--val N] [--edges hard|smooth|mixed] " +
    "[--workers N] [--pairs R] [--objects W1,W2,W3]",
  summary: "Render the shapes world: captioned images of circles, squares and triangles on a 3×3 " +
    "grid, deterministic for a seed, with every image's objects in DIR/key.json.",
  options: {
    n: { type: "string", value: "N", default: "1000", help: "training images" },
    size: { type: "string", value: "PX", default: "64", help: "image side in pixels" },
    out: outOption,
    seed: { type: "string", value: "S", default: "0", help: "generator seed" },
    val: {
      type: "string",
      value: "N",
      default: "0",
      help: "validation images, written to DIR/val",
    },
    edges: {
      type: "string",
      value: "E",
      default: "hard",
      help: "hard (pixel centres), smooth (anti-aliased) or mixed (alternating) edges",
    },
    pairs: {
      type: "string",
      value: "R",
      default: "0.15",
      help: 'share of scenes with two objects of one colour and shape ("two purple circles")',
    },
    objects: {
      type: "string",
      value: "W1,W2,W3",
      default: "1,1,1",
      help: "relative weights of 1, 2 and 3 objects in the other scenes",
    },
    "per-shard": perShardOption,
    workers: {
      type: "string",
      value: "N",
      help: `Web Workers that render and encode the images (default: min(CPU cores, ` +
        `${MAX_DEFAULT_WORKERS})); 1 renders in this thread. The output is the same for any N`,
    },
    force: forceOption,
  },
  more: "example: vmambar data shapes --n 20000 --val 1000 --out data/shapes",
});

async function shapes(argv: string[]): Promise<void> {
  const parsed = parseCommand(shapesSpec, argv);
  if (!parsed) return;
  const v = parsed.values;
  const out = stringFlag(v, "out");
  const n = intFlag(v, "n", 1, 1e8), side = intFlag(v, "size", 6, MAX_SIDE);
  const seed = intFlag(v, "seed", 0, 2 ** 32 - 1);
  const val = intFlag(v, "val", 0, 1e8), perShard = intFlag(v, "per-shard", 1, 1e6);
  const edges = stringFlag(v, "edges");
  const workers = v.workers === undefined
    ? Math.max(1, Math.min(navigator.hardwareConcurrency ?? 1, MAX_DEFAULT_WORKERS))
    : intFlag(v, "workers", 1, MAX_WORKERS);
  const { prepareOutputDirectory } = await import("../data/shards.ts");
  const { EDGES, writeShapes } = await import("../data/shapes.ts");
  if (!(EDGES as readonly string[]).includes(edges)) {
    throw new UserError(`--edges must be one of ${EDGES.join(", ")}, got ${edges}`);
  }
  const style = edges as (typeof EDGES)[number];
  const mix = sceneMix(stringFlag(v, "pairs"), stringFlag(v, "objects"));
  const t0 = performance.now();
  prepareOutputFolder(out, { flag: "--out" });
  prepareOutputDirectory(out, v.force === true, ["key.json"]);
  if (val > 0) prepareOutputDirectory(join(out, "val"), v.force === true, ["key.json"]);
  const stage = stagedFolder(out);
  const train = await writeShapes({
    n,
    side,
    seed,
    out: stage.path,
    split: "train",
    perShard,
    edges: style,
    workers,
    mix,
  });
  let line = `wrote ${train.count} images in ${train.written.length} shard(s) to ${out}`;
  if (val > 0) {
    await Deno.mkdir(join(stage.path, "val"));
    const valOut = join(stage.path, "val");
    await writeShapes({
      n: val,
      side,
      seed,
      out: valOut,
      split: "val",
      perShard,
      edges: style,
      workers,
      mix,
    });
    line += `, ${val} validation images to ${join(out, "val")}`;
  }
  stage.publish();
  console.log(`${line} (${((performance.now() - t0) / 1000).toFixed(1)} s); objects in key.json`);
}

/** --pairs and --objects as a scene mix, or a one-line error naming the flag. */
export function sceneMix(pairs: string, objects: string): SceneMix {
  const v = { pairs, objects };
  const rate = numberFlag(v, "pairs", { min: 0, max: 1 });
  const w = numberListFlag(v, "objects");
  if (w.length !== 3 || w[0] + w[1] + w[2] === 0) {
    throw new UserError(
      `--objects must be three weights (for 1, 2 and 3 objects), not all zero, got ${objects}`,
    );
  }
  return { pairs: rate, objects: [w[0], w[1], w[2]] };
}

const emojiSpec: CommandSpec = singleValued({
  name: "data emoji",
  usage: "data emoji --set twitter|google|apple|facebook --size 64 --out DIR",
  summary: "Import the 64-px PNGs of npm package emoji-datasource-<set> (the version pinned in " +
    "deno.json, fetched into ~/.cache/vmambar or $VMAMBAR_CACHE on first use), " +
    "captioned from emoji.json names, as training shards in DIR and a held-out shard in DIR/val.",
  options: {
    set: {
      type: "string",
      value: "SET",
      default: "twitter",
      help: "twitter, google, apple or facebook",
    },
    size: { type: "string", value: "PX", default: "64", help: "image side in pixels (on white)" },
    out: outOption,
    "val-fraction": { type: "string", value: "F", default: "0.1", help: "share of emoji held out" },
    seed: { type: "string", value: "S", default: "0", help: "seed of the train/validation split" },
    force: forceOption,
  },
});

async function emoji(argv: string[]): Promise<void> {
  const parsed = parseCommand(emojiSpec, argv);
  if (!parsed) return;
  const v = parsed.values;
  const { EMOJI_SETS, emojiImages, loadEmojiSet, splitEmoji, writeEmojiShards } = await import(
    "../data/emoji.ts"
  );
  const set = v.set as (typeof EMOJI_SETS)[number];
  if (!EMOJI_SETS.includes(set)) {
    throw new UserError(`--set must be one of ${EMOJI_SETS.join(", ")}, got ${set}`);
  }
  const out = stringFlag(v, "out");
  const side = intFlag(v, "size", 1, MAX_SIDE), seed = intFlag(v, "seed", 0, 2 ** 32 - 1);
  const valFraction = numberFlag(v, "val-fraction", { above: 0, max: 0.9 });
  const { prepareOutputDirectory } = await import("../data/shards.ts");
  prepareOutputFolder(join(out, "val"), { flag: "--out" });
  prepareOutputDirectory(out, v.force === true);
  prepareOutputDirectory(join(out, "val"), v.force === true);
  const { records, imageDir } = await loadEmojiSet(set);
  const { train, val } = splitEmoji(emojiImages(records, set, imageDir), valFraction, seed);
  const skips = new SkipReport();
  const nTrain = await writeEmojiShards(train, out, side, "emoji train", skips);
  const nVal = await writeEmojiShards(val, join(out, "val"), side, "emoji val", skips);
  console.log(
    `wrote ${nTrain} training images to ${out} and ${nVal} held-out images to ${join(out, "val")}`,
  );
  reportSkips(skips);
}

const folderSpec: CommandSpec = singleValued({
  name: "data folder",
  usage: "data folder --in DIR|MANIFEST --out DIR --size S",
  summary:
    "Convert images with same-name .txt captions (or a CSV/TSV/JSONL manifest with path and " +
    "caption columns) to shards, resized (shorter side) and centre-cropped to S × S.",
  options: {
    in: { type: "string", value: "DIR", help: "image folder, or .csv/.tsv/.jsonl manifest" },
    out: outOption,
    size: { type: "string", value: "PX", default: "256", help: "image side in pixels" },
    format: { type: "string", value: "FMT", default: "jpg", help: "jpg, png or webp" },
    quality: { type: "string", value: "Q", default: "95", help: "jpg/webp quality" },
    "per-shard": perShardOption,
    force: forceOption,
  },
});

async function folder(argv: string[]): Promise<void> {
  const parsed = parseCommand(folderSpec, argv);
  if (!parsed) return;
  const v = parsed.values;
  const input = stringFlag(v, "in"), out = stringFlag(v, "out");
  const side = intFlag(v, "size", 1, MAX_SIDE),
    quality = intFlag(v, "quality", 1, 100),
    perShard = intFlag(v, "per-shard", 1, 1e6);
  const format = v.format as "jpg" | "png" | "webp";
  if (!["jpg", "png", "webp"].includes(format)) {
    throw new UserError(`--format must be jpg, png or webp, got ${format}`);
  }
  try {
    Deno.statSync(input);
  } catch {
    throw new UserError(`--in ${input}: no such file or directory`);
  }
  const { openSource } = await import("../data/sources.ts");
  const { convertToShards } = await import("../data/convert.ts");
  const { prepareOutputDirectory } = await import("../data/shards.ts");
  const skips = new SkipReport();
  const source = openSource(input, skips);
  prepareOutputFolder(out, { flag: "--out" });
  prepareOutputDirectory(out, v.force === true);
  const writer = await convertToShards(source, skips, { out, side, format, quality, perShard });
  if (writer.count === 0) {
    throw new UserError(
      `no image of ${input} could be converted, nothing written (${skips.summary() ?? "empty"})`,
    );
  }
  console.log(
    `wrote ${writer.count} images from ${source.description} in ${writer.written.length} shard(s) to ${out}`,
  );
  reportSkips(skips);
}

const statsSpec: CommandSpec = singleValued({
  name: "data stats",
  usage: "data stats SOURCE [--sheet FILE]",
  summary: "Count a source's samples (shards, a shard directory or pattern, an image folder or a " +
    "manifest), show its caption lengths, and with --sheet write a contact sheet PNG of its " +
    "first samples.",
  options: {
    sheet: {
      type: "string",
      value: "FILE",
      help: "write a contact sheet of the first samples to FILE (a PNG)",
    },
    force: { type: "boolean", help: "replace an existing --sheet file" },
    samples: { type: "string", value: "N", default: "16", help: "samples on the contact sheet" },
    thumb: {
      type: "string",
      value: "PX",
      default: "64",
      help: "thumbnail side on the contact sheet",
    },
    T: { type: "string", value: "T", default: "96", help: "text length to report truncation at" },
    check: { type: "boolean", help: "decode every image to find corrupt ones (slower)" },
  },
  allowPositionals: true,
  more: "example: vmambar data stats 'data/cc3m/{00000..00331}.tar' --check",
});

async function stats(argv: string[]): Promise<void> {
  const parsed = parseCommand(statsSpec, argv);
  if (!parsed) return;
  const v = parsed.values;
  if (parsed.positionals.length !== 1) {
    throw new UserError("give one SOURCE (see vmambar data stats --help)");
  }
  const spec = parsed.positionals[0];
  const sheet = typeof v.sheet === "string" ? v.sheet : null;
  const keep = sheet ? intFlag(v, "samples", 1, 1024) : 0;
  const thumb = intFlag(v, "thumb", 4, 1024), T = intFlag(v, "T", 2, 1 << 16);
  if (sheet) prepareOutputFile(sheet, { force: v.force === true, flag: "--sheet" });
  const { openSource } = await import("../data/sources.ts");
  const { collectStats, contactSheet, formatStats } = await import("../data/stats.ts");
  const skips = new SkipReport();
  const source = openSource(spec, skips);
  const s = await collectStats(source, skips, { keep, checkImages: v.check === true });
  if (s.count === 0) throw new UserError(`no usable samples in ${spec}`);
  console.log(`${spec}: ${source.description}`);
  console.log(formatStats(s, T));
  if (sheet) {
    await Deno.writeFile(sheet, await contactSheet(s.firstSamples, thumb, skips));
    console.log(`contact sheet of ${s.firstSamples.length} samples: ${sheet}`);
  }
  reportSkips(skips);
}
