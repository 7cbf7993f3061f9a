// `vmambar bench generate` on a tiny random model: it runs, its JSON has the headline and the
// phases, --help describes it and bad flags are one line.
import { join } from "node:path";
import { tinyCheckpoints } from "./checkpoint_fixtures.ts";
import { assert, runCli } from "./helpers.ts";
import { TINY_TOKENIZER } from "./tokenizer_fixtures.ts";
import { DEFAULT_SAMPLING } from "../lib/model/sample.ts";

Deno.test("bench generate: a tiny random model, 2 runs; the JSON has the headline and phases", async () => {
  const r = await tinyCheckpoints("bench_gen");
  const json = join(r.dir, "bench.json");
  const base = ["bench", "generate", "--model", r.model, "--tokenizer", r.tokenizer];
  const res = await runCli(...base, "--runs", "2", "--json", json);
  assert(res.code === 0, res.stderr);
  assert(/time to one image: [\d.]+ m?s, median of 2 runs/.test(res.stdout), res.stdout);
  assert(/token generation/.test(res.stdout) && /readback/.test(res.stdout), res.stdout);
  const doc = JSON.parse(await Deno.readTextFile(json));
  for (const k of ["device", "model", "tokenizer", "date", "prompt"]) {
    assert(typeof doc[k] === "string" && doc[k] !== "", `${k}: ${doc[k]}`);
  }
  assert(
    doc.runs === 2 && doc.batch === 1 && doc.cfg === DEFAULT_SAMPLING.cfg && doc.image === 16,
    res.stdout,
  );
  assert(doc.scales.join() === TINY_TOKENIZER.scales.join(), `scales ${doc.scales}`);
  assert(Array.isArray(doc.runs_ms) && doc.runs_ms.length === 2, `runs_ms ${doc.runs_ms}`);
  const positive = (x: unknown) => typeof x === "number" && x > 0 && Number.isFinite(x);
  for (const k of ["total_ms", "per_image_ms", "warmup_ms", "load_ms", "gpu_memory_mib"]) {
    assert(positive(doc[k]), `${k}: ${doc[k]}`);
  }
  assert(
    doc.total_ms >= Math.min(...doc.runs_ms) && doc.total_ms <= Math.max(...doc.runs_ms),
    "the median lies outside the runs",
  );
  for (const k of ["tokens_ms", "readback_ms", "wait_ms"]) {
    assert(positive(doc.breakdown?.[k]), `breakdown.${k}: ${doc.breakdown?.[k]}`);
  }
  for (const k of ["text_ms", "decode_ms"]) {
    const x = doc.breakdown?.[k];
    assert(typeof x === "number" && x >= 0 && Number.isFinite(x), `breakdown.${k}: ${x}`);
  }
  assert(typeof doc.isCpu === "boolean" && typeof doc.f16 === "boolean", "flags");
  assert(doc.parameters > 0, `parameters ${doc.parameters}`);

  // Several images at once, unguided, no phases; an existing --json is refused first.
  const again = await runCli(...base, "--runs", "1", "--json", json);
  assert(again.code === 1 && /--json .*exists/.test(again.stderr), again.stderr);
  const res2 = await runCli(
    ...base,
    ...["--runs", "1", "--batch", "2", "--cfg", "0", "--no-breakdown", "--json", json, "--force"],
  );
  assert(res2.code === 0, res2.stderr);
  const doc2 = JSON.parse(await Deno.readTextFile(json));
  assert(doc2.batch === 2 && doc2.cfg === 0 && doc2.breakdown === null, JSON.stringify(doc2));
  // Both are rounded to 1 µs in the JSON.
  assert(Math.abs(doc2.per_image_ms - doc2.total_ms / 2) <= 1e-3, "per image = total / batch");
  assert(/2 images: .* per image/.test(res2.stdout), res2.stdout);
});

Deno.test("bench generate: --help describes it; bad flags are one line", async () => {
  const help = await runCli("bench", "generate", "--help");
  assert(help.code === 0 && /time to one image/.test(help.stdout), help.stdout);
  for (const flag of ["--runs", "--batch", "--cfg", "--json", "--model", "--tokenizer"]) {
    assert(help.stdout.includes(flag), `--help lacks ${flag}`);
  }
  const bench = await runCli("bench", "--help");
  assert(/bench generate/.test(bench.stdout), bench.stdout);
  const bad = await runCli("bench", "generate", "--runs", "0");
  assert(bad.code === 1 && bad.stderr.trim().split("\n").length === 1, bad.stderr);
  assert(/--runs must be an integer in \[1, 1000\]/.test(bad.stderr), bad.stderr);
  const none = await runCli("bench", "generate", "--model", "/nonexistent/m.safetensors");
  assert(none.code === 1 && /no such file/.test(none.stderr), none.stderr);
});
