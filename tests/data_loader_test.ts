// The training loader: seeded order, epochs, bad samples skipped and counted, exact resume,
// and the three kinds of source.
import { join } from "node:path";
import { UserError } from "../lib/errors.ts";
import { type Batch, openLoader } from "../lib/data/loader.ts";
import { encodePng } from "../lib/data/png.ts";
import { ShardWriter } from "../lib/data/shards.ts";
import { renderScene, shapesScene } from "../lib/data/shapes.ts";
import { captionIds } from "../lib/data/text.ts";
import { garbage, jpeg, tempDir, truncatedJpeg, truncatedPng } from "./data_fixtures.ts";

function check(cond: boolean, msg: string): void {
  if (!cond) throw new Error(msg);
}

const SIDE = 16;

/**
 * 3 shards of up to 12 samples: 30 good shapes images plus a garbage image, a truncated JPEG,
 * a truncated PNG, a sample without caption and one without image.
 */
async function shardsWithBadSamples(): Promise<
  { dir: string; good: string[]; bad: Record<string, string> }
> {
  const dir = await tempDir("loader");
  const writer = new ShardWriter(dir, 12);
  const good: string[] = [], bad: Record<string, string> = {};
  for (let i = 0; i < 35; i++) {
    const key = writer.nextKey;
    if (i === 3) bad[await writer.add({ jpg: garbage(), txt: "garbage" })] = "corrupt image";
    else if (i === 9) {
      bad[await writer.add({ jpg: await truncatedJpeg(), txt: "cut" })] = "corrupt image";
    } else if (i === 14) {
      bad[await writer.add({ png: await truncatedPng(), txt: "cut" })] = "corrupt image";
    } else if (i === 20) {
      bad[await writer.add({ jpg: await jpeg(), json: "{}" })] = "missing caption";
    } else if (i === 27) bad[await writer.add({ txt: "no image" })] = "missing image";
    else {
      const scene = shapesScene(0, "train", i, SIDE);
      await writer.add({
        png: encodePng(renderScene(scene, SIDE), SIDE, SIDE),
        txt: scene.caption,
      });
      good.push(key);
    }
  }
  await writer.close();
  return { dir, good, bad };
}

async function all(it: AsyncIterable<Batch>): Promise<Batch[]> {
  const out = [];
  for await (const b of it) out.push(b);
  return out;
}

const keysOf = (batches: Batch[]) => batches.flatMap((b) => b.keys);

Deno.test("loader: each epoch holds every good sample once, in a seeded order; bad ones are counted", async () => {
  const { dir, good, bad } = await shardsWithBadSamples();
  const opts = {
    source: dir,
    batchSize: 4,
    imageSize: SIDE,
    textLength: 24,
    shuffleBuffer: 8,
    epochs: 2,
  };
  const loader = openLoader({ ...opts, seed: 5 });
  const batches = await all(loader);
  const keys = keysOf(batches);
  check(keys.length === 2 * good.length, `${keys.length} samples for 2 epochs of ${good.length}`);
  for (const epoch of [keys.slice(0, good.length), keys.slice(good.length)]) {
    check(
      [...epoch].sort().join() === good.join(),
      "an epoch is not a permutation of the good samples",
    );
  }
  check(keys.slice(0, good.length).join() !== good.join(), "epoch 0 is not shuffled");
  check(
    keys.slice(0, good.length).join() !== keys.slice(good.length).join(),
    "both epochs in one order",
  );
  check(
    batches.every((b, i) => b.size === (i < batches.length - 1 ? 4 : b.size) && b.size > 0),
    "batch sizes",
  );
  // Skipped samples: each counted once though met in both epochs, with its key.
  for (const reason of ["corrupt image", "missing caption", "missing image"] as const) {
    const want = Object.keys(bad).filter((k) => bad[k] === reason).sort();
    check(
      loader.skipped.count(reason) === want.length,
      `${reason}: ${loader.skipped.count(reason)}`,
    );
    check(
      [...loader.skipped.keys(reason)].sort().join() === want.join(),
      `${reason} keys ${loader.skipped.keys(reason)}`,
    );
  }
  check(
    /skipped 5 bad samples/.test(loader.skipped.summary() ?? ""),
    String(loader.skipped.summary()),
  );
  // Same seed, same stream; another seed, another order.
  check(
    keysOf(await all(openLoader({ ...opts, seed: 5 }))).join() === keys.join(),
    "seed 5 twice differs",
  );
  check(
    keysOf(await all(openLoader({ ...opts, seed: 6 }))).join() !== keys.join(),
    "seeds 5 and 6 agree",
  );
});

Deno.test("loader: batches hold the decoded pixels and the caption's text ids", async () => {
  const { dir } = await shardsWithBadSamples();
  const opts = {
    source: dir,
    batchSize: 5,
    imageSize: SIDE,
    textLength: 40,
    shuffleBuffer: 0,
    epochs: 1,
  };
  const [u8] = await all(openLoader(opts));
  const [f32] = await all(openLoader({ ...opts, pixels: "float32" }));
  check(u8.pixels.length === 5 * SIDE * SIDE * 3 && u8.ids.length === 5 * 40, "batch shapes");
  const first = shapesScene(0, "train", 0, SIDE);
  const want = renderScene(first, SIDE);
  check(u8.keys[0] === "0000000" && u8.captions[0] === first.caption, `first sample ${u8.keys[0]}`);
  check(want.every((v, i) => v === u8.pixels[i]), "pixels differ from the rendered scene");
  check(u8.ids.subarray(0, 40).join() === captionIds(first.caption, 40).join(), "text ids");
  const hw = SIDE * SIDE;
  for (let p = 0; p < 5 * hw; p += 37) {
    const b = Math.floor(p / hw), q = p % hw;
    for (let c = 0; c < 3; c++) {
      const f = (f32.pixels as Float32Array)[b * 3 * hw + c * hw + q];
      check(Math.abs(f - (u8.pixels[3 * p + c] / 127.5 - 1)) < 1e-6, `float pixel ${p}.${c}`);
    }
  }
});

Deno.test("loader: resuming at a batch's position yields exactly the remaining samples", async () => {
  const { dir } = await shardsWithBadSamples();
  const opts = {
    source: dir,
    batchSize: 3,
    imageSize: SIDE,
    textLength: 24,
    shuffleBuffer: 10,
    epochs: 3,
    seed: 11,
  };
  const full = await all(openLoader(opts));
  for (const k of [0, 4, 9, 10, 17, full.length - 2]) {
    const rest = await all(openLoader({ ...opts, position: full[k].position }));
    const want = full.slice(k + 1);
    check(keysOf(rest).join() === keysOf(want).join(), `resume after batch ${k}: keys differ`);
    check(
      rest.every((b, i) => b.ids.join() === want[i].ids.join()),
      `resume after batch ${k}: ids`,
    );
    check(
      rest.every((b, i) => b.pixels.every((v, j) => v === want[i].pixels[j])),
      `resume after ${k}: pixels`,
    );
  }
  const last = full.at(-1)!.position;
  check(
    (await all(openLoader({ ...opts, position: last }))).length === 0,
    "resume at the end yields more",
  );
});

Deno.test("loader: a folder of images with .txt captions", async () => {
  const dir = await tempDir("folder");
  await Deno.mkdir(join(dir, "sub"));
  await Deno.writeFile(join(dir, "a.jpg"), await jpeg(40, 30, 1));
  await Deno.writeTextFile(join(dir, "a.txt"), "first\n");
  await Deno.writeFile(
    join(dir, "sub", "b.png"),
    encodePng(renderScene(shapesScene(0, "x", 0, 8), 8), 8, 8),
  );
  await Deno.writeTextFile(join(dir, "sub", "b.txt"), "second");
  await Deno.writeFile(join(dir, "c.jpg"), await jpeg());
  await Deno.writeFile(join(dir, "d.jpg"), await truncatedJpeg());
  await Deno.writeTextFile(join(dir, "d.txt"), "cut off");
  await Deno.writeTextFile(join(dir, "orphan.txt"), "caption without image");
  const loader = openLoader({
    source: dir,
    batchSize: 8,
    imageSize: 8,
    textLength: 16,
    shuffleBuffer: 0,
    epochs: 1,
  });
  const [batch, ...more] = await all(loader);
  check(more.length === 0 && batch.keys.join() === "a,sub/b", batch.keys.join());
  check(batch.captions.join("|") === "first|second", batch.captions.join("|"));
  check(loader.skipped.keys("missing caption").join() === "c", "missing caption");
  check(loader.skipped.keys("corrupt image").join() === "d", "corrupt image");
});

Deno.test("loader: a source where no image decodes is one clear error, not an endless loop", async () => {
  const dir = await tempDir("allbad");
  const writer = new ShardWriter(dir, 12);
  await writer.add({ jpg: garbage(), txt: "garbage" });
  await writer.add({ jpg: await truncatedJpeg(), txt: "cut" });
  await writer.close();
  let message = "";
  try {
    await all(openLoader({ source: dir, batchSize: 4, imageSize: 8, textLength: 16 }));
  } catch (e) {
    message = (e as Error).message;
  }
  check(/no image of .* could be decoded \(skipped 2 bad samples/.test(message), message);
});

Deno.test("loader: CSV, TSV and JSONL manifests", async () => {
  const dir = await tempDir("manifest");
  await Deno.mkdir(join(dir, "img"));
  for (const n of ["x", "y"]) await Deno.writeFile(join(dir, "img", `${n}.jpg`), await jpeg());
  await Deno.writeFile(join(dir, "img", "bad.jpg"), garbage());
  const manifests: Record<string, string> = {
    "m.csv": 'caption,path\n"a cat, sitting",img/x.jpg\n"say ""hi""",img/y.jpg\n,img/x.jpg\n' +
      "lost,img/none.jpg\nbroken,img/bad.jpg\n",
    "m.tsv": 'file\ttext\nimg/x.jpg\ta cat, sitting\nimg/y.jpg\tsay "hi"\nimg/x.jpg\t\n' +
      "img/none.jpg\tlost\nimg/bad.jpg\tbroken\n",
    "m.jsonl": [
      { path: "img/x.jpg", caption: "a cat, sitting" },
      { path: `${dir}/img/y.jpg`, caption: 'say "hi"' },
      { path: "img/x.jpg" },
      { path: "img/none.jpg", caption: "lost" },
      { image: "img/bad.jpg", text: "broken" },
    ].map((r) => JSON.stringify(r)).join("\n") + "\n",
  };
  for (const [name, text] of Object.entries(manifests)) {
    await Deno.writeTextFile(join(dir, name), text);
    const loader = openLoader({
      source: join(dir, name),
      batchSize: 4,
      imageSize: 8,
      textLength: 16,
      shuffleBuffer: 0,
      epochs: 1,
    });
    const batches = await all(loader);
    check(
      batches.flatMap((b) => b.captions).join("|") === 'a cat, sitting|say "hi"',
      `${name}: ${batches.flatMap((b) => b.captions)}`,
    );
    const s = loader.skipped;
    check(
      s.count("missing caption") === 1 && s.count("unreadable file") === 1 &&
        s.count("corrupt image") === 1,
      `${name}: ${s.summary()}`,
    );
  }
});

Deno.test("loader: a missing path or an empty source is one clear error", async () => {
  const refuses = async (source: string, pattern: RegExp) => {
    try {
      await all(openLoader({ source, batchSize: 2, imageSize: 8, textLength: 8 }));
    } catch (e) {
      check(e instanceof UserError && pattern.test(e.message), `${source}: ${e}`);
      return;
    }
    throw new Error(`${source} accepted`);
  };
  const empty = await tempDir("empty");
  await refuses(join(empty, "nothing"), /no such shard or directory/);
  await refuses(empty, /no \.tar shards and no images/);
  const uncaptioned = await tempDir("uncaptioned");
  await Deno.writeFile(join(uncaptioned, "a.jpg"), await jpeg());
  await refuses(uncaptioned, /none has a \.txt caption/);
  const noSamples = await tempDir("nosamples");
  const w = new ShardWriter(noSamples);
  await w.add({ txt: "caption but no image" });
  await w.close();
  await refuses(noSamples, /no usable samples/);
  await Deno.writeTextFile(join(empty, "m.csv"), "name,caption\na.jpg,x\n");
  await refuses(join(empty, "m.csv"), /needs a path column/);
});

Deno.test("loader: a split source's parts hold its samples in order; batches name their places", async () => {
  const { dir, good } = await shardsWithBadSamples();
  const { openSource } = await import("../lib/data/sources.ts");
  const { SkipReport } = await import("../lib/data/skips.ts");
  const { Loader } = await import("../lib/data/loader.ts");
  const opts = { source: dir, batchSize: 4, imageSize: SIDE, textLength: 8, shuffleBuffer: 0 };
  const whole = await all(openLoader({ ...opts, epochs: 1 }));
  check(keysOf(whole).join() === good.join(), "stored order");
  // 35 samples; the corrupt images (places 3, 9, 14) are skipped with their places counted, and
  // the samples without caption or image are never placed.
  const places = whole.flatMap((b) => b.samples);
  check(places.length === good.length && places[3] === 4, `places ${places}`);
  check(places.every((p, i) => i === 0 || p > places[i - 1]), `places ${places}`);
  const parts = openSource(dir, new SkipReport()).split(new SkipReport(), 2);
  check(parts.length === 3, `${parts.length} parts of 3 shards`);
  const keys: string[] = [];
  for (const p of parts) for await (const s of p.samples()) keys.push(s.key);
  const inOrder = keys.filter((k) => good.includes(k)).join() === good.join();
  check(inOrder && keys.length === 33, `${keys.length} keys`);
  // A share without a sample is no error with allowEmpty.
  const empty = { description: "none", samples: async function* () {}, split: () => [] };
  const none = new Loader({ ...opts, epochs: 1, allowEmpty: true }, empty, new SkipReport());
  check((await all(none.batches())).length === 0, "an empty share yields no batch");
});
