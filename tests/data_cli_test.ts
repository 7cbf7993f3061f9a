// `vmambar data ...` end to end, as a user runs it: shapes → stats, folder → stats, help, errors.
import { join } from "node:path";
import { encodePng } from "../lib/data/png.ts";
import { listShards } from "../lib/data/shards.ts";
import { renderScene, shapesScene } from "../lib/data/shapes.ts";
import { garbage, jpeg, tempDir } from "./data_fixtures.ts";
import { runCli } from "./helpers.ts";

function check(cond: boolean, msg: string): void {
  if (!cond) throw new Error(msg);
}

const vmambar = (...args: string[]) => runCli("data", ...args);

Deno.test("data cli: shapes then stats, with a contact sheet", async () => {
  const dir = await tempDir("cli");
  const out = join(dir, "shapes");
  const made = await vmambar(
    "shapes",
    "--n",
    "200",
    "--size",
    "64",
    "--out",
    out,
    "--val",
    "20",
    "--per-shard",
    "64",
  );
  check(made.code === 0, made.stderr);
  check(/wrote 200 images in 4 shard\(s\)/.test(made.stdout), made.stdout);
  check(listShards(out).length === 4 && listShards(join(out, "val")).length === 1, "shard files");
  const key = JSON.parse(await Deno.readTextFile(join(out, "key.json")));
  check(
    key.images.length === 200 && key.images[199].key === "0000307",
    `key.json ${key.images.at(-1).key}`,
  );
  const sheet = join(dir, "sheet.png");
  const stats = await vmambar("stats", out, "--sheet", sheet, "--samples", "9", "--check");
  check(stats.code === 0, stats.stderr);
  check(/samples: 200 \(200 images decode\)/.test(stats.stdout), stats.stdout);
  check(/cut at T=96: 0 /.test(stats.stdout), stats.stdout);
  const png = await Deno.readFile(sheet);
  // 3 × 3 thumbnails of 64 px with 2 px gutters: 200 × 200.
  const view = new DataView(png.buffer);
  check(view.getUint32(16) === 200 && view.getUint32(20) === 200, "contact sheet size");
  const again = await vmambar("shapes", "--n", "10", "--out", out);
  check(again.code === 1 && /--force/.test(again.stderr), `no --force: ${again.stderr}`);
  check((await vmambar("shapes", "--n", "10", "--out", out, "--force")).code === 0, "--force");
  check(listShards(out).length === 1, "--force left old shards behind");
});

/** Every file under `dir` as relative path → bytes. */
async function tree(dir: string, at = ""): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  for await (const e of Deno.readDir(join(dir, at))) {
    const rel = join(at, e.name);
    if (e.isDirectory) { for (const [k, v] of await tree(dir, rel)) out.set(k, v); }
    else out.set(rel, await Deno.readFile(join(dir, rel)));
  }
  return out;
}

Deno.test("data cli: shapes --workers 1 and --workers 3 write the same bytes, every file", async () => {
  const dir = await tempDir("cliworkers");
  const made: Map<string, Uint8Array>[] = [];
  for (const workers of ["1", "3"]) {
    const out = join(dir, `w${workers}`);
    const r = await vmambar(
      ...["shapes", "--n", "700", "--per-shard", "300", "--edges", "mixed", "--size", "32"],
      ...["--val", "130", "--out", out, "--workers", workers],
    );
    check(r.code === 0, r.stderr);
    check(/wrote 700 images in 3 shard\(s\).*130 validation images/.test(r.stdout), r.stdout);
    made.push(await tree(out));
  }
  const [one, three] = made;
  const names = [...one.keys()].sort();
  check(
    names.join() === "00000.tar,00001.tar,00002.tar,key.json,val/00000.tar,val/key.json",
    `files: ${names}`,
  );
  check(
    names.join() === [...three.keys()].sort().join(),
    `--workers 3 files: ${[...three.keys()]}`,
  );
  for (const [name, a] of one) {
    const b = three.get(name)!;
    check(a.length === b.length && a.every((v, i) => v === b[i]), `${name} differs`);
  }
});

Deno.test("data cli: folder (with bad files) then stats; the bad ones are reported by key", async () => {
  const dir = await tempDir("clifolder");
  const input = join(dir, "in");
  await Deno.mkdir(input);
  for (let i = 0; i < 5; i++) {
    const scene = shapesScene(3, "x", i, 40);
    await Deno.writeFile(join(input, `img${i}.png`), encodePng(renderScene(scene, 40), 40, 40));
    await Deno.writeTextFile(join(input, `img${i}.txt`), scene.caption);
  }
  await Deno.writeFile(join(input, "photo.jpg"), await jpeg(80, 60));
  await Deno.writeTextFile(join(input, "photo.txt"), "a gradient");
  await Deno.writeFile(join(input, "broken.jpg"), garbage());
  await Deno.writeTextFile(join(input, "broken.txt"), "garbage");
  await Deno.writeFile(join(input, "uncaptioned.png"), await jpeg());
  const out = join(dir, "out");
  const r = await vmambar("folder", "--in", input, "--out", out, "--size", "32");
  check(r.code === 0, r.stderr);
  check(/wrote 6 images from 7 images in/.test(r.stdout), r.stdout);
  check(
    /skipped 2 bad samples: 1 missing caption \(uncaptioned\); 1 corrupt image \(broken\)/.test(
      r.stderr,
    ),
    r.stderr,
  );
  const stats = await vmambar("stats", out, "--samples", "0", "--check");
  check(
    stats.code === 0 && /samples: 6 \(6 images decode\)/.test(stats.stdout),
    stats.stdout + stats.stderr,
  );
});

Deno.test("data cli: help for every subcommand; missing and empty sources are one line", async () => {
  for (const sub of ["shapes", "emoji", "folder", "stats"]) {
    const r = await vmambar(sub, "--help");
    check(
      r.code === 0 && r.stdout.includes(`usage: vmambar data ${sub}`),
      `${sub} --help: ${r.stdout}${r.stderr}`,
    );
  }
  const oneLine = (r: { code: number; stderr: string }, pattern: RegExp) => {
    check(r.code === 1, `exit ${r.code}`);
    check(r.stderr.trim().split("\n").length === 1 && pattern.test(r.stderr), r.stderr);
  };
  const empty = await tempDir("cliempty");
  oneLine(await vmambar("stats", join(empty, "missing")), /no such shard or directory/);
  oneLine(await vmambar("stats", empty), /holds no \.tar shards and no images/);
  oneLine(
    await vmambar("folder", "--in", join(empty, "missing"), "--out", join(empty, "o")),
    /no such file/,
  );
  oneLine(await vmambar("shapes", "--n", "x", "--out", empty), /--n must be an integer/);
  oneLine(await vmambar("shapes", "--n", "5"), /--out is required/);
  oneLine(
    await vmambar("shapes", "--n", "5", "--out", empty, "--workers", "0"),
    /--workers must be an integer in \[1, 64\], got 0/,
  );
  oneLine(await vmambar("frob"), /unknown subcommand 'frob'/);
});
