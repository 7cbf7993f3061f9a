// tokenize and reconstruct: token shards hold exactly quantize.encode's indices and the captions'
// ids, name their tokenizer by hash, and refuse another one; reconstruct writes NAME.recon.png
// and prints PSNR; bad tokenizer files are one-line errors.
import { join } from "node:path";
import { existsSync } from "node:fs";
import { main as tokenize } from "../lib/cli/tokenize.ts";
import { DEFAULT_TOKENIZER, resolveTokenizer } from "../lib/cli/defaults.ts";
import { captionIds } from "../lib/data/text.ts";
import { pixelsToFloatNCHW } from "../lib/data/images.ts";
import { encodePng } from "../lib/data/png.ts";
import { listTokenShards, readTokenShard } from "../lib/data/token_shards.ts";
import { UserError } from "../lib/errors.ts";
import { tensor, tidyAsync } from "../lib/tensor/tensor.ts";
import { fileSha256, loadTokenizer } from "../lib/tokenizer/load.ts";
import { encodeImages } from "../lib/tokenizer/reconstruct.ts";
import { VQVAE } from "../lib/tokenizer/vqvae.ts";
import { saveCheckpoint } from "../lib/io/checkpoint.ts";
import { readImageSet } from "../lib/train/tokenizer_eval.ts";
import { TINY_TOKENIZER, tinyWorld } from "./tokenizer_fixtures.ts";
import { assert, gpuReady, runCli } from "./helpers.ts";

async function tinyTokenizer(dir: string, name: string, seed: number): Promise<string> {
  const path = join(dir, name);
  const vq = new VQVAE(TINY_TOKENIZER, seed);
  await saveCheckpoint(path, vq.namedParameters(), "tokenizer", TINY_TOKENIZER);
  vq.dispose();
  return path;
}

Deno.test("tokenize writes shards of quantize.encode's indices and text ids, with the tokenizer's hash", async () => {
  await gpuReady;
  const w = await tinyWorld(8, 40);
  const tokPath = await tinyTokenizer(w.dir, "tok.safetensors", 5);
  const out = join(w.dir, "tokens");
  const args = ["--tokenizer", tokPath, "--data", w.val, "--out", out, "--batch", "16"];
  await tokenize([...args, "--per-shard", "25", "--text-length", "24"]);
  const shards = listTokenShards(out);
  assert(shards.length === 2, `${shards.length} shards for 40 images at 25 per shard`);
  const sha = await fileSha256(tokPath);
  const parts = await Promise.all(
    shards.map((p) => readTokenShard(p, { tokenizerSha256: sha, tokenizer: tokPath })),
  );
  assert(parts.every((s) => s.tokenizerSha256 === sha), "shards lack the tokenizer's sha256");
  const got = parts.flatMap((s) => Array.from(s.indices));
  const ids = parts.flatMap((s) => Array.from(s.textIds));

  // The same images through the same tokenizer, in the same batches.
  const tok = await loadTokenizer(tokPath);
  const set = await readImageSet(w.val, 16, 1000);
  const L = 30, per = 16 * 16 * 3;
  const want: number[] = [];
  for (let start = 0; start < set.count; start += 16) {
    const n = Math.min(16, set.count - start);
    const pixels = set.pixels.subarray(start * per, (start + n) * per);
    const perScale = await tidyAsync(async () => {
      const x = tensor(pixelsToFloatNCHW(pixels, n, 16), [n, 3, 16, 16]);
      return await Promise.all(encodeImages(tok.vq, x).map((t) => t.toArray()));
    });
    for (let i = 0; i < n; i++) {
      perScale.forEach((idx, k) => {
        const m = TINY_TOKENIZER.scales[k] ** 2;
        want.push(...idx.slice(i * m, (i + 1) * m));
      });
    }
  }
  tok.vq.dispose();
  assert(got.length === set.count * L, `${got.length} indices for ${set.count} images`);
  assert(got.every((v, i) => v === want[i]), "token shard indices differ from quantize.encode");
  const wantIds = set.captions.flatMap((c) => Array.from(captionIds(c, 24)));
  assert(ids.every((v, i) => v === wantIds[i]), "text ids differ from captionIds");

  // Another tokenizer: its hash differs, and the shards refuse it.
  const other = await tinyTokenizer(w.dir, "other.safetensors", 6);
  const otherSha = await fileSha256(other);
  let refused = "";
  try {
    await readTokenShard(shards[0], { tokenizerSha256: otherSha, tokenizer: other });
  } catch (e) {
    assert(e instanceof UserError, `not a UserError: ${e}`);
    refused = (e as Error).message;
  }
  assert(/another tokenizer.*re-run vmambar tokenize/.test(refused), `refusal: ${refused}`);
  // Tokenizing into a directory that already holds shards needs --force.
  let again = "";
  await tokenize(args).catch((e) => (again = (e as Error).message));
  assert(/already holds token shards/.test(again), `second run: ${again}`);
});

Deno.test("reconstruct writes NAME.recon.png and prints PSNR; bad tokenizers are one line", async () => {
  await gpuReady;
  const dir = (await tinyWorld(4, 4)).dir;
  const tokPath = await tinyTokenizer(dir, "tok.safetensors", 7);
  const image = join(dir, "flag.png");
  const rgb = Uint8Array.from({ length: 16 * 16 * 3 }, (_, i) => (i % 3 === 0 ? 200 : 30));
  await Deno.writeFile(image, encodePng(rgb, 16, 16));
  const truncated = join(dir, "truncated.safetensors");
  await Deno.writeFile(truncated, (await Deno.readFile(tokPath)).subarray(0, 5000));
  const state = join(dir, "state.safetensors");
  await saveCheckpoint(state, [], "train-state", {});
  const [ok, missing, cut, wrongKind, noData] = await Promise.all([
    runCli("reconstruct", "--tokenizer", tokPath, image),
    runCli("reconstruct", "--tokenizer", join(dir, "nope.safetensors"), image),
    runCli("reconstruct", "--tokenizer", truncated, image),
    runCli("tokenize", "--tokenizer", state, "--data", dir, "--out", join(dir, "t")),
    runCli("train-tokenizer", "--out", join(dir, "x.safetensors")),
  ]);
  assert(ok.code === 0, `reconstruct failed: ${ok.stderr}`);
  assert(/flag\.recon\.png\s+PSNR \d+\.\d+ dB/.test(ok.stdout), `stdout: ${ok.stdout}`);
  assert((await Deno.stat(join(dir, "flag.recon.png"))).size > 0, "no flag.recon.png");
  const cases = [
    [missing, /no such file/],
    [cut, /truncated|not a valid safetensors/],
    [wrongKind, /train-state checkpoint, expected a tokenizer/],
    [noData, /--data is required/],
  ] as const;
  for (const [r, pattern] of cases) {
    const lines = r.stderr.trim().split("\n");
    assert(r.code === 1 && lines.length === 1, `exit ${r.code}, stderr: ${r.stderr}`);
    assert(pattern.test(lines[0]) && !r.stderr.includes("    at "), `stderr: ${r.stderr}`);
  }
});

Deno.test("tokenize and reconstruct use the default tokenizer in models/ without --tokenizer", async () => {
  await gpuReady;
  const w = await tinyWorld(4, 3);
  const out = join(w.dir, "tokens");
  const image = join(w.dir, "flag.png");
  const rgb = Uint8Array.from({ length: 16 * 16 * 3 }, (_, i) => (i % 3 === 0 ? 200 : 30));
  await Deno.writeFile(image, encodePng(rgb, 16, 16));
  const [tok, rec] = await Promise.all([
    runCli("tokenize", "--data", w.val, "--out", out),
    runCli("reconstruct", image),
  ]);
  assert(tok.code === 0, `tokenize: ${tok.stderr}`);
  const sha = await fileSha256(DEFAULT_TOKENIZER);
  const shard = await readTokenShard(listTokenShards(out)[0], {
    tokenizerSha256: sha,
    tokenizer: DEFAULT_TOKENIZER,
  });
  assert(shard.tokenizerSha256 === sha, "token shards not made by the default tokenizer");
  assert(rec.code === 0 && /PSNR \d+\.\d+ dB/.test(rec.stdout), `reconstruct: ${rec.stderr}`);
  const def = await loadTokenizer(DEFAULT_TOKENIZER);
  const size = def.cfg.image;
  def.vq.dispose();
  const png = await Deno.readFile(join(w.dir, "flag.recon.png"));
  const width = new DataView(png.buffer, png.byteOffset).getUint32(16);
  assert(width === size, `reconstruction is ${width} px, the default tokenizer's side is ${size}`);
  // A missing default is one line that says what to pass.
  let missing = "";
  try {
    resolveTokenizer(undefined, join(w.dir, "none.safetensors"));
  } catch (e) {
    assert(e instanceof UserError, `not a UserError: ${e}`);
    missing = (e as Error).message;
  }
  assert(/no default tokenizer at .*none\.safetensors: pass --tokenizer/.test(missing), missing);
});

Deno.test("reconstruct --out DIR writes there, not beside the inputs, and prints the mean PSNR", async () => {
  await gpuReady;
  const dir = (await tinyWorld(4, 4)).dir;
  const tokPath = await tinyTokenizer(dir, "tok.safetensors", 8);
  const inputs = join(dir, "in");
  await Deno.mkdir(join(inputs, "b"), { recursive: true });
  const images = ["flag.png", "stripes.png", "b/flag.png"].map((n) => join(inputs, n));
  for (const [k, path] of images.entries()) {
    const rgb = Uint8Array.from({ length: 16 * 16 * 3 }, (_, i) => ((i * (k + 1)) % 7) * 30);
    await Deno.writeFile(path, encodePng(rgb, 16, 16));
  }
  await Deno.chmod(inputs, 0o555); // read-only inputs (no effect when the tests run as root)
  const out = join(dir, "recon");
  const r = await runCli(
    "reconstruct",
    "--tokenizer",
    tokPath,
    "--out",
    out,
    ...images.slice(0, 2),
  );
  await Deno.chmod(inputs, 0o755);
  assert(r.code === 0, `reconstruct --out: ${r.stderr}`);
  const written = [...Deno.readDirSync(out)].map((e) => e.name).sort().join();
  assert(written === "flag.recon.png,stripes.recon.png", `--out holds ${written}`);
  assert(!existsSync(join(inputs, "flag.recon.png")), "wrote beside the input too");
  const each = [...r.stdout.matchAll(/PSNR (\d+\.\d+) dB/g)].map((m) => Number(m[1]));
  const mean = r.stdout.match(/mean PSNR (\d+\.\d+) dB over 2 image/);
  assert(each.length === 3 && mean, `stdout: ${r.stdout}`);
  const want = (each[0] + each[1]) / 2;
  assert(Math.abs(Number(mean[1]) - want) <= 0.006, `mean ${mean[1]}, per image ${each}`);
  // Two inputs of one name would overwrite each other in DIR: refused before any work.
  const clash = await runCli(
    "reconstruct",
    "--tokenizer",
    tokPath,
    "--out",
    out,
    "--force",
    images[0],
    images[2],
  );
  assert(
    clash.code === 1 && /both be reconstructed as .*flag\.recon\.png/.test(clash.stderr),
    clash.stderr,
  );
});

Deno.test("tokenize --world N over fewer parts than N is one line, before any process or folder", async () => {
  await gpuReady;
  const w = await tinyWorld(8, 8);
  const out = join(w.dir, "tokens-world");
  // One shard is one part: two processes cannot share it.
  const r = await runCli("tokenize", "--data", w.val, "--out", out, "--world", "2");
  assert(r.code === 1, `exit ${r.code}: ${r.stderr}`);
  assert(/--world 2: .* splits into 1 part\(s\)/.test(r.stderr), r.stderr);
  assert(r.stderr.trim().split("\n").length === 1, `more than one line: ${r.stderr}`);
  assert(!existsSync(out) && !existsSync(`${out}.partial`), "a folder was made");
});
