// The shapes world's detector (DESIGN.md §6), for `vmambar eval`: it reads back from an image
// what sampleScene put in it. Every pixel is classified to its nearest palette colour, the most
// common one is the background, and each connected region of another colour large enough to be
// an object (not a sliver of anti-aliased or blurred edge) is one object: its shape from how
// full its bounding box is and how its width grows from top to bottom, its size from its extent,
// its cell from its centre.
import {
  type Cell,
  CELLS,
  type Colour,
  COLOURS,
  PALETTE,
  type Shape,
  type Size,
} from "../data/shapes.ts";

export interface DetectedObject {
  colour: Colour;
  shape: Shape;
  size: Size;
  cell: Cell;
  /** Centre of the bounding box in pixels (x right, y down). */
  centre: [number, number];
  /** The larger side of the bounding box, in pixels. */
  extent: number;
  /** Pixels in the region. */
  area: number;
}

export interface DetectedScene {
  background: Colour;
  /** In reading order of their cells, as sampleScene lists objects. */
  objects: DetectedObject[];
}

/** Nearest palette colour of every pixel of an HWC RGB image, as an index into COLOURS. */
export function paletteLabels(pixels: Uint8Array, count: number): Uint8Array {
  const rgb = COLOURS.map((c) => PALETTE[c]);
  const labels = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    const r = pixels[3 * i], g = pixels[3 * i + 1], b = pixels[3 * i + 2];
    let best = 0, bestD = Infinity;
    for (let k = 0; k < rgb.length; k++) {
      const dr = r - rgb[k][0], dg = g - rgb[k][1], db = b - rgb[k][2];
      const d = dr * dr + dg * dg + db * db;
      if (d < bestD) [best, bestD] = [k, d];
    }
    labels[i] = best;
  }
  return labels;
}

/** Connected regions (4-neighbours) of one label each, other than `skip`, as pixel lists. */
function regions(labels: Uint8Array, side: number, skip: number): number[][] {
  const seen = new Uint8Array(labels.length);
  const out: number[][] = [];
  for (let start = 0; start < labels.length; start++) {
    if (seen[start] || labels[start] === skip) continue;
    const label = labels[start], region = [start];
    seen[start] = 1;
    for (let q = 0; q < region.length; q++) {
      const p = region[q], x = p % side, y = (p - x) / side;
      const next = [x > 0 ? p - 1 : -1, x < side - 1 ? p + 1 : -1, y > 0 ? p - side : -1];
      next.push(y < side - 1 ? p + side : -1);
      for (const n of next) {
        if (n >= 0 && !seen[n] && labels[n] === label) {
          seen[n] = 1;
          region.push(n);
        }
      }
    }
    out.push(region);
  }
  return out;
}

/**
 * Two objects of one colour in neighbouring cells can touch (two large squares do) and form
 * one region; a region much wider or taller than a cell is split along the grid.
 */
function splitByCell(region: number[], side: number): number[][] {
  const cell = side / 3;
  const xs = region.map((p) => p % side), ys = region.map((p) => Math.floor(p / side));
  const w = Math.max(...xs) - Math.min(...xs) + 1, h = Math.max(...ys) - Math.min(...ys) + 1;
  if (w <= 1.4 * cell && h <= 1.4 * cell) return [region];
  const parts = new Map<number, number[]>();
  region.forEach((p, i) => {
    const c = Math.min(2, Math.floor(ys[i] / cell)) * 3 + Math.min(2, Math.floor(xs[i] / cell));
    parts.set(c, [...(parts.get(c) ?? []), p]);
  });
  return [...parts.values()];
}

/** Shape, size and cell of one region of `side`-pixel image. */
function describeRegion(region: number[], side: number, colour: Colour): DetectedObject {
  let x0 = side, x1 = -1, y0 = side, y1 = -1;
  for (const p of region) {
    const x = p % side, y = (p - x) / side;
    x0 = Math.min(x0, x), x1 = Math.max(x1, x), y0 = Math.min(y0, y), y1 = Math.max(y1, y);
  }
  const w = x1 - x0 + 1, h = y1 - y0 + 1;
  const widths = new Array(h).fill(0);
  for (const p of region) widths[Math.floor(p / side) - y0]++;
  // Mean width of the top and bottom thirds: an up-pointing triangle is ~5× wider at the bottom.
  const third = Math.max(1, Math.floor(h / 3));
  const mean = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length;
  const taper = mean(widths.slice(0, third)) / Math.max(1e-9, mean(widths.slice(h - third)));
  // Fill of the bounding box: square 1, circle π/4, triangle ½.
  const fill = region.length / (w * h);
  const shape: Shape = taper < 0.6 ? "triangle" : fill > 0.88 ? "square" : "circle";
  const extent = Math.max(w, h);
  const cx = (x0 + x1 + 1) / 2, cy = (y0 + y1 + 1) / 2, cell = side / 3;
  const index = Math.min(2, Math.floor(cy / cell)) * 3 + Math.min(2, Math.floor(cx / cell));
  return {
    colour,
    shape,
    // Small is ⅙ of the side and large ⅓: the boundary sits between them.
    size: extent < side / 4 ? "small" : "large",
    cell: CELLS[index],
    centre: [cx, cy],
    extent,
    area: region.length,
  };
}

/** How many pixels of a region have all four neighbours in it: edge slivers have almost none. */
function interior(region: number[], side: number): number {
  const set = new Set(region);
  let n = 0;
  for (const p of region) {
    const x = p % side;
    if (x > 0 && x < side - 1 && set.has(p - 1) && set.has(p + 1)) {
      if (set.has(p - side) && set.has(p + side)) n++;
    }
  }
  return n;
}

/** The background and objects of a `side` × `side` HWC RGB image of the shapes world. */
export function detectScene(pixels: Uint8Array, side: number): DetectedScene {
  if (pixels.length !== side * side * 3) {
    throw new Error(`detectScene: ${pixels.length} bytes is not a ${side}×${side} RGB image`);
  }
  const labels = paletteLabels(pixels, side * side);
  const counts = new Array(COLOURS.length).fill(0);
  for (const l of labels) counts[l]++;
  const bg = counts.indexOf(Math.max(...counts));
  // The smallest object, a small triangle, covers ½·(side/6)² pixels.
  const unit = (side / 6) ** 2;
  const objects: DetectedObject[] = [];
  for (const whole of regions(labels, side, bg)) {
    for (const region of splitByCell(whole, side)) {
      if (region.length < 0.25 * unit || interior(region, side) < 0.08 * unit) continue;
      objects.push(describeRegion(region, side, COLOURS[labels[region[0]]]));
    }
  }
  objects.sort((a, b) =>
    CELLS.indexOf(a.cell) - CELLS.indexOf(b.cell) || a.centre[0] - b.centre[0] ||
    a.centre[1] - b.centre[1]
  );
  return { background: COLOURS[bg], objects };
}
