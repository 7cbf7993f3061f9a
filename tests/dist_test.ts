// Data parallel training through MPI (issue 13), on the CPU: two processes under mpirun give the
// weights one process gets from the same batch as two accumulated micro-batches; a process that
// fails or hangs ends the job with a clear error in bounded time. Skipped, with a note, where
// Open MPI (mpirun and libmpi) is not installed.
import { tinyTokenData } from "./checkpoint_fixtures.ts";
import { join } from "node:path";
import { existsSync } from "node:fs";
import { buckets } from "../lib/dist/tensors.ts";
import { launchedWorldSize, SingleProcess } from "../lib/dist/collective.ts";
import { mpirunCommand } from "../lib/dist/launch.ts";
import { readSafetensors, toFloat32 } from "../lib/io/safetensors.ts";
import { saveCheckpoint } from "../lib/io/checkpoint.ts";
import { writeShapes } from "../lib/data/shapes.ts";
import { VQVAE } from "../lib/tokenizer/vqvae.ts";
import { TINY_TOKENIZER } from "./tokenizer_fixtures.ts";
import { tempDir } from "./data_fixtures.ts";
import { assert, gpuReady, runCli } from "./helpers.ts";

const ROOT = new URL("..", import.meta.url).pathname;

function mpiMissing(): string | null {
  try {
    new Deno.Command("mpirun", { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync();
  } catch {
    return "mpirun is not installed";
  }
  for (const name of [Deno.env.get("VMAMBAR_LIBMPI"), "libmpi.so.40", "libmpi.so"]) {
    if (!name) continue;
    try {
      Deno.dlopen(name, {}).close();
      return null;
    } catch { /* the next */ }
  }
  return "Open MPI's libmpi does not load";
}

const missing = mpiMissing();
if (missing) {
  console.log(`dist_test: skipped: ${missing} (Debian: apt-get install openmpi-bin)`);
}
const ignore = missing !== null;

async function mpirun(n: number, command: string[], env: Record<string, string> = {}) {
  const [cmd, ...args] = mpirunCommand(n, command);
  const t0 = performance.now();
  const out = await new Deno.Command(cmd, {
    args,
    cwd: ROOT,
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return {
    code: out.code,
    seconds: (performance.now() - t0) / 1000,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
  };
}

const DENO = [Deno.execPath(), "run", "-A"];

Deno.test("dist: the single-process collective and the buckets of the gradient staging", () => {
  const c = new SingleProcess();
  const x = Float32Array.of(1, 2);
  c.allReduceSum(x);
  assert(c.rank === 0 && c.size === 1 && x[1] === 2, "single process");
  assert(launchedWorldSize({}) === 1, "no launcher");
  assert(launchedWorldSize({ OMPI_COMM_WORLD_SIZE: "4" }) === 4, "Open MPI's size");
  // Sizes in floats, limit in bytes: 40 bytes a bucket; an oversize tensor gets one alone.
  const b = buckets([4, 4, 4, 20, 1, 1], 40);
  assert(JSON.stringify(b) === "[[0,1],[2],[3],[4,5]]", JSON.stringify(b));
});

Deno.test({
  name: "dist: all-reduce, broadcast and barrier over two MPI processes",
  ignore,
  async fn() {
    const r = await mpirun(2, [...DENO, "tests/dist_worker.ts"]);
    assert(r.code === 0, `mpirun failed (${r.code}): ${r.stderr}`);
    const lines = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
    assert(lines.length === 2, r.stdout);
    for (const l of lines) {
      assert(l.size === 2, r.stdout);
      assert(l.sum.join() === "10,12,14,16,18", `sum ${l.sum}`);
      assert(l.root.join() === "7,7,7", `broadcast ${l.root}`);
    }
  },
});

Deno.test({
  name: "dist: a process that hangs makes the others abort the job after the collective timeout",
  ignore,
  async fn() {
    const r = await mpirun(2, [...DENO, "tests/dist_worker.ts", "hang"], {
      VMAMBAR_COLLECTIVE_TIMEOUT: "3",
    });
    assert(r.code !== 0, "the job succeeded");
    assert(r.seconds < 60, `took ${r.seconds} s`);
    assert(/rank 0 of 2: an all-reduce .* waited 3 s for the other ranks/.test(r.stderr), r.stderr);
  },
});

const CAPTIONS = ["red circle", "blue square", "green triangle", "two dots", "big sun", "a cat"];
const SET = "d=64,n_layers=2,gsa_every=1,heads=2,text_layers=1,text_length=16";

/** A random tiny tokenizer and one shard of 6 captions with seeded token indices. */
const tinyData = () => tinyTokenData("dist", CAPTIONS, 4099, 5);

const trainArgs = (d: { tokenizer: string; tokens: string }, out: string) => [
  "train",
  "--data",
  d.tokens,
  "--tokenizer",
  d.tokenizer,
  "--set",
  SET,
  "--batch",
  "4",
  "--micro-batch",
  "2",
  "--steps",
  "3",
  "--lr",
  "3e-3",
  "--warmup",
  "1",
  "--caption-dropout",
  "0.5",
  "--log-every",
  "1",
  "--val-every",
  "0",
  "--sample-every",
  "0",
  "--checkpoint-every",
  "0",
  "--out",
  out,
];

/** Largest |a − b| relative to the largest |a|, over a train-state's tensors of a prefix. */
async function stateDistance(a: string, b: string, prefix: string) {
  const [sa, sb] = await Promise.all([readSafetensors(a), readSafetensors(b)]);
  let diff = 0, scale = 0, count = 0;
  for (const [name, ta] of sa.tensors) {
    if (!name.startsWith(prefix)) continue;
    const tb = sb.tensors.get(name);
    assert(tb !== undefined, `${b} lacks ${name}`);
    const x = toFloat32(ta), y = toFloat32(tb);
    for (let i = 0; i < x.length; i++) {
      diff = Math.max(diff, Math.abs(x[i] - y[i]));
      scale = Math.max(scale, Math.abs(x[i]));
    }
    count++;
  }
  assert(count > 0, `no ${prefix} tensors`);
  return { diff, scale, relative: diff / scale };
}

Deno.test({
  name: "dist: train --world 2 gives one process's weights for the same batch of two micro-batches",
  ignore,
  async fn() {
    await gpuReady;
    const d = await tinyData();
    const one = join(d.dir, "one.safetensors"), two = join(d.dir, "two.safetensors");
    const r1 = await runCli(...trainArgs(d, one));
    assert(r1.code === 0, `one process: ${r1.stderr}`);
    const r2 = await runCli(...trainArgs(d, two), "--world", "2");
    assert(r2.code === 0, `two processes: ${r2.stderr}`);
    assert(/data parallel over 2 processes/.test(r2.stderr), r2.stderr);
    const state = (p: string) => p.replace(/\.safetensors$/, ".train-state.safetensors");
    for (const prefix of ["model.", "ema.", "optimizer.m."]) {
      const dist = await stateDistance(state(one), state(two), prefix);
      console.log(`${prefix}* max |Δ| ${dist.diff.toExponential(2)} of ${dist.scale.toFixed(3)}`);
      assert(dist.relative <= 1e-5, `${prefix}: ${JSON.stringify(dist)}`);
    }
    const metrics = async (p: string) =>
      (await Deno.readTextFile(p.replace(/\.safetensors$/, ".metrics.jsonl"))).trim().split("\n")
        .map((l) => JSON.parse(l)).filter((l) => l.kind === "train");
    const [m1, m2] = [await metrics(one), await metrics(two)];
    assert(m1.length === 3 && m2.length === 3, "one metrics line per step, from rank 0 alone");
    m1.forEach((l, i) => {
      assert(
        Math.abs(l.loss - m2[i].loss) <= 1e-5 * Math.abs(l.loss),
        `loss ${l.loss} ${m2[i].loss}`,
      );
      assert(m2[i].processes === 2 && m2[i].allreduce_s >= 0, JSON.stringify(m2[i]));
    });
  },
});

Deno.test({
  name: "dist: a process that fails ends the whole job with its error, in bounded time",
  ignore,
  async fn() {
    await gpuReady;
    const d = await tinyData();
    const out = join(d.dir, "m.safetensors");
    // MPMD: rank 1 runs the same command but on shards that do not exist.
    const good = [...DENO, "main.ts", ...trainArgs(d, out), "--world", "2"];
    const bad = good.map((a) => (a === d.tokens ? join(d.dir, "missing") : a));
    const r = await mpirun(1, [...good, ":", "-np", "1", ...bad]);
    assert(r.code !== 0, "the job succeeded");
    assert(r.seconds < 120, `took ${r.seconds} s`);
    assert(/vmambar train: .*missing/.test(r.stderr), r.stderr);
    assert(/exited|non-zero|aborted/.test(r.stderr), r.stderr);
  },
});

/** Every file under `dir` (relative paths, sorted) with its bytes. */
async function filesUnder(dir: string): Promise<Map<string, Uint8Array>> {
  const files = new Map<string, Uint8Array>();
  const walk = async (sub: string) => {
    for await (const e of Deno.readDir(join(dir, sub))) {
      const rel = sub ? join(sub, e.name) : e.name;
      if (e.isDirectory) await walk(rel);
      else files.set(rel, await Deno.readFile(join(dir, rel)));
    }
  };
  await walk("");
  return new Map([...files].sort(([a], [b]) => (a < b ? -1 : 1)));
}

Deno.test({
  name: "dist: tokenize --world 2 and under mpirun by hand write one process's token shards",
  ignore,
  async fn() {
    await gpuReady;
    // 24 images in 5 input shards of 5; output shards of 7 cross the input shards' bounds.
    const dir = await tempDir("dist_tok");
    const data = join(dir, "shapes");
    await Deno.mkdir(data);
    await writeShapes({ n: 24, side: 16, seed: 3, out: data, split: "train", perShard: 5 });
    const tokenizer = join(dir, "tok.safetensors");
    const vq = new VQVAE(TINY_TOKENIZER, 11);
    await saveCheckpoint(tokenizer, vq.namedParameters(), "tokenizer", TINY_TOKENIZER);
    vq.dispose();
    const args = (out: string) => [
      "tokenize",
      "--tokenizer",
      tokenizer,
      "--data",
      data,
      "--out",
      out,
      "--batch",
      "4",
      "--per-shard",
      "7",
      "--text-length",
      "16",
    ];
    const one = join(dir, "one"), two = join(dir, "two"), byHand = join(dir, "by-hand");
    const r1 = await runCli(...args(one));
    assert(r1.code === 0, `one process: ${r1.stderr}`);
    const r2 = await runCli(...args(two), "--world", "2");
    assert(r2.code === 0, `--world 2: ${r2.stderr}`);
    assert(/tokenized 24 images into 4 shard\(s\).* over 2 processes/.test(r2.stdout), r2.stdout);
    assert(r2.stdout.trim().split("\n").length === 1, `rank 0 alone reports: ${r2.stdout}`);
    const r3 = await mpirun(2, [...DENO, "main.ts", ...args(byHand)]);
    assert(r3.code === 0, `mpirun -np 2 by hand: ${r3.stderr}`);
    const want = await filesUnder(one);
    assert(
      [...want.keys()].join() === [0, 1, 2, 3].map((i) => `0000${i}.safetensors`).join(),
      [
        ...want.keys(),
      ].join(),
    );
    for (const got of [two, byHand]) {
      const files = await filesUnder(got);
      assert([...files.keys()].join() === [...want.keys()].join(), `${got}: ${[...files.keys()]}`);
      for (const [name, bytes] of want) {
        const b = files.get(name)!;
        assert(
          b.length === bytes.length && b.every((x, i) => x === bytes[i]),
          `${got}/${name} differs from one process's`,
        );
      }
      assert(!existsSync(`${got}.partial`), `${got}.partial is left`);
    }
    // A rank that fails (MPMD: rank 1 reads shards that do not exist) ends the job with its error,
    // and no token set is published (--out, made before any work as in one process, stays empty).
    const failed = join(dir, "failed");
    const good = [...DENO, "main.ts", ...args(failed), "--world", "2"];
    const bad = good.map((a) => (a === data ? join(dir, "missing") : a));
    const r4 = await mpirun(1, [...good, ":", "-np", "1", ...bad]);
    assert(r4.code !== 0, "the job succeeded");
    assert(/vmambar tokenize: .*missing/.test(r4.stderr), r4.stderr);
    const left = existsSync(failed) ? [...Deno.readDirSync(failed)].map((e) => e.name) : [];
    assert(left.length === 0, `${failed} holds ${left}`);
  },
});
