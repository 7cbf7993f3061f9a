// The synthetic shapes world of DESIGN.md §6: a one-colour background and one to three filled
// circles, squares or up-pointing triangles, small (⅙ of the side) or large (⅓), each in its
// own cell of a 3 × 3 grid, with a caption from a small grammar. Everything is drawn from a
// seeded generator, and each image has its own stream (seed, split, index), so image i is the
// same whatever --n is.
import { join } from "node:path";
import { encodePng } from "./png.ts";
import { Progress } from "./progress.ts";
import { deriveSeed, mulberry32, pick, randInt, type Rng, shuffleInPlace } from "./random.ts";
import { ShardWriter } from "./shards.ts";

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

/** Share of scenes with two objects of one colour and shape ("two purple circles"). */
const PAIR_RATE = 0.15;

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
export function sampleScene(rng: Rng, side: number): Scene {
  const background = pick(rng, COLOURS);
  const free = COLOURS.filter((c) => c !== background);
  const cells = shuffleInPlace([...CELLS.keys()], rng);
  let objects: ShapeObject[];
  if (rng() < PAIR_RATE) {
    const colour = pick(rng, free), shape = pick(rng, SHAPES), size = pick(rng, SIZES);
    objects = [0, 1].map((i) => placeObject(colour, shape, size, cells[i], side));
  } else {
    const colours = shuffleInPlace(free, rng);
    const n = 1 + randInt(rng, 3);
    objects = Array.from(
      { length: n },
      (_, i) => placeObject(colours[i], pick(rng, SHAPES), pick(rng, SIZES), cells[i], side),
    );
  }
  // Reading order (top to bottom, left to right) makes captions and key.json easy to follow.
  objects.sort((a, b) => CELLS.indexOf(a.cell) - CELLS.indexOf(b.cell));
  return { background, objects, caption: describeScene(rng, background, objects) };
}

/** Whether pixel centre (px, py) lies inside the object. */
function covers(o: ShapeObject, px: number, py: number): boolean {
  const [cx, cy] = o.centre;
  const h = o.extent / 2;
  const dx = px - cx, dy = py - cy;
  if (o.shape === "circle") return dx * dx + dy * dy <= h * h;
  if (o.shape === "square") return Math.abs(dx) < h && Math.abs(dy) < h;
  // Triangle pointing up: apex at the top middle, base along the bottom edge of the box.
  return dy >= -h && dy < h && Math.abs(dx) <= (dy + h) / 2;
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
  for (let i = 0; i < side * side; i++) rgb.set(bg, 3 * i);
  const n = edges === "smooth" ? SUPERSAMPLE : 1;
  for (const o of scene.objects) {
    const h = o.extent / 2;
    const x0 = Math.max(0, Math.floor(o.centre[0] - h)),
      x1 = Math.min(side, Math.ceil(o.centre[0] + h));
    const y0 = Math.max(0, Math.floor(o.centre[1] - h)),
      y1 = Math.min(side, Math.ceil(o.centre[1] + h));
    for (let y = y0; y < y1; y++) {
      for (let x = x0; x < x1; x++) {
        let hits = 0;
        for (let sy = 0; sy < n; sy++) {
          for (let sx = 0; sx < n; sx++) {
            if (covers(o, x + (sx + 0.5) / n, y + (sy + 0.5) / n)) hits++;
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
export function shapesScene(seed: number, split: string, index: number, side: number): Scene {
  return sampleScene(mulberry32(deriveSeed(seed, split, index)), side);
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
}

/**
 * Writes n images of a split as shards in `out`, each sample a .png, .txt and .json (the
 * scene), plus `out/key.json`: every image's background and objects, for `vmambar eval`.
 */
export async function writeShapes(o: ShapesOptions): Promise<ShardWriter> {
  const writer = new ShardWriter(o.out, o.perShard);
  const key = await Deno.open(join(o.out, "key.json.tmp"), {
    write: true,
    create: true,
    truncate: true,
  });
  const enc = new TextEncoder();
  const write = async (s: string) => {
    const b = enc.encode(s);
    let w = 0;
    while (w < b.length) w += await key.write(b.subarray(w));
  };
  // key.json is streamed one image per line, so a million images need no big string.
  await write(`{"size":${o.side},"seed":${o.seed},"split":${JSON.stringify(o.split)},"images":[\n`);
  const progress = new Progress(`shapes ${o.split}`, o.n);
  try {
    for (let i = 0; i < o.n; i++) {
      const scene = shapesScene(o.seed, o.split, i, o.side);
      const edges = edgesOf(o.edges ?? "hard", i);
      const png = encodePng(renderScene(scene, o.side, edges), o.side, o.side);
      const entry = {
        key: writer.nextKey,
        caption: scene.caption,
        background: scene.background,
        objects: scene.objects,
        edges,
      };
      // The per-sample .json follows img2dataset's fields, plus the scene.
      const json = { ...entry, status: "success", width: o.side, height: o.side };
      await writer.add({ png, txt: scene.caption, json: JSON.stringify(json) });
      await write(`${JSON.stringify(entry)}${i + 1 < o.n ? "," : ""}\n`);
      progress.tick();
    }
    await write("]}\n");
  } finally {
    progress.finish();
    key.close();
    await writer.close();
  }
  await Deno.rename(join(o.out, "key.json.tmp"), join(o.out, "key.json"));
  return writer;
}
