// The training stream: samples of a source, reordered per epoch (shards permuted, then a
// seeded shuffle buffer as webdataset's), decoded several at a time, and grouped in batches of
// pixels and text ids. Each batch carries the position after it, and a loader opened at that
// position continues with exactly the samples that were still to come.
import { UserError } from "../errors.ts";
import { CorruptImage, decodeImage, pixelsToFloatNCHW } from "./images.ts";
import { deriveSeed, mulberry32 } from "./random.ts";
import { SkipReport } from "./skips.ts";
import { openSource, type RawSample, type SampleSource } from "./sources.ts";
import { mapOrdered, shuffleBuffer } from "./stream.ts";
import { captionIds } from "./text.ts";

/** Where a stream stands: `sample` samples of epoch `epoch` have been consumed. */
export interface LoaderPosition {
  epoch: number;
  sample: number;
}

export interface LoaderOptions {
  /** Shard pattern, shard directory, image folder or manifest (see openSource). */
  source: string;
  batchSize: number;
  /** Images are resized (shorter side) and centre-cropped to size × size. */
  imageSize: number;
  /** Text ids per caption (T of DESIGN.md §4). */
  textLength: number;
  seed?: number;
  /** Samples held for shuffling; 0 keeps the stored order (and the shard order). */
  shuffleBuffer?: number;
  /** Epochs to run; Infinity for an endless stream. */
  epochs?: number;
  /** Resume here (a batch's `position`). */
  position?: LoaderPosition;
  /** "uint8": NHWC bytes; "float32": NCHW in [-1, 1]. */
  pixels?: "uint8" | "float32";
  /** Images decoded at once (sharp runs each on its own libvips thread). */
  decodeConcurrency?: number;
  /**
   * Accept an epoch without a sample or a decodable image (a share of a split source, whose
   * samples may all be elsewhere) instead of refusing it.
   */
  allowEmpty?: boolean;
}

export interface Batch {
  /** Samples in this batch (the last of a finite stream may be short). */
  size: number;
  keys: string[];
  captions: string[];
  /** [size, H, W, 3] uint8, or [size, 3, H, W] float32 in [-1, 1]. */
  pixels: Uint8Array | Float32Array;
  /** [size, T] ids, left-padded as DESIGN.md §4. */
  ids: Int32Array;
  /** Each sample's place in its epoch's stream (0-based, skipped samples counted). */
  samples: number[];
  /** The position after this batch: pass it back as `position` to resume. */
  position: LoaderPosition;
}

interface Placed {
  raw: RawSample;
  /** The position after this sample. */
  after: LoaderPosition;
}

interface Decoded extends Placed {
  pixels: Uint8Array | null;
}

export class Loader {
  readonly options: Required<Omit<LoaderOptions, "position">> & { position: LoaderPosition };
  readonly source: SampleSource;
  readonly skipped: SkipReport;
  /** Images decoded so far (every epoch counted); with `skipped`, the share of bad samples. */
  decoded = 0;

  constructor(options: LoaderOptions, source: SampleSource, skipped: SkipReport) {
    // An option given as undefined takes its default.
    const given = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
    this.options = {
      seed: 0,
      shuffleBuffer: 1000,
      epochs: Infinity,
      position: { epoch: 0, sample: 0 },
      pixels: "uint8",
      decodeConcurrency: 4,
      allowEmpty: false,
      ...given as LoaderOptions,
    };
    this.source = source;
    this.skipped = skipped;
  }

  /** Raw samples in stream order from the start position on, each with the position after it. */
  async *#placed(): AsyncGenerator<Placed> {
    const { seed, shuffleBuffer: buffer, epochs, position, allowEmpty } = this.options;
    for (let epoch = position.epoch; epoch < epochs; epoch++) {
      // The order of an epoch depends only on (seed, epoch), so replaying it reproduces it.
      const orderRng = buffer > 0 ? mulberry32(deriveSeed(seed, "order", epoch)) : undefined;
      const bufferRng = mulberry32(deriveSeed(seed, "buffer", epoch));
      const skip = epoch === position.epoch ? position.sample : 0;
      let sample = 0;
      for await (const raw of shuffleBuffer(this.source.samples(orderRng), buffer, bufferRng)) {
        sample++;
        // Resuming re-reads the consumed part of the epoch but never decodes it.
        if (sample > skip) yield { raw, after: { epoch, sample } };
      }
      if (sample === 0 && !allowEmpty) {
        throw new UserError(`no usable samples in ${this.options.source}`);
      }
    }
  }

  async #decode(p: Placed): Promise<Decoded> {
    let bytes: Uint8Array;
    try {
      bytes = typeof p.raw.image === "string" ? await Deno.readFile(p.raw.image) : p.raw.image;
    } catch {
      this.skipped.record("unreadable file", p.raw.key);
      return { ...p, pixels: null };
    }
    try {
      return { ...p, pixels: await decodeImage(bytes, this.options.imageSize) };
    } catch (e) {
      if (!(e instanceof CorruptImage)) throw e;
      this.skipped.record("corrupt image", p.raw.key);
      return { ...p, pixels: null };
    }
  }

  /** The batches, from the start position to the end of the last epoch. */
  async *batches(): AsyncGenerator<Batch> {
    const { batchSize, decodeConcurrency } = this.options;
    let group: Decoded[] = [];
    let last: LoaderPosition = this.options.position;
    const decoded = mapOrdered(this.#placed(), (p) => this.#decode(p), decodeConcurrency);
    // An epoch read from its start in which nothing decodes would repeat forever: refuse it.
    const start = this.options.position;
    let epoch = start.epoch, good = 0, fromStart = start.sample === 0;
    const refuseEmptyEpoch = () => {
      if (fromStart && good === 0 && !this.options.allowEmpty) {
        throw new UserError(
          `no image of ${this.options.source} could be decoded (${this.skipped.summary()})`,
        );
      }
    };
    for await (const d of decoded) {
      if (d.after.epoch !== epoch) {
        refuseEmptyEpoch();
        [epoch, good, fromStart] = [d.after.epoch, 0, true];
      }
      last = d.after;
      if (!d.pixels) continue;
      good++;
      this.decoded++;
      group.push(d);
      if (group.length === batchSize) {
        yield this.#batch(group, last);
        group = [];
      }
    }
    if (group.length > 0) yield this.#batch(group, last);
    if (last !== start) refuseEmptyEpoch();
  }

  #batch(group: Decoded[], position: LoaderPosition): Batch {
    const { imageSize: s, textLength: T } = this.options;
    const n = group.length;
    const bytes = new Uint8Array(n * s * s * 3);
    const ids = new Int32Array(n * T);
    group.forEach((d, i) => {
      bytes.set(d.pixels!, i * s * s * 3);
      captionIds(d.raw.caption, T, ids.subarray(i * T, (i + 1) * T));
    });
    return {
      size: n,
      keys: group.map((d) => d.raw.key),
      captions: group.map((d) => d.raw.caption),
      pixels: this.options.pixels === "float32" ? pixelsToFloatNCHW(bytes, n, s) : bytes,
      ids,
      samples: group.map((d) => d.after.sample - 1),
      position: { ...position },
    };
  }

  [Symbol.asyncIterator](): AsyncGenerator<Batch> {
    return this.batches();
  }
}

/** Opens a loader; a missing path or empty source is a UserError here, before any batch. */
export function openLoader(options: LoaderOptions): Loader {
  for (const k of ["batchSize", "imageSize", "textLength"] as const) {
    if (!Number.isInteger(options[k]) || options[k] < 1) {
      throw new UserError(`loader: ${k} must be a positive integer, got ${options[k]}`);
    }
  }
  const skipped = new SkipReport();
  return new Loader(options, openSource(options.source, skipped), skipped);
}
