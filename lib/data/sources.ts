// One interface over the three kinds of image–caption sets: webdataset shards, a folder of
// images with .txt captions, and a CSV/TSV/JSONL manifest. Each yields raw (undecoded) samples
// of one epoch in an order set by an optional seeded generator.
import { UserError } from "../errors.ts";
import { type FolderItem, hasImages, listFolder } from "./folder.ts";
import { IMAGE_EXTENSIONS } from "./images.ts";
import { isManifest, readManifest } from "./manifest.ts";
import { type Rng, shuffleInPlace } from "./random.ts";
import { listShards, readShard, tarsInDirectory } from "./shards.ts";
import type { SkipReport } from "./skips.ts";

export interface RawSample {
  key: string;
  caption: string;
  /** Encoded image bytes, or the path of an image file, read only when the sample is decoded. */
  image: Uint8Array | string;
}

export interface SampleSource {
  /** What was opened, for messages: "3 shards", "1204 images in photos/". */
  description: string;
  /**
   * One epoch of samples. With `rng`, shards (or, for folders and manifests, items) come in a
   * shuffled order; without, in their stored order.
   */
  samples(rng?: Rng): AsyncIterable<RawSample>;
  /**
   * The source cut into parts whose samples, read in order without `rng`, are this source's in
   * its stored order: one part per shard, or for folders and manifests at least `min` chunks of
   * items where there are that many. Bad samples met while reading a part go to `skips`.
   */
  split(skips: SkipReport, min: number): SampleSource[];
}

/** Items per part when a folder or manifest is split (more where `min` asks for more parts). */
const ITEMS_PER_PART = 1000;

const utf8 = new TextDecoder();

function shardSource(paths: string[], skips: SkipReport): SampleSource {
  return {
    split: (partSkips) => paths.map((p) => shardSource([p], partSkips)),
    description: `${paths.length} shard${paths.length === 1 ? "" : "s"}`,
    async *samples(rng?: Rng) {
      const order = rng ? shuffleInPlace([...paths], rng) : paths;
      for (const path of order) {
        for await (const s of readShard(path, skips)) {
          const ext = IMAGE_EXTENSIONS.find((e) => s.files[e]);
          if (!ext) {
            skips.record("missing image", s.key);
            continue;
          }
          if (!s.files.txt) {
            skips.record("missing caption", s.key);
            continue;
          }
          yield { key: s.key, caption: utf8.decode(s.files.txt).trim(), image: s.files[ext] };
        }
      }
    },
  };
}

function itemSource(items: FolderItem[], description: string): SampleSource {
  return {
    split(_skips, min) {
      const parts = Math.min(items.length, Math.max(min, Math.ceil(items.length / ITEMS_PER_PART)));
      const size = Math.ceil(items.length / parts);
      const out: SampleSource[] = [];
      for (let at = 0; at < items.length; at += size) {
        const chunk = items.slice(at, at + size);
        out.push(itemSource(chunk, `items ${at + 1}–${at + chunk.length} of ${description}`));
      }
      return out;
    },
    description,
    async *samples(rng?: Rng) {
      const order = rng ? shuffleInPlace([...items], rng) : items;
      for (const it of order) yield { key: it.key, caption: it.caption, image: it.imagePath };
    },
  };
}

function statOrNull(path: string): Deno.FileInfo | null {
  try {
    return Deno.statSync(path);
  } catch {
    return null;
  }
}

/**
 * Opens a source from its spec: a manifest file (.csv/.tsv/.jsonl), a directory of .tar shards,
 * a folder of images, or shard patterns (`data/{00000..00331}.tar`, `a.tar::b.tar`). A missing
 * path or a source with no samples is a UserError. Bad samples go to `skips`.
 */
export function openSource(spec: string, skips: SkipReport): SampleSource {
  const info = statOrNull(spec);
  if (info?.isFile && isManifest(spec)) {
    const items = readManifest(spec, skips);
    if (items.length === 0) throw new UserError(`manifest ${spec} lists no captioned images`);
    return itemSource(items, `${items.length} images listed in ${spec}`);
  }
  if (info?.isDirectory && tarsInDirectory(spec).length === 0) {
    if (!hasImages(spec)) throw new UserError(`${spec} holds no .tar shards and no images`);
    const items = listFolder(spec, skips);
    if (items.length === 0) {
      throw new UserError(`${spec} holds images but none has a .txt caption beside it`);
    }
    return itemSource(items, `${items.length} images in ${spec}`);
  }
  return shardSource(listShards(spec), skips);
}
