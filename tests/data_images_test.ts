// Image decode: formats, shorter-side resize and centre crop, colour handling, corrupt files, and
// a decoder that cannot load (a fault of the machine, not of every image).
import {
  CorruptImage,
  decodeImage,
  decodeWithSharp,
  encodeRgb,
  loadSharp,
  pixelsToFloatNCHW,
  reencodeImage,
} from "../lib/data/images.ts";
import { join } from "node:path";
import { deflateSync, inflateSync } from "node:zlib";
import { writeShapes } from "../lib/data/shapes.ts";
import { ShardWriter } from "../lib/data/shards.ts";
import { decodeSimplePng, encodePng, pngChunk } from "../lib/data/png.ts";
import {
  garbage,
  gradient,
  jpeg,
  noise,
  tempDir,
  truncatedJpeg,
  truncatedPng,
} from "./data_fixtures.ts";

function check(cond: boolean, msg: string): void {
  if (!cond) throw new Error(msg);
}

/** 90 × 30: red | green | blue vertical bands, 30 px each. */
function bands(): Uint8Array {
  const rgb = new Uint8Array(90 * 30 * 3);
  for (let y = 0; y < 30; y++) {
    for (let x = 0; x < 90; x++) {
      rgb.set(x < 30 ? [255, 0, 0] : x < 60 ? [0, 255, 0] : [0, 0, 255], 3 * (y * 90 + x));
    }
  }
  return rgb;
}

function near(px: ArrayLike<number>, want: number[], tol: number): boolean {
  return want.every((v, i) => Math.abs(px[i] - v) <= tol);
}

Deno.test("images: PNG, JPEG and WebP decode, centre cropped to the shorter side", async () => {
  for (const format of ["png", "jpg", "webp"] as const) {
    // The shorter side is already 30, so no resampling: the crop is the middle band exactly.
    const rgb = await decodeImage(await encodeRgb(bands(), 90, 30, format), 30);
    check(rgb.length === 30 * 30 * 3, `${format}: ${rgb.length} bytes`);
    // Lossy formats blur colour across the band edges (chroma subsampling), so look inside.
    const lossless = format === "png";
    const tol = lossless ? 0 : 24;
    const points = lossless
      ? [[0, 0], [29, 0], [15, 15], [0, 29], [29, 29]]
      : [[6, 6], [15, 15], [23, 23]];
    for (const [x, y] of points) {
      const px = rgb.subarray(3 * (y * 30 + x), 3 * (y * 30 + x) + 3);
      check(near(px, [0, 255, 0], tol), `${format} (${x},${y}) = ${[...px]}`);
    }
  }
});

Deno.test("images: the shorter side is resized to the target before the crop", async () => {
  const sharp = await loadSharp();
  // 80 × 40, left half black, right half white: resized to 20 × 10 then cropped to the middle
  // 10 × 10, whose left half is black and right half white.
  const rgb = new Uint8Array(80 * 40 * 3);
  for (let y = 0; y < 40; y++) rgb.fill(255, 3 * (y * 80 + 40), 3 * (y * 80 + 80));
  const png = await sharp(rgb, { raw: { width: 80, height: 40, channels: 3 } }).png().toBuffer();
  const out = await decodeImage(png, 10);
  check(out.length === 300, `${out.length} bytes`);
  for (let y = 0; y < 10; y++) {
    check(
      out[3 * (y * 10 + 1)] < 40 && out[3 * (y * 10 + 8)] > 215,
      `row ${y}: ${[...out.subarray(30 * y, 30 * y + 30)]}`,
    );
  }
});

Deno.test("images: greyscale becomes RGB, transparency is flattened onto white", async () => {
  const sharp = await loadSharp();
  const grey = await sharp(new Uint8Array(16 * 16).fill(77), {
    raw: { width: 16, height: 16, channels: 1 },
  })
    .png().toBuffer();
  const g = await decodeImage(grey, 8);
  check(g.length === 8 * 8 * 3 && near(g, [77, 77, 77], 1), `grey: ${[...g.subarray(0, 3)]}`);
  const clear = await sharp({
    create: { width: 16, height: 16, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } },
  })
    .png().toBuffer();
  const c = await decodeImage(clear, 8);
  check(
    c.length === 8 * 8 * 3 && c.every((v) => v === 255),
    `transparent: ${[...c.subarray(0, 3)]}`,
  );
});

Deno.test("images: truncated JPEG, truncated PNG and garbage are rejected", async () => {
  check((await decodeImage(await jpeg(), 16)).length === 16 * 16 * 3, "a good JPEG first");
  for (
    const [what, bytes] of [
      ["truncated JPEG", await truncatedJpeg()],
      ["truncated PNG", await truncatedPng()],
      ["garbage", garbage()],
      ["empty", new Uint8Array(0)],
    ] as const
  ) {
    let threw: unknown = null;
    try {
      await decodeImage(bytes, 16);
    } catch (e) {
      threw = e;
    }
    check(threw instanceof CorruptImage, `${what}: ${threw ?? "decoded without an error"}`);
  }
});

Deno.test("images: re-encoding keeps the crop; NCHW floats are p/127.5 − 1", async () => {
  const png = await reencodeImage(await encodeRgb(bands(), 90, 30, "png"), 30, "png");
  const rgb = await decodeImage(png, 30);
  check(rgb.every((v, i) => v === [0, 255, 0][i % 3]), "re-encoded crop is not all green");
  const two = pixelsToFloatNCHW(new Uint8Array([0, 128, 255, 255, 128, 0, 0, 0, 0, 0, 0, 0]), 1, 2);
  // Plane R holds the R of the 4 pixels, then G, then B.
  const want = [0, 255, 0, 0, 128, 128, 0, 0, 255, 0, 0, 0].map((p) => p / 127.5 - 1);
  check(two.every((v, i) => Math.abs(v - want[i]) < 1e-6), `NCHW: ${[...two]}`);
});

Deno.test("images: a decoder that cannot load is one error naming it, not every image corrupt", async () => {
  // sharp mapped to a module that fails as sharp does without its prebuilt libvips.
  const dir = await tempDir("nosharp");
  await Deno.writeTextFile(
    join(dir, "sharp.js"),
    'throw new Error(\'Could not load the "sharp" module using the linux-x64 runtime\\n' +
      "Possible solutions:\\n- npm install --include=optional sharp');",
  );
  await Deno.writeTextFile(join(dir, "deno.json"), '{"imports": {"sharp": "./sharp.js"}}');
  // JPEGs: images only sharp decodes.
  const shards = join(dir, "sh");
  const writer = new ShardWriter(shards, 100);
  for (let i = 0; i < 6; i++) await writer.add({ jpg: await jpeg(20, 16, i + 1), txt: `j ${i}` });
  await writer.close();
  const vmambar = async (...args: string[]) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--no-lock", "--config", join(dir, "deno.json"), "main.ts", ...args],
      cwd: new URL("..", import.meta.url).pathname,
      stdout: "piped",
      stderr: "piped",
    }).output();
    return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
  };
  const runs = await Promise.all([
    vmambar("data", "stats", "--check", shards),
    vmambar("data", "folder", "--in", shards, "--out", join(dir, "f")),
    vmambar("tokenize", "--data", shards, "--out", join(dir, "t")),
  ]);
  for (const r of runs) {
    const lines = r.stderr.trim().split("\n").filter((l) => !l.startsWith("tokenize:"));
    check(r.code === 1 && lines.length === 1, `exit ${r.code}: ${r.stderr}`);
    check(
      /image decoder \(npm:sharp\) cannot load.*Could not load the "sharp" module/.test(lines[0]),
      r.stderr,
    );
    check(!/corrupt/.test(r.stderr) && !r.stderr.includes("    at "), r.stderr);
  }
  // Plain RGB PNGs at their own size (what `data shapes` writes) need no sharp.
  const pngs = join(dir, "png");
  await writeShapes({ n: 6, side: 16, seed: 1, out: pngs, split: "t", perShard: 100 });
  const stats = await vmambar("data", "stats", "--check", pngs);
  check(stats.code === 0, `plain PNGs without sharp: exit ${stats.code}: ${stats.stderr}`);
});

Deno.test("images: plain RGB PNGs decode without sharp to sharp's bytes; others go to sharp", async () => {
  const sharp = await loadSharp();
  // Ours writes filter 0 on every row; sharp's adaptive filtering picks 0–4 row by row.
  const filters = new Set<number>();
  for (const size of [1, 7, 33, 64]) {
    for (const rgb of [noise(size, size), gradient(size, size, 2)]) {
      const adaptive = new Uint8Array(
        await sharp(rgb, { raw: { width: size, height: size, channels: 3 } })
          .png({ adaptiveFiltering: true }).toBuffer(),
      );
      for (const png of [encodePng(rgb, size, size), adaptive]) {
        rowFilters(png, size).forEach((f) => filters.add(f));
        const fast = decodeSimplePng(png, size);
        check(fast !== null, `size ${size}: a plain PNG was not decoded`);
        const slow = await decodeWithSharp(png, size);
        check(fast!.every((v, i) => v === slow[i]), `size ${size}: not sharp's bytes`);
        check((await decodeImage(png, size)).every((v, i) => v === slow[i]), "decodeImage");
      }
    }
  }
  check([0, 1, 2, 3, 4].every((f) => filters.has(f)), `filters tried: ${[...filters]}`);
  const plain = encodePng(noise(16, 16), 16, 16);
  const raw = (channels: 3 | 4) =>
    sharp(Uint8Array.from({ length: 256 * channels }, (_, i) => (i * 37) % 251), {
      raw: { width: 16, height: 16, channels },
    });
  const others: [string, Uint8Array][] = [
    ["another size", plain],
    ["RGBA", new Uint8Array(await raw(4).png().toBuffer())],
    ["palette", new Uint8Array(await raw(3).png({ palette: true }).toBuffer())],
    ["interlaced", new Uint8Array(await raw(3).png({ progressive: true }).toBuffer())],
    ["a colour profile", new Uint8Array(await raw(3).png().withIccProfile("p3").toBuffer())],
    ["a bad CRC", Uint8Array.from(plain, (v, i) => i === plain.length - 20 ? v ^ 1 : v)],
    ["cut short", plain.subarray(0, plain.length - 30)],
    ["a JPEG", await jpeg(16, 16)],
    ["pixel data inflating to 64 MB", inflating(plain, 64 << 20)],
  ];
  for (const [what, bytes] of others) {
    check(decodeSimplePng(bytes, what === "another size" ? 8 : 16) === null, `${what}: decoded`);
  }
});

/** The filter type of each row of an 8-bit RGB PNG. */
function rowFilters(png: Uint8Array, size: number): number[] {
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  const idat: number[] = [];
  for (let at = 8; at < png.length;) {
    const length = view.getUint32(at);
    if (String.fromCharCode(...png.subarray(at + 4, at + 8)) === "IDAT") {
      idat.push(...png.subarray(at + 8, at + 8 + length));
    }
    at += 12 + length;
  }
  const raw = inflateSync(Uint8Array.from(idat));
  return Array.from({ length: size }, (_, y) => raw[y * (size * 3 + 1)]);
}

/** `png`'s signature and header, then pixel data that inflates to `bytes` zeros. */
function inflating(png: Uint8Array, bytes: number): Uint8Array {
  const idat = pngChunk("IDAT", new Uint8Array(deflateSync(new Uint8Array(bytes))));
  const parts = [png.subarray(0, 33), idat, pngChunk("IEND", new Uint8Array(0))];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
  return out;
}
