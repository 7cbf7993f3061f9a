// Seeded randomness for everything in lib/data that must be reproducible: the shapes world,
// the emoji split and the loader's shuffles. Math.random is never used here.

/** A uniform generator on [0, 1). */
export type Rng = () => number;

/** mulberry32: tiny, fast, and good enough for data order and synthetic scenes. */
export function mulberry32(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Mixes a seed with a path of integers or strings (e.g. seed, "val", image index) into a new
 * 32-bit seed, so that each image or epoch has its own stream, independent of how many came
 * before it.
 */
export function deriveSeed(seed: number, ...path: (number | string)[]): number {
  let h = (seed >>> 0) ^ 0x9e3779b9;
  const mix = (x: number) => {
    h = Math.imul(h ^ x, 0x85ebca6b) >>> 0;
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
    h = (h ^ (h >>> 16)) >>> 0;
  };
  for (const p of path) {
    if (typeof p === "number") mix(p >>> 0);
    else for (let i = 0; i < p.length; i++) mix(p.charCodeAt(i) + 0x10000);
    mix(0xffffffff);
  }
  return h;
}

/** An integer in [0, n). */
export function randInt(rng: Rng, n: number): number {
  return Math.floor(rng() * n);
}

export function pick<T>(rng: Rng, items: readonly T[]): T {
  return items[randInt(rng, items.length)];
}

/** Fisher–Yates, in place. */
export function shuffleInPlace<T>(items: T[], rng: Rng): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = randInt(rng, i + 1);
    [items[i], items[j]] = [items[j], items[i]];
  }
  return items;
}
