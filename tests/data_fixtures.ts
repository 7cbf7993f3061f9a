// Real image files for the data tests, good and broken, made on the fly with sharp.
import { encodeRgb } from "../lib/data/images.ts";
import { mulberry32 } from "../lib/data/random.ts";

/** w × h RGB where pixel (x, y) = (x·255/w, y·255/h, 128) plus a little seeded noise. */
export function gradient(w: number, h: number, seed = 1): Uint8Array {
  const rng = mulberry32(seed);
  const rgb = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = 3 * (y * w + x);
      rgb[i] = Math.min(255, (x * 255) / w + rng() * 8);
      rgb[i + 1] = Math.min(255, (y * 255) / h + rng() * 8);
      rgb[i + 2] = 128;
    }
  }
  return rgb;
}

/** Pure noise: incompressible, so a PNG of it has one large IDAT to cut. */
export function noise(w: number, h: number, seed = 2): Uint8Array {
  const rng = mulberry32(seed);
  return Uint8Array.from({ length: w * h * 3 }, () => Math.floor(rng() * 256));
}

export function jpeg(w = 48, h = 32, seed = 1): Promise<Uint8Array> {
  return encodeRgb(gradient(w, h, seed), w, h, "jpg");
}

/** A JPEG cut off halfway through its scan data. */
export async function truncatedJpeg(): Promise<Uint8Array> {
  const full = await encodeRgb(noise(64, 64), 64, 64, "jpg");
  return full.slice(0, Math.floor(full.length / 2));
}

/** A PNG cut off inside its image data. */
export async function truncatedPng(): Promise<Uint8Array> {
  const full = await encodeRgb(noise(64, 64), 64, 64, "png");
  return full.slice(0, Math.floor(full.length / 2));
}

export function garbage(n = 3000, seed = 3): Uint8Array {
  const rng = mulberry32(seed);
  return Uint8Array.from({ length: n }, () => Math.floor(rng() * 256));
}

const tempDirs: string[] = [];
globalThis.addEventListener("unload", () => {
  for (const dir of tempDirs) Deno.removeSync(dir, { recursive: true });
});

/** A fresh directory, removed when the test module exits. */
export async function tempDir(prefix: string): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: `vmambar_${prefix}_` });
  tempDirs.push(dir);
  return dir;
}
