// train-tokenizer's guards, as a user meets them: --force starts clean, --resume keeps to its
// data and refuses --force, a short run with a long warmup is warned about, and data that is
// mostly unreadable stops the run instead of training on the few images that decode.
import { join } from "node:path";
import { ShardWriter } from "../lib/data/shards.ts";
import { writeShapes } from "../lib/data/shapes.ts";
import { encodePng } from "../lib/data/png.ts";
import { TINY_TOKENIZER } from "./tokenizer_fixtures.ts";
import { garbage, tempDir } from "./data_fixtures.ts";

const root = new URL("..", import.meta.url).pathname;

function assert(ok: unknown, msg: string): asserts ok {
  if (!ok) throw new Error(msg);
}

async function train(dir: string, ...args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      join(root, "main.ts"),
      "train-tokenizer",
      ...["--config", join(dir, "tiny.json"), "--batch", "2", "--val-every", "0"],
      ...args,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

async function setup() {
  const dir = await tempDir("ttcli");
  await writeShapes({ n: 8, side: 16, seed: 1, out: join(dir, "data"), split: "t", perShard: 100 });
  await writeShapes({
    n: 8,
    side: 16,
    seed: 2,
    out: join(dir, "other"),
    split: "t",
    perShard: 100,
  });
  await Deno.writeTextFile(join(dir, "tiny.json"), JSON.stringify(TINY_TOKENIZER));
  return dir;
}

Deno.test("train-tokenizer --force starts clean; --resume keeps its data; --warmup ≥ --steps warns", async () => {
  const dir = await setup();
  const out = join(dir, "tok.safetensors");
  const old = ["tok.metrics.jsonl", "tok.recon.png", "tok.safetensors"];
  for (const f of old) await Deno.writeTextFile(join(dir, f), '{"kind":"train","step":99}\n');
  const data = join(dir, "data");
  const r = await train(dir, "--data", data, "--out", out, "--force", "--steps", "1");
  assert(r.code === 0, r.stderr);
  assert(/warning: --warmup 200 ≥ --steps 1/.test(r.stderr), `no warmup warning: ${r.stderr}`);
  const lines = (await Deno.readTextFile(join(dir, "tok.metrics.jsonl"))).trim().split("\n");
  assert(lines.length === 1 && JSON.parse(lines[0]).step === 1, `metrics kept: ${lines}`);
  const left = [...Deno.readDirSync(dir)].map((e) => e.name);
  assert(!left.includes("tok.recon.png"), `the old recon.png is left: ${left}`);

  const other = await train(dir, "--data", join(dir, "other"), "--out", out, "--resume");
  assert(other.code === 1, `--resume --data other: exit ${other.code}`);
  assert(/trains on --data .*data, not .*other/.test(other.stderr), other.stderr);
  const both = await train(dir, "--data", data, "--out", out, "--resume", "--force");
  assert(both.code === 1 && /give one of them/.test(both.stderr), both.stderr);
  const again = await train(dir, "--data", data, "--out", out);
  assert(again.code === 1 && /--resume .* or --force/.test(again.stderr), again.stderr);
});

Deno.test("train-tokenizer stops on data that is mostly unreadable, and says what it skipped", async () => {
  const dir = await setup();
  const writer = new ShardWriter(join(dir, "bad"));
  const good = encodePng(new Uint8Array(16 * 16 * 3).fill(200), 16, 16);
  for (let i = 0; i < 8; i++) {
    await writer.add({ png: i < 2 ? good : garbage(300, i), txt: `sample ${i}` });
  }
  await writer.close();
  const r = await train(
    dir,
    ...["--data", join(dir, "bad"), "--out", join(dir, "t.safetensors"), "--steps", "50"],
    ...["--shuffle-buffer", "0", "--warmup", "0"],
  );
  assert(r.code === 1, `exit ${r.code}: ${r.stderr}`);
  const last = r.stderr.trim().split("\n").at(-1)!;
  assert(/6 of the \d+ samples .* --max-skipped 0\.1 .*corrupt image/.test(last), last);
});
