// The synthetic shapes world of DESIGN.md §6: a one-colour background and one to three filled
// circles, squares or up-pointing triangles, small (⅙ of the side) or large (⅓), each in its
// own cell of a 3 × 3 grid, with a caption from a small grammar. Everything is drawn from a
// seeded generator, and each image has its own stream (seed, split, index), so image i is the
// same whatever --n is.
import { join } from "node:path";
import { UserError } from "../errors.ts";
import { encodePng } from "./png.ts";
import { Progress } from "./progress.ts";
import { deriveSeed, mulberry32, pick, randInt, type Rng, shuffleInPlace } from "./random.ts";
import { DEFAULT_PER_SHARD, packSample, sampleKey, ShardWriter } from "./shards.ts";
import { concat } from "./tar.ts";

export const PALETTE = {
  red: [220, 40, 40],
  green: [40, 170, 60],
  blue: [40, 80, 220],
  yellow: [240, 210, 40],
  purple: [150, 60, 200],
  orange: [245, 140, 30],
  white: [245, 245, 245],
  black: [20, 20, 20],
} as const satisfies Record<string, readonly [number, number, number]>;

export type Colour = keyof typeof PALETTE;
export const COLOURS = Object.keys(PALETTE) as Colour[];
export const SHAPES = ["circle", "square", "triangle"] as const;
export type Shape = typeof SHAPES[number];
export const SIZES = ["small", "large"] as const;
export type Size = typeof SIZES[number];
/** Row-major, so cell i is at row ⌊i/3⌋, column i mod 3. */
export const CELLS = [
  "top left",
  "top",
  "top right",
  "left",
  "center",
  "right",
  "bottom left",
  "bottom",
  "bottom right",
] as const;
export type Cell = typeof CELLS[number];

/** One object as key.json records it. */
export interface ShapeObject {
  colour: Colour;
  shape: Shape;
  size: Size;
  cell: Cell;
  /** Centre of the object's bounding box, in pixels (x right, y down). */
  centre: [number, number];
  /** Width and height of the bounding box in pixels: side/6 or side/3. */
  extent: number;
  rgb: readonly [number, number, number];
}

export interface Scene {
  background: Colour;
  objects: ShapeObject[];
  caption: string;
}

/**
 * How scenes are drawn: `pairs` is the share of scenes with two objects of one colour and shape
 * ("two purple circles"); the rest have 1, 2 or 3 objects of distinct colours, in proportion to
 * `objects`. A training set can lean towards the scenes a model finds hard (`data shapes --pairs
 * --objects`); the default is the world of DESIGN.md §6.
 */
export interface SceneMix {
  pairs: number;
  objects: readonly [number, number, number];
}

export const DEFAULT_MIX: SceneMix = { pairs: 0.15, objects: [1, 1, 1] };

/** How many distinct-colour objects a scene gets: 1 + randInt(3) for equal weights, as before. */
function objectCount(rng: Rng, weights: SceneMix["objects"]): number {
  if (weights[0] === weights[1] && weights[1] === weights[2]) return 1 + randInt(rng, 3);
  let u = rng() * (weights[0] + weights[1] + weights[2]);
  for (let i = 0; i < 2; i++) {
    if (u < weights[i]) return i + 1;
    u -= weights[i];
  }
  return 3;
}

function placeObject(colour: Colour, shape: Shape, size: Size, cellIndex: number, side: number) {
  const cell = side / 3;
  const round = (v: number) => Math.round(v * 1000) / 1000;
  return {
    colour,
    shape,
    size,
    cell: CELLS[cellIndex],
    centre: [round((cellIndex % 3 + 0.5) * cell), round((Math.floor(cellIndex / 3) + 0.5) * cell)],
    extent: round(size === "small" ? side / 6 : side / 3),
    rgb: PALETTE[colour],
  } satisfies ShapeObject;
}

/**
 * Draws a scene. Colours differ from the background and from each other, except in a "pair"
 * scene: DESIGN.md §6 names "two purple circles" as a caption, which needs two objects of one
 * colour and shape, so a small share of scenes are such pairs.
 */
export function sampleScene(rng: Rng, side: number, mix: SceneMix = DEFAULT_MIX): Scene {
  const background = pick(rng, COLOURS);
  const free = COLOURS.filter((c) => c !== background);
  const cells = shuffleInPlace([...CELLS.keys()], rng);
  let objects: ShapeObject[];
  if (rng() < mix.pairs) {
    const colour = pick(rng, free), shape = pick(rng, SHAPES), size = pick(rng, SIZES);
    objects = [0, 1].map((i) => placeObject(colour, shape, size, cells[i], side));
  } else {
    const colours = shuffleInPlace(free, rng);
    const n = objectCount(rng, mix.objects);
    objects = Array.from(
      { length: n },
      (_, i) => placeObject(colours[i], pick(rng, SHAPES), pick(rng, SIZES), cells[i], side),
    );
  }
  // Reading order (top to bottom, left to right) makes captions and key.json easy to follow.
  objects.sort((a, b) => CELLS.indexOf(a.cell) - CELLS.indexOf(b.cell));
  return { background, objects, caption: describeScene(rng, background, objects) };
}

/**
 * Whether point (px, py) lies inside the object, as a function made once per object (the
 * renderer calls it up to 16 times a pixel).
 */
function coverage(o: ShapeObject): (px: number, py: number) => boolean {
  const [cx, cy] = o.centre;
  const h = o.extent / 2, hh = h * h, mh = -h;
  if (o.shape === "circle") {
    return (px, py) => {
      const dx = px - cx, dy = py - cy;
      return dx * dx + dy * dy <= hh;
    };
  }
  if (o.shape === "square") return (px, py) => Math.abs(px - cx) < h && Math.abs(py - cy) < h;
  // Triangle pointing up: apex at the top middle, base along the bottom edge of the box.
  return (px, py) => {
    const dy = py - cy;
    return dy >= mh && dy < h && Math.abs(px - cx) <= (dy + h) / 2;
  };
}

/** Edge rendering: "hard" samples each pixel at its centre; "smooth" blends by coverage. */
export type Edges = "hard" | "smooth";
export const EDGES = ["hard", "smooth", "mixed"] as const;

/** Sub-pixel samples per axis for smooth edges (16 coverage levels per pixel). */
const SUPERSAMPLE = 4;

/**
 * Renders a scene as side × side HWC RGB. Hard edges sample each pixel at its centre; smooth
 * edges (anti-aliased) mix each object's colour in by the share of 4 × 4 sub-pixel samples it
 * covers, objects painted in order over the background.
 */
export function renderScene(scene: Scene, side: number, edges: Edges = "hard"): Uint8Array {
  const rgb = new Uint8Array(side * side * 3);
  const bg = PALETTE[scene.background];
  const [r, g, b] = bg; // element writes: a TypedArray.set per pixel is several times slower
  for (let at = 0; at < rgb.length; at += 3) {
    rgb[at] = r;
    rgb[at + 1] = g;
    rgb[at + 2] = b;
  }
  const n = edges === "smooth" ? SUPERSAMPLE : 1;
  // The outermost sub-pixel sample offsets (0.5/n and (n-0.5)/n, as the loop below computes).
  const lo = 0.5 / n, hi = (n - 0.5) / n;
  for (const o of scene.objects) {
    const covers = coverage(o);
    const h = o.extent / 2;
    const x0 = Math.max(0, Math.floor(o.centre[0] - h)),
      x1 = Math.min(side, Math.ceil(o.centre[0] + h));
    const y0 = Math.max(0, Math.floor(o.centre[1] - h)),
      y1 = Math.min(side, Math.ceil(o.centre[1] + h));
    for (let y = y0; y < y1; y++) {
      for (let x = x0; x < x1; x++) {
        let hits = 0;
        if (
          n > 1 && covers(x + lo, y + lo) && covers(x + hi, y + lo) &&
          covers(x + lo, y + hi) && covers(x + hi, y + hi)
        ) {
          // Every shape is convex, and covers() is monotone in |dx| and in dy even as rounded
          // floats, so the four corner samples covered means all n × n are: same bytes.
          hits = n * n;
        } else {
          for (let sy = 0; sy < n; sy++) {
            for (let sx = 0; sx < n; sx++) {
              if (covers(x + (sx + 0.5) / n, y + (sy + 0.5) / n)) hits++;
            }
          }
        }
        if (hits === 0) continue;
        const a = hits / (n * n), at = 3 * (y * side + x);
        for (let c = 0; c < 3; c++) rgb[at + c] = Math.round(a * o.rgb[c] + (1 - a) * rgb[at + c]);
      }
    }
  }
  return rgb;
}

/** The edges image `index` gets: "mixed" alternates, so both kinds cover every split. */
export function edgesOf(edges: Edges | "mixed", index: number): Edges {
  return edges === "mixed" ? (index % 2 === 0 ? "hard" : "smooth") : edges;
}

// ---------------------------------------------------------------- captions

export function article(next: string): string {
  return /^[aeiou]/.test(next) ? "an" : "a";
}

export function nounPhrase(o: ShapeObject, withSize: boolean): string {
  const words = `${withSize ? `${o.size} ` : ""}${o.colour} ${o.shape}`;
  return `${article(words)} ${words}`;
}

export function cellPhrase(rng: Rng, cell: Cell): string {
  if (cell === "center") return pick(rng, ["in the center", "in the middle"]);
  if (cell === "top" || cell === "bottom") return `at the ${cell}`;
  if (cell === "left" || cell === "right") return pick(rng, [`on the ${cell}`, `at the ${cell}`]);
  return pick(rng, [`in the ${cell}`, `in the ${cell} corner`]);
}

function row(o: ShapeObject): number {
  return Math.floor(CELLS.indexOf(o.cell) / 3);
}

function col(o: ShapeObject): number {
  return CELLS.indexOf(o.cell) % 3;
}

/** A relation that holds between two objects in different cells, e.g. "a above b". */
function relation(rng: Rng, a: ShapeObject, b: ShapeObject, np: (o: ShapeObject) => string) {
  const options: string[] = [];
  if (col(a) < col(b)) {
    options.push(`${np(a)} to the left of ${np(b)}`, `${np(b)} to the right of ${np(a)}`);
  }
  if (col(a) > col(b)) {
    options.push(`${np(b)} to the left of ${np(a)}`, `${np(a)} to the right of ${np(b)}`);
  }
  if (row(a) < row(b)) options.push(`${np(a)} above ${np(b)}`, `${np(b)} below ${np(a)}`);
  if (row(a) > row(b)) options.push(`${np(b)} above ${np(a)}`, `${np(a)} below ${np(b)}`);
  return pick(rng, options);
}

/**
 * Longest caption in bytes: the default model's T = 96 text ids hold BOS, 94 bytes and EOS
 * (DESIGN.md §4), and a cut caption would drop objects it must name.
 */
export const MAX_CAPTION_BYTES = 94;

interface Detail {
  sizes: boolean;
  cells: boolean;
  background: boolean;
}

function captionWith(rng: Rng, background: Colour, objects: ShapeObject[], d: Detail): string {
  const np = (o: ShapeObject) => nounPhrase(o, d.sizes);
  const placed = (o: ShapeObject) => (d.cells ? `${np(o)} ${cellPhrase(rng, o.cell)}` : np(o));
  let text: string;
  const [a, b] = objects;
  if (objects.length === 2 && a.colour === b.colour && a.shape === b.shape) {
    text = `two ${d.sizes ? `${a.size} ` : ""}${a.colour} ${a.shape}s`;
  } else if (objects.length === 1) {
    text = placed(a);
  } else if (objects.length === 2) {
    text = d.cells && rng() < 0.5
      ? `${placed(a)} and ${placed(b)}`
      : rng() < 0.3
      ? `${np(a)} and ${np(b)}`
      : relation(rng, a, b, np);
  } else {
    text = `${placed(objects[0])}, ${placed(objects[1])} and ${placed(objects[2])}`;
  }
  return d.background ? `${text} on ${article(background)} ${background} background` : text;
}

/**
 * A caption naming every object (and the background when it says so). Sizes, cells and the
 * background are each mentioned at random; when the caption would not fit MAX_CAPTION_BYTES,
 * the background, then the cells, then the sizes are left out.
 */
export function describeScene(rng: Rng, background: Colour, objects: ShapeObject[]): string {
  const d: Detail = { sizes: rng() < 0.6, cells: rng() < 0.6, background: rng() < 0.5 };
  const drops: (keyof Detail)[] = ["background", "cells", "sizes"];
  while (true) {
    const text = captionWith(rng, background, objects, d);
    const next = drops.find((k) => d[k]);
    if (new TextEncoder().encode(text).length <= MAX_CAPTION_BYTES || !next) return text;
    d[next] = false;
  }
}

// ---------------------------------------------------------------- writing shards

/** Image `index` of a split: its own generator stream, so it does not depend on --n. */
export function shapesScene(
  seed: number,
  split: string,
  index: number,
  side: number,
  mix: SceneMix = DEFAULT_MIX,
): Scene {
  return sampleScene(mulberry32(deriveSeed(seed, split, index)), side, mix);
}

export interface ShapesOptions {
  n: number;
  side: number;
  seed: number;
  out: string;
  split: string;
  perShard?: number;
  /** Hard or anti-aliased edges, or both alternating (default hard). */
  edges?: Edges | "mixed";
  /**
   * Web Workers that render and encode the images (default 1: all in this thread). The output
   * is byte-identical for any count: the shards and key.json are written here, in index order.
   */
  workers?: number;
  /** The scenes' mix (default DEFAULT_MIX, DESIGN.md §6's world). */
  mix?: SceneMix;
  /** The worker module (tests swap in their own); default ./shapes_worker.ts. */
  workerModule?: string | URL;
}

/** A block of images to make (in a worker, or in this thread): start .. start + count - 1. */
export interface ShapesBlockRequest {
  block: number;
  start: number;
  count: number;
  /** Images in the split: the last one's key.json line has no comma. */
  n: number;
  seed: number;
  split: string;
  side: number;
  edges: Edges | "mixed";
  perShard: number;
  mix?: SceneMix;
}

/**
 * A made block, in index order: every sample's shard members packed as tar bytes back to back
 * (sample j is tar[ends[j-1] .. ends[j]], key keys[j]) and the block's key.json lines.
 */
export interface ShapesBlock {
  block: number;
  keys: string[];
  tar: Uint8Array;
  ends: number[];
  keyLines: Uint8Array;
}

/** A worker's answer: the block, or why it could not make it. */
export type ShapesBlockReply = ShapesBlock | { block: number; error: string };

/**
 * Makes a block: renders, encodes and packs each image as writeShapes stores it. Workers run
 * this (shapes_worker.ts); the bytes depend only on the request, so any worker count gives
 * the same shards.
 */
export function renderShapesBlock(r: ShapesBlockRequest): ShapesBlock {
  const enc = new TextEncoder();
  const keys: string[] = [], samples: Uint8Array[] = [], ends: number[] = [];
  let lines = "", end = 0;
  for (let i = r.start; i < r.start + r.count; i++) {
    const scene = shapesScene(r.seed, r.split, i, r.side, r.mix);
    const edges = edgesOf(r.edges, i);
    const png = encodePng(renderScene(scene, r.side, edges), r.side, r.side);
    const key = sampleKey(Math.floor(i / r.perShard), i % r.perShard, r.perShard);
    const entry = {
      key,
      caption: scene.caption,
      background: scene.background,
      objects: scene.objects,
      edges,
    };
    // The per-sample .json follows img2dataset's fields, plus the scene.
    const json = { ...entry, status: "success", width: r.side, height: r.side };
    const packed = packSample(key, { png, txt: scene.caption, json: JSON.stringify(json) });
    keys.push(key);
    samples.push(packed);
    ends.push(end += packed.length);
    lines += `${JSON.stringify(entry)}${i + 1 < r.n ? "," : ""}\n`;
  }
  return { block: r.block, keys, tar: concat(samples), ends, keyLines: enc.encode(lines) };
}

/** Most images per block: enough to hide a worker message's cost, few enough to balance. */
const BLOCK_IMAGES = 256;
/** Most raw pixel bytes per block, so large images travel in small blocks (bounded memory). */
const BLOCK_BYTES = 1 << 24;
/** Fewest images per worker: below it a worker costs more to start than it saves. */
const IMAGES_PER_WORKER = 64;

/** The blocks of a split: how many images each holds, and each one's request. */
function planBlocks(o: ShapesOptions, workers: number) {
  const perBlock = Math.max(
    1,
    Math.min(
      BLOCK_IMAGES,
      Math.floor(BLOCK_BYTES / (3 * o.side * o.side)),
      workers > 1 ? Math.ceil(o.n / (4 * workers)) : BLOCK_IMAGES,
    ),
  );
  const request = (block: number): ShapesBlockRequest => ({
    block,
    start: block * perBlock,
    count: Math.min(perBlock, o.n - block * perBlock),
    n: o.n,
    seed: o.seed,
    split: o.split,
    side: o.side,
    edges: o.edges ?? "hard",
    perShard: o.perShard ?? DEFAULT_PER_SHARD,
    mix: o.mix ?? DEFAULT_MIX,
  });
  return { blocks: Math.ceil(o.n / perBlock), request };
}

function* serialBlocks(o: ShapesOptions): Generator<ShapesBlock> {
  const { blocks, request } = planBlocks(o, 1);
  for (let b = 0; b < blocks; b++) yield renderShapesBlock(request(b));
}

/**
 * The blocks of a split in index order, made by `workers` Web Workers. At most two blocks per
 * worker are out (in flight, or made and waiting for an earlier one), so memory stays bounded
 * however large n is. A worker's failure ends the run as one line naming its images.
 */
async function* parallelBlocks(o: ShapesOptions, workers: number): AsyncGenerator<ShapesBlock> {
  const { blocks, request } = planBlocks(o, workers);
  const window = 2 * workers;
  const url = o.workerModule ?? new URL("./shapes_worker.ts", import.meta.url);
  const pool: Worker[] = [];
  const busy = new Array<number>(workers).fill(0);
  const inFlight = new Map<number, number>(); // block → worker, to name a crashed worker's work
  const done = new Map<number, ShapesBlock>();
  let failure: UserError | null = null, wake: (() => void) | null = null;
  const notify = () => {
    const w = wake;
    wake = null;
    w?.();
  };
  const images = (block: number) => {
    const r = request(block);
    return `images ${r.start}–${r.start + r.count - 1} of ${o.split}`;
  };
  const fail = (what: string, message: string, hint = "") => {
    const line = message.split("\n")[0].trim() || "unknown error";
    failure ??= new UserError(`a shapes worker failed on ${what}: ${line}${hint}`);
    notify();
  };
  const workOf = (w: number) => {
    const b = [...inFlight].find(([, x]) => x === w)?.[0];
    return b === undefined ? `starting (worker ${w + 1})` : images(b);
  };
  let sent = 0, next = 0;
  const send = () => {
    while (sent < blocks && sent < next + window) {
      let w = 0;
      for (let i = 1; i < workers; i++) if (busy[i] < busy[w]) w = i;
      busy[w]++;
      inFlight.set(sent, w);
      pool[w].postMessage(request(sent++));
    }
  };
  try {
    for (let w = 0; w < workers; w++) {
      const worker = new Worker(url, { type: "module" });
      worker.onmessage = (e: MessageEvent<ShapesBlockReply>) => {
        const m = e.data;
        busy[w]--;
        inFlight.delete(m.block);
        if ("error" in m) return fail(images(m.block), m.error);
        done.set(m.block, m);
        notify();
      };
      worker.onerror = (e: ErrorEvent) => {
        e.preventDefault(); // handled here: the run stops with one line, not a worker's trace
        // A worker that could not load (or crashed) is not a rendering problem: say how to
        // do without workers.
        fail(workOf(w), e.message || String(e.error), " (--workers 1 renders in this thread)");
      };
      worker.onmessageerror = () => fail(workOf(w), "its reply could not be read");
      pool.push(worker);
    }
    send();
    while (next < blocks) {
      while (!done.has(next) && !failure) await new Promise<void>((r) => (wake = r));
      if (failure) throw failure;
      const block = done.get(next)!;
      done.delete(next);
      next++;
      send();
      yield block;
    }
  } finally {
    for (const worker of pool) worker.terminate();
  }
}

/**
 * Writes n images of a split as shards in `out`, each sample a .png, .txt and .json (the
 * scene), plus `out/key.json`: every image's background and objects, for `vmambar eval`.
 */
export async function writeShapes(o: ShapesOptions): Promise<ShardWriter> {
  const workers = Math.min(o.workers ?? 1, Math.ceil(o.n / IMAGES_PER_WORKER));
  const writer = new ShardWriter(o.out, o.perShard ?? DEFAULT_PER_SHARD);
  const key = await Deno.open(join(o.out, "key.json.tmp"), {
    write: true,
    create: true,
    truncate: true,
  });
  const write = async (b: Uint8Array) => {
    let w = 0;
    while (w < b.length) w += await key.write(b.subarray(w));
  };
  // key.json is streamed a block of lines at a time, so a million images need no big string.
  // A mix other than the world's default is recorded, so the set can be drawn again.
  const mix = o.mix && JSON.stringify(o.mix) !== JSON.stringify(DEFAULT_MIX)
    ? `"mix":${JSON.stringify(o.mix)},`
    : "";
  const split = JSON.stringify(o.split);
  const head = `{"size":${o.side},"seed":${o.seed},"split":${split},${mix}"images":[\n`;
  await write(new TextEncoder().encode(head));
  const progress = new Progress(`shapes ${o.split}`, o.n);
  try {
    const blocks = workers > 1 ? parallelBlocks(o, workers) : serialBlocks(o);
    for await (const b of blocks) {
      for (let j = 0; j < b.keys.length; j++) {
        await writer.addPacked(b.keys[j], b.tar.subarray(j > 0 ? b.ends[j - 1] : 0, b.ends[j]));
      }
      await write(b.keyLines);
      progress.tick(b.keys.length);
    }
    await write(new TextEncoder().encode("]}\n"));
  } finally {
    progress.finish();
    key.close();
    await writer.close();
  }
  await Deno.rename(join(o.out, "key.json.tmp"), join(o.out, "key.json"));
  return writer;
}
