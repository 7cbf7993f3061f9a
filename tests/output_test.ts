// Outputs are checked before any work, in every command: parent folders are made, a folder
// where a file is meant, an existing file without --force and a path under a file are refused
// with one line naming the flag. Numeric options are bounded the same way.
import { join } from "node:path";
import { prepareOutputFile, prepareOutputFolder } from "../lib/cli/output.ts";
import { UserError } from "../lib/errors.ts";
import { writeShapes } from "../lib/data/shapes.ts";
import { tempDir } from "./data_fixtures.ts";

const root = new URL("..", import.meta.url).pathname;

function assert(ok: unknown, msg: string): asserts ok {
  if (!ok) throw new Error(msg);
}

async function vmambar(cwd: string, ...args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(root, "main.ts"), ...args],
    cwd,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

function oneLine(r: { code: number; stderr: string }, pattern: RegExp, what: string): void {
  const lines = r.stderr.trim().split("\n");
  assert(r.code === 1, `${what}: exit ${r.code}: ${r.stderr}`);
  assert(lines.length === 1 && !r.stderr.includes("    at "), `${what}: ${r.stderr}`);
  assert(pattern.test(lines[0]), `${what}: ${lines[0]}`);
}

function refused(f: () => void, pattern: RegExp, what: string): void {
  try {
    f();
  } catch (e) {
    assert(e instanceof UserError && pattern.test(e.message), `${what}: ${e}`);
    return;
  }
  throw new Error(`${what}: accepted`);
}

Deno.test("prepareOutputFile: makes folders; refuses a folder, an existing file, a path under a file", async () => {
  const dir = await tempDir("out");
  const file = join(dir, "f.txt");
  await Deno.writeTextFile(file, "x");
  prepareOutputFile(join(dir, "a/b/c.png"), { flag: "--out" });
  assert(Deno.statSync(join(dir, "a/b")).isDirectory, "parent folders not made");
  assert([...Deno.readDirSync(join(dir, "a/b"))].length === 0, "the probe was left behind");
  refused(() => prepareOutputFile(dir, { flag: "--out" }), /^--out .* is a folder/, "folder");
  refused(() => prepareOutputFile(file, { flag: "--sheet" }), /^--sheet .*--force/, "exists");
  prepareOutputFile(file, { flag: "--sheet", force: true });
  refused(
    () => prepareOutputFile(join(file, "x/y.png"), { flag: "--json" }),
    /^--json .*f\.txt is a file, not a folder/,
    "under a file",
  );
  refused(() => prepareOutputFolder(file, { flag: "--out" }), /is a file/, "folder as a file");
});

Deno.test("every command refuses an output it cannot write before any work, in one line", async () => {
  const dir = await tempDir("outcli");
  const file = join(dir, "f.txt");
  await Deno.writeTextFile(file, "x");
  await writeShapes({ n: 4, side: 16, seed: 0, out: join(dir, "sh"), split: "t", perShard: 100 });
  const under = (name: string) => join(file, name);
  const cases: [string[], RegExp][] = [
    [
      ["data", "shapes", "--n", "4", "--size", "16", "--out", under("s")],
      /^vmambar data: shapes: --out /,
    ],
    [["data", "stats", join(dir, "sh"), "--sheet", under("s.png")], /--sheet .* not a folder/],
    [["data", "stats", join(dir, "sh"), "--sheet", file], /--sheet .* exists: pass --force/],
    [["tokenize", "--tokenizer", file, "--data", join(dir, "sh"), "--out", under("t")], /--out /],
    [["import-tokenizer", file, "--config", file, "--out", file], /--out .* exists/],
    [["import-tokenizer", file, "--config", file, "--out", under("t")], /--out .*not a folder/],
    [["bench", "--ops", "dispatch", "--json", under("b.json")], /^vmambar bench: --json /],
    [["train-tokenizer", "--data", join(dir, "sh"), "--out", dir], /--out .* is a folder/],
    [
      ["train-tokenizer", "--data", join(dir, "sh"), "--out", under("t.st")],
      /--out .*not a folder/,
    ],
  ];
  const results = await Promise.all(cases.map(([args]) => vmambar(dir, ...args)));
  results.forEach((r, i) => oneLine(r, cases[i][1], cases[i][0].join(" ")));
});

Deno.test("data stats writes no contact sheet unasked; reconstruct keeps an existing output", async () => {
  const dir = await tempDir("outstats");
  await writeShapes({ n: 4, side: 16, seed: 0, out: join(dir, "sh"), split: "t", perShard: 100 });
  const r = await vmambar(dir, "data", "stats", join(dir, "sh"));
  assert(r.code === 0, r.stderr);
  const names = [...Deno.readDirSync(dir)].map((e) => e.name);
  assert(names.join() === "sh", `data stats wrote ${names}`);
  await Deno.writeTextFile(join(dir, "a.png"), "x");
  await Deno.writeTextFile(join(dir, "a.recon.png"), "old");
  oneLine(
    await vmambar(dir, "reconstruct", "--tokenizer", join(dir, "a.png"), join(dir, "a.png")),
    /a\.recon\.png exists: pass --force/,
    "reconstruct",
  );
});

Deno.test("data folder that converts nothing is an error", async () => {
  const dir = await tempDir("outnothing");
  await Deno.mkdir(join(dir, "in"));
  await Deno.writeTextFile(join(dir, "in", "a.jpg"), "not an image");
  await Deno.writeTextFile(join(dir, "in", "a.txt"), "a caption");
  oneLine(
    await vmambar(dir, "data", "folder", "--in", join(dir, "in"), "--out", join(dir, "o")),
    /no image of .* could be converted, nothing written/,
    "data folder",
  );
});

Deno.test("numeric options are bounded in one line naming them; negative numbers parse", async () => {
  const dir = await tempDir("outnum");
  const cases: [string[], RegExp][] = [
    [
      ["data", "shapes", "--n", "-3", "--out", join(dir, "s")],
      /^vmambar data: shapes: --n must be .*≥ 1|\[1, /,
    ],
    [["data", "shapes", "--size", "100000", "--out", join(dir, "s")], /--size must be/],
    [
      ["data", "folder", "--in", dir, "--out", join(dir, "f"), "--quality", "500"],
      /--quality must be/,
    ],
    [["train-tokenizer", "--data", dir, "--lr", "-1"], /--lr must be a number > 0/],
    [["train-tokenizer", "--data", dir, "--max-skipped", "2"], /--max-skipped must be/],
    [["tokenize", "--data", dir, "--out", join(dir, "t"), "--batch", "0"], /--batch must be/],
  ];
  const results = await Promise.all(cases.map(([args]) => vmambar(dir, ...args)));
  results.forEach((r, i) => oneLine(r, cases[i][1], cases[i][0].join(" ")));
  assert(!results.some((r) => /ambiguous/.test(r.stderr)), "a negative number was ambiguous");
});

Deno.test("an interrupted data shapes leaves no set that looks whole; the next run replaces it", async () => {
  const dir = await tempDir("outstage");
  const out = join(dir, "s");
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(root, "main.ts"), "data", "shapes", "--n", "1000000", "--size", "16"]
      .concat(["--per-shard", "200", "--out", out]),
    stdout: "null",
    stderr: "null",
  }).spawn();
  // Wait until a few shards are written, then kill it mid-set.
  const partial = `${out}.partial`;
  const shards = () => {
    try {
      return [...Deno.readDirSync(partial)].filter((e) => e.name.endsWith(".tar")).length;
    } catch {
      return 0;
    }
  };
  while (shards() < 2) await new Promise((r) => setTimeout(r, 20));
  child.kill("SIGKILL");
  await child.status;
  const listed = [...Deno.readDirSync(out)].map((e) => e.name);
  assert(listed.length === 0, `the unfinished set shows in ${out}: ${listed}`);
  oneLine(
    await vmambar(dir, "data", "stats", out),
    /no \.tar shards/,
    "stats of the unfinished set",
  );
  const again = await vmambar(dir, "data", "shapes", "--n", "30", "--size", "16", "--out", out);
  assert(again.code === 0, again.stderr);
  const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort().join();
  assert(names === "s", `left beside the set: ${names}`);
  assert(
    [...Deno.readDirSync(out)].map((e) => e.name).sort().join() === "00000.tar,key.json",
    "set",
  );
});

Deno.test("progress lines in logs carry an ETA", async () => {
  const script = `import { Progress } from ${JSON.stringify(join(root, "lib/data/progress.ts"))};
const p = new Progress("shapes", 100, 0);
for (let i = 0; i < 10; i++) { await new Promise((r) => setTimeout(r, 5)); p.tick(1); }`;
  const out = await new Deno.Command(Deno.execPath(), { args: ["eval", script], stderr: "piped" })
    .output();
  const text = new TextDecoder().decode(out.stderr);
  assert(/shapes: \d+\/100 \d+% {2}\d+\/s {2}ETA \d+s/.test(text), text);
});
