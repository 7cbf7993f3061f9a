// The shapes world (DESIGN.md §6): deterministic for a seed, and key.json agrees with pixels.
import { join } from "node:path";
import { decodeImage } from "../lib/data/images.ts";
import { readShard } from "../lib/data/shards.ts";
import {
  CELLS,
  DEFAULT_MIX,
  edgesOf,
  MAX_CAPTION_BYTES,
  PALETTE,
  renderScene,
  type Scene,
  type ShapeObject,
  shapesScene,
  writeShapes,
} from "../lib/data/shapes.ts";
import { SkipReport } from "../lib/data/skips.ts";
import { sceneMix } from "../lib/cli/data.ts";
import { UserError } from "../lib/errors.ts";
import { tempDir } from "./data_fixtures.ts";
import { assert } from "./helpers.ts";

function check(cond: boolean, msg: string): void {
  if (!cond) throw new Error(msg);
}

interface KeyEntry {
  key: string;
  caption: string;
  background: keyof typeof PALETTE;
  objects: ShapeObject[];
}

async function shardBytes(dir: string): Promise<Uint8Array> {
  return await Deno.readFile(join(dir, "00000.tar"));
}

Deno.test("shapes: the same seed gives the same shards and key.json; another seed does not", async () => {
  const [a, b, c] = await Promise.all([tempDir("sa"), tempDir("sb"), tempDir("sc")]);
  await writeShapes({ n: 40, side: 32, seed: 7, out: a, split: "train" });
  await writeShapes({ n: 40, side: 32, seed: 7, out: b, split: "train" });
  await writeShapes({ n: 40, side: 32, seed: 8, out: c, split: "train" });
  const [ta, tb, tc] = await Promise.all([a, b, c].map(shardBytes));
  check(ta.length === tb.length && ta.every((v, i) => v === tb[i]), "same seed, different shard");
  check(
    await Deno.readTextFile(join(a, "key.json")) === await Deno.readTextFile(join(b, "key.json")),
    "key.json",
  );
  check(
    !(ta.length === tc.length && ta.every((v, i) => v === tc[i])),
    "seeds 7 and 8 gave the same shard",
  );
  // Image i does not depend on how many images are made, nor does train depend on val.
  const first = shapesScene(7, "train", 3, 32);
  check(
    JSON.stringify(first) === JSON.stringify(shapesScene(7, "train", 3, 32)),
    "scene is not a function of its index",
  );
  check(
    JSON.stringify(first) !== JSON.stringify(shapesScene(7, "val", 3, 32)),
    "val repeats train",
  );
});

Deno.test("shapes: key.json matches the decoded pixels, captions and the rules of §6", async () => {
  const dir = await tempDir("skey");
  const side = 48;
  await writeShapes({ n: 300, side, seed: 1, out: dir, split: "train", perShard: 100 });
  const key = JSON.parse(await Deno.readTextFile(join(dir, "key.json")));
  check(
    key.size === side && key.images.length === 300,
    `key.json header ${key.size} ${key.images.length}`,
  );
  const byKey = new Map<string, KeyEntry>(key.images.map((e: KeyEntry) => [e.key, e]));
  const skips = new SkipReport();
  const counts = new Map<number, number>();
  let seen = 0;
  for (const shard of ["00000.tar", "00001.tar", "00002.tar"]) {
    for await (const s of readShard(join(dir, shard), skips)) {
      seen++;
      const entry = byKey.get(s.key)!;
      check(entry !== undefined, `${s.key} not in key.json`);
      const caption = new TextDecoder().decode(s.files.txt);
      check(caption === entry.caption, `${s.key}: caption differs from key.json`);
      check(
        new TextEncoder().encode(caption).length <= MAX_CAPTION_BYTES,
        `${s.key}: caption too long`,
      );
      const meta = JSON.parse(new TextDecoder().decode(s.files.json));
      check(
        JSON.stringify(meta.objects) === JSON.stringify(entry.objects),
        `${s.key}: .json objects`,
      );
      // Decode the stored PNG with sharp: the file as every consumer will read it.
      const rgb = await decodeImage(s.files.png, side);
      const at = (
        x: number,
        y: number,
      ) => [...rgb.subarray(3 * (y * side + x), 3 * (y * side + x) + 3)];
      const objs = entry.objects;
      counts.set(objs.length, (counts.get(objs.length) ?? 0) + 1);
      check(objs.length >= 1 && objs.length <= 3, `${s.key}: ${objs.length} objects`);
      for (const o of objs) {
        const px = at(Math.floor(o.centre[0]), Math.floor(o.centre[1]));
        check(
          px.join() === PALETTE[o.colour].join(),
          `${s.key}: ${o.colour} ${o.shape} centre is ${px}`,
        );
        check(o.colour !== entry.background, `${s.key}: object colour = background`);
        check(
          caption.includes(`${o.colour} ${o.shape}`),
          `${s.key}: "${caption}" misses ${o.colour} ${o.shape}`,
        );
        const extent = o.size === "small" ? side / 6 : side / 3;
        check(Math.abs(o.extent - extent) < 1e-2, `${s.key}: extent ${o.extent}`);
      }
      const cells = objs.map((o) => CELLS.indexOf(o.cell));
      check(new Set(cells).size === cells.length, `${s.key}: two objects share a cell`);
      const pair = objs.length === 2 && objs[0].colour === objs[1].colour;
      if (!pair) {
        check(new Set(objs.map((o) => o.colour)).size === objs.length, `${s.key}: repeated colour`);
      }
      // Every empty cell shows the background at its centre.
      for (let c = 0; c < 9; c++) {
        if (cells.includes(c)) continue;
        const px = at(
          Math.floor((c % 3 + 0.5) * side / 3),
          Math.floor((Math.floor(c / 3) + 0.5) * side / 3),
        );
        check(
          px.join() === PALETTE[entry.background].join(),
          `${s.key}: empty ${CELLS[c]} is ${px}`,
        );
      }
    }
  }
  check(seen === 300 && skips.total === 0, `read ${seen}, skipped ${skips.total}`);
  check([1, 2, 3].every((k) => (counts.get(k) ?? 0) > 30), `object counts ${[...counts]}`);
});

Deno.test("shapes: circle, square and triangle cover their expected pixels", () => {
  const side = 60; // cells of 20 px, large objects 20 px, small 10 px
  const scene = shapesScene(0, "train", 0, side);
  const mk = (shape: ShapeObject["shape"], cell: number): ShapeObject => ({
    colour: "red",
    shape,
    size: "large",
    cell: CELLS[cell],
    centre: [(cell % 3 + 0.5) * 20, (Math.floor(cell / 3) + 0.5) * 20],
    extent: 20,
    rgb: PALETTE.red,
  });
  const rgb = renderScene({
    ...scene,
    background: "black",
    objects: [mk("circle", 0), mk("square", 1), mk("triangle", 2)],
  }, side);
  const red = (x: number, y: number) => rgb[3 * (y * side + x)] === 220;
  check(red(10, 10) && !red(0, 0) && !red(19, 19), "circle: centre in, box corners out");
  check(red(20, 0) && red(39, 19) && !red(40, 10), "square: fills its cell exactly");
  check(
    red(50, 1) && !red(41, 1) && red(41, 19) && red(58, 19),
    "triangle: apex up, base at the bottom",
  );
});

Deno.test("shapes: smooth edges blend by coverage only at object borders", () => {
  const scene = shapesScene(7, "train", 3, 64);
  const hard = renderScene(scene, 64, "hard"), smooth = renderScene(scene, 64, "smooth");
  const bg = PALETTE[scene.background];
  let blended = 0, differ = 0;
  for (let p = 0; p < 64 * 64; p++) {
    const h = hard.subarray(3 * p, 3 * p + 3), s = smooth.subarray(3 * p, 3 * p + 3);
    if (h.join() !== s.join()) differ++;
    const pure = [bg, ...scene.objects.map((o) => o.rgb)].some((c) => c.join() === s.join());
    if (!pure) blended++;
  }
  // Borders only: a few percent of the pixels differ, and every differing one sits next to a
  // pixel whose hard colour differs from its own (an edge).
  assert(
    blended > 0 && differ > 0 && differ < 0.2 * 64 * 64,
    `${blended} blended, ${differ} differ`,
  );
  for (let y = 1; y < 63; y++) {
    for (let x = 1; x < 63; x++) {
      const p = y * 64 + x;
      if (hard.subarray(3 * p, 3 * p + 3).join() === smooth.subarray(3 * p, 3 * p + 3).join()) {
        continue;
      }
      const near = [p - 1, p + 1, p - 64, p + 64, p - 65, p - 63, p + 63, p + 65].some((q) =>
        hard.subarray(3 * q, 3 * q + 3).join() !== hard.subarray(3 * p, 3 * p + 3).join()
      );
      assert(near, `pixel ${x},${y} changed away from any edge`);
    }
  }
  assert(edgesOf("mixed", 0) === "hard" && edgesOf("mixed", 1) === "smooth", "mixed alternates");
});

/** Every file under `dir` (relative path → bytes), for comparing whole outputs. */
async function filesUnder(dir: string, at = ""): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  for await (const e of Deno.readDir(join(dir, at))) {
    const rel = join(at, e.name);
    if (e.isDirectory) { for (const [k, v] of await filesUnder(dir, rel)) out.set(k, v); }
    else out.set(rel, await Deno.readFile(join(dir, rel)));
  }
  return out;
}

function sameFiles(a: Map<string, Uint8Array>, b: Map<string, Uint8Array>, what: string): void {
  check(
    [...a.keys()].sort().join() === [...b.keys()].sort().join(),
    `${what}: files ${[...a.keys()]} vs ${[...b.keys()]}`,
  );
  for (const [k, x] of a) {
    const y = b.get(k)!;
    check(x.length === y.length && x.every((v, i) => v === y[i]), `${what}: ${k} differs`);
  }
}

Deno.test("shapes: workers answering out of order still give the serial bytes, in index order", async () => {
  const [serial, parallel] = await Promise.all([tempDir("sser"), tempDir("spar")]);
  const o = { n: 700, side: 32, seed: 5, split: "train", perShard: 300, edges: "mixed" as const };
  await writeShapes({ ...o, out: serial, workers: 1 });
  const w = await writeShapes({
    ...o,
    out: parallel,
    workers: 3,
    workerModule: new URL("./shapes_reverse_worker.ts", import.meta.url),
  });
  check(w.count === 700 && w.written.length === 3, `${w.count} images, ${w.written.length} shards`);
  const files = await filesUnder(parallel);
  check(files.size === 4 && files.has("key.json"), `files ${[...files.keys()]}`);
  sameFiles(await filesUnder(serial), files, "--workers 3 vs 1");
  const key = JSON.parse(await Deno.readTextFile(join(parallel, "key.json")));
  check(
    key.images.every((e: KeyEntry, i: number) =>
      e.caption === shapesScene(5, "train", i, 32).caption
    ),
    "key.json is not in index order",
  );
});

Deno.test("shapes: a failing worker stops the run with one line naming its images", async () => {
  const dir = await tempDir("sfail");
  const worker = (body: string) => `data:application/javascript,${encodeURIComponent(body)}`;
  const cases: [string, RegExp][] = [
    [
      `self.onmessage = (e) => self.postMessage({ block: e.data.block, error: "no room\\n  at x" });`,
      /^a shapes worker failed on images \d+–\d+ of train: no room$/,
    ],
    [
      `self.onmessage = (e) => { if (e.data.block === 2) throw new Error("boom"); };`,
      /^a shapes worker failed on images \d+–\d+ of train: .*boom/,
    ],
    [`throw new Error("cannot start");`, /^a shapes worker failed on .*cannot start/],
  ];
  for (const [body, pattern] of cases) {
    let message = "";
    try {
      await writeShapes({
        n: 500,
        side: 16,
        seed: 0,
        out: dir,
        split: "train",
        workers: 2,
        workerModule: worker(body),
      });
    } catch (e) {
      check(e instanceof UserError, `not a UserError: ${e}`);
      message = (e as Error).message;
    }
    check(pattern.test(message) && !message.includes("\n"), `worker failure: '${message}'`);
  }
});

/** renderScene as it was before the four-corner shortcut: every sub-pixel sample tested. */
function renderBySamples(scene: Scene, side: number): Uint8Array {
  const rgb = new Uint8Array(side * side * 3);
  for (let i = 0; i < side * side; i++) rgb.set(PALETTE[scene.background], 3 * i);
  for (const o of scene.objects) {
    const [cx, cy] = o.centre;
    const h = o.extent / 2;
    const covers = (px: number, py: number) => {
      const dx = px - cx, dy = py - cy;
      if (o.shape === "circle") return dx * dx + dy * dy <= h * h;
      if (o.shape === "square") return Math.abs(dx) < h && Math.abs(dy) < h;
      return dy >= -h && dy < h && Math.abs(dx) <= (dy + h) / 2;
    };
    const x0 = Math.max(0, Math.floor(cx - h)), x1 = Math.min(side, Math.ceil(cx + h));
    const y0 = Math.max(0, Math.floor(cy - h)), y1 = Math.min(side, Math.ceil(cy + h));
    for (let y = y0; y < y1; y++) {
      for (let x = x0; x < x1; x++) {
        let hits = 0;
        for (let sy = 0; sy < 4; sy++) {
          for (let sx = 0; sx < 4; sx++) if (covers(x + (sx + 0.5) / 4, y + (sy + 0.5) / 4)) hits++;
        }
        if (hits === 0) continue;
        const a = hits / 16, at = 3 * (y * side + x);
        for (let c = 0; c < 3; c++) rgb[at + c] = Math.round(a * o.rgb[c] + (1 - a) * rgb[at + c]);
      }
    }
  }
  return rgb;
}

Deno.test("shapes: smooth edges skip sampling inside shapes without changing a byte", () => {
  const same = (a: Uint8Array, b: Uint8Array) =>
    a.length === b.length && a.every((v, i) => v === b[i]);
  for (const side of [7, 32, 48, 64, 100]) {
    for (let i = 0; i < 200; i++) {
      const scene = shapesScene(i, "train", i, side);
      check(same(renderScene(scene, side, "smooth"), renderBySamples(scene, side)), `${side} ${i}`);
    }
  }
  // Every shape at odd, fractional centres and extents.
  for (let k = 0; k < 3000; k++) {
    const r = Math.imul(k + 1, 2654435761) >>> 0;
    const o: ShapeObject = {
      colour: "red",
      shape: (["circle", "square", "triangle"] as const)[k % 3],
      size: "large",
      cell: CELLS[0],
      centre: [5 + (r % 30000) / 1000, 5 + ((r >>> 8) % 30000) / 1000],
      extent: 1 + ((r >>> 4) % 25000) / 1000,
      rgb: PALETTE.red,
    };
    const scene: Scene = { background: "black", caption: "", objects: [o] };
    check(same(renderScene(scene, 40, "smooth"), renderBySamples(scene, 40)), `object ${k}`);
  }
});

/** SHA-256 of the first n scenes of a stream, one JSON line each. */
async function scenesHash(n: number, mix = DEFAULT_MIX): Promise<string> {
  let text = "";
  for (let i = 0; i < n; i++) text += JSON.stringify(shapesScene(3, "train", i, 64, mix)) + "\n";
  const h = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
  return [...h].map((b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("shapes: a scene mix leans the draw; the default mix draws the world as before", async () => {
  // Pinned from the generator before --pairs and --objects existed: the default stays the same.
  const before = "1d20b1a28f19da0091825016b43c844b278fc49161bbca355c65ff714818c595";
  check((await scenesHash(300)) === before, "the default mix changed the world's scenes");
  const equal = { pairs: 0.15, objects: [3, 3, 3] as const };
  check((await scenesHash(300, equal)) === before, "equal weights are not the default draw");
  check((await scenesHash(300, { pairs: 0.3, objects: [1, 1, 1] })) !== before, "pairs ignored");
  const kinds = (mix: typeof DEFAULT_MIX, n: number) => {
    const c = { pair: 0, 1: 0, 2: 0, 3: 0 } as Record<string, number>;
    for (let i = 0; i < n; i++) {
      const o = shapesScene(9, "train", i, 64, mix).objects;
      const pair = o.length === 2 && o[0].colour === o[1].colour && o[0].shape === o[1].shape;
      c[pair ? "pair" : o.length]++;
    }
    return c;
  };
  const n = 4000, c = kinds({ pairs: 0.3, objects: [1, 2, 1] }, n);
  const near = (got: number, want: number) => Math.abs(got / n - want) < 0.03;
  check(
    near(c.pair, 0.3) && near(c[1], 0.175) && near(c[2], 0.35) && near(c[3], 0.175),
    `pairs 0.3, objects 1,2,1 gave ${JSON.stringify(c)} of ${n}`,
  );
  const only3 = kinds({ pairs: 0, objects: [0, 0, 1] }, 200);
  check(only3[3] === 200, `objects 0,0,1 gave ${JSON.stringify(only3)}`);
  const onlyPairs = kinds({ pairs: 1, objects: [1, 1, 1] }, 200);
  check(onlyPairs.pair === 200, `pairs 1 gave ${JSON.stringify(onlyPairs)}`);
});

Deno.test("shapes: --pairs and --objects refuse what is not a mix, in one line", () => {
  const mix = sceneMix("0.25", "1, 2,0");
  check(mix.pairs === 0.25 && mix.objects.join() === "1,2,0", JSON.stringify(mix));
  for (
    const [pairs, objects] of [["2", "1,1,1"], ["-0.1", "1,1,1"], ["x", "1,1,1"], ["", "1,1,1"]]
  ) {
    let err: unknown = null;
    try {
      sceneMix(pairs, objects);
    } catch (e) {
      err = e;
    }
    check(err instanceof UserError && /--pairs/.test(err.message), `--pairs ${pairs}: ${err}`);
  }
  for (const objects of ["1,2", "1,1,1,1", "0,0,0", "1,-1,1", "a,b,c", "1,,1", "1,Infinity,1"]) {
    let err: unknown = null;
    try {
      sceneMix("0.1", objects);
    } catch (e) {
      err = e;
    }
    check(
      err instanceof UserError && /--objects/.test(err.message),
      `--objects ${objects}: ${err}`,
    );
  }
});
