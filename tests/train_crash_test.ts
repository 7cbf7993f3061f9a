// A training run survives being killed anywhere: SIGKILL at every kind of point inside the
// checkpoint writes (VMAMBAR_KILL_AT) and at a random moment, each time resumed, ends with the
// same weights and losses as a run never interrupted; SIGINT saves and says how to resume.
import { join } from "node:path";
import { readSafetensors } from "../lib/io/safetensors.ts";
import { TINY_TOKENIZER } from "./tokenizer_fixtures.ts";
import { writeShapes } from "../lib/data/shapes.ts";
import { tempDir } from "./data_fixtures.ts";

const root = new URL("..", import.meta.url).pathname;
const STEPS = 16;

function assert(ok: unknown, msg: string): asserts ok {
  if (!ok) throw new Error(msg);
}

async function world() {
  const dir = await tempDir("crash");
  await writeShapes({
    n: 24,
    side: 16,
    seed: 5,
    out: join(dir, "data"),
    split: "t",
    perShard: 100,
  });
  await Deno.writeTextFile(join(dir, "tiny.json"), JSON.stringify(TINY_TOKENIZER));
  return dir;
}

/** A train-tokenizer run: a checkpoint every step, so every step crosses every write point. */
function trainArgs(dir: string, out: string, extra: string[] = []): string[] {
  return [
    "run",
    "-A",
    join(root, "main.ts"),
    "train-tokenizer",
    ...["--data", join(dir, "data"), "--config", join(dir, "tiny.json"), "--out", out],
    ...["--batch", "2", "--steps", String(STEPS), "--warmup", "2", "--log-every", "1"],
    ...["--checkpoint-every", "1", "--val-every", "0", "--restart-every", "2"],
    ...["--shuffle-buffer", "10", "--decode-threads", "2"],
    ...extra,
  ];
}

interface Done {
  code: number;
  signal: Deno.Signal | null;
  stderr: string;
}

async function train(args: string[], env: Record<string, string> = {}): Promise<Done> {
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    env,
    stdout: "null",
    stderr: "piped",
  })
    .output();
  return { code: out.code, signal: out.signal, stderr: new TextDecoder().decode(out.stderr) };
}

/** Starts a run, waits for a progress line matching `ready`, then sends `signal` after `delayMs`. */
async function trainAndSignal(
  args: string[],
  ready: RegExp,
  signal: Deno.Signal,
  delayMs: number,
): Promise<Done> {
  const child = new Deno.Command(Deno.execPath(), { args, stdout: "null", stderr: "piped" })
    .spawn();
  let stderr = "";
  const reading = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      stderr += chunk;
    }
  })();
  let exited = false;
  child.status.then(() => exited = true);
  while (!ready.test(stderr) && !exited) await new Promise((r) => setTimeout(r, 20));
  await new Promise((r) => setTimeout(r, delayMs));
  try {
    child.kill(signal);
  } catch {
    // It finished first.
  }
  const status = await child.status;
  await reading;
  return { code: status.code, signal: status.signal, stderr };
}

async function finalState(out: string) {
  const tok = await readSafetensors(out);
  const state = await readSafetensors(out.replace(".safetensors", ".train-state.safetensors"));
  const losses = (await Deno.readTextFile(out.replace(".safetensors", ".metrics.jsonl")))
    .trim().split("\n").map((l) => JSON.parse(l)).filter((m) => m.kind === "train")
    .map((m) => `${m.step}:${m.loss}`).join(" ");
  return { tok, state, losses };
}

async function assertSameRun(out: string, ref: string, what: string) {
  const [a, b] = [await finalState(out), await finalState(ref)];
  assert(a.tok.metadata.step === String(STEPS), `${what}: ended at step ${a.tok.metadata.step}`);
  assert(a.losses === b.losses, `${what}: losses differ\n${a.losses}\n${b.losses}`);
  for (const [x, y] of [[a.tok, b.tok], [a.state, b.state]]) {
    for (const [name, t] of y.tensors) {
      const u = x.tensors.get(name);
      assert(u && u.data.every((v, i) => v === t.data[i]), `${what}: ${name} differs`);
    }
  }
  const dir = out.slice(0, out.lastIndexOf("/"));
  const temps = [...Deno.readDirSync(dir)].filter((e) => e.name.includes(".tmp-"));
  assert(temps.length === 0, `${what}: left ${temps.map((e) => e.name)}`);
}

Deno.test("train-tokenizer killed at every write point, and at random, resumes to the same run", async () => {
  const dir = await world();
  const ref = join(dir, "ref.safetensors");
  const r = await train(trainArgs(dir, ref));
  assert(r.code === 0, `reference run: ${r.stderr}`);

  // Each step writes a metrics line (1 point), the train-state (4) and the tokenizer (4). A run
  // killed at its point 9 + o finishes its first step and dies at offset o of the next, so the
  // kills below land on every point of a step's writes; point 3 dies in the very first
  // train-state, before anything can be resumed.
  const out = join(dir, "crashed.safetensors");
  const state = out.replace(".safetensors", ".train-state.safetensors");
  const killAt = [3, 17, 16, 15, 14, 13, 12, 11, 10, 18];
  const hit: string[] = [];
  // With no train-state yet there is nothing to resume: the run starts over.
  const again = () => {
    try {
      Deno.statSync(state);
      return trainArgs(dir, out, ["--resume"]);
    } catch {
      return trainArgs(dir, out, ["--force"]);
    }
  };
  for (const k of killAt) {
    const run = await train(again(), { VMAMBAR_KILL_AT: String(k) });
    if (run.code === 0) break;
    assert(run.signal === "SIGKILL", `kill at ${k}: exit ${run.code}: ${run.stderr}`);
    hit.push(/killed at (.*)/.exec(run.stderr)![1].replace(dir + "/", "").replace(/-\d+/, ""));
  }
  console.log(`killed at: ${hit.join("; ")}`);
  const points = ["crashed.metrics.jsonl line"];
  for (const file of ["crashed.train-state.safetensors", "crashed.safetensors"]) {
    for (const w of ["created", "half written", "written"]) points.push(`${file}.tmp ${w}`);
    points.push(`${file} renamed`);
  }
  for (const p of points) assert(hit.includes(p), `never killed at ${p}: ${hit.join("; ")}`);
  // And once at a random moment of a step.
  const random = await trainAndSignal(
    trainArgs(dir, out, ["--resume"]),
    /step \d+\//,
    "SIGKILL",
    Math.random() * 1500,
  );
  assert(random.code === 0 || random.signal === "SIGKILL", `random kill: ${random.stderr}`);
  const last = await train(trainArgs(dir, out, ["--resume"]));
  assert(last.code === 0 || /at step 8/.test(last.stderr), `final resume: ${last.stderr}`);
  await assertSameRun(out, ref, "killed and resumed");

  // SIGINT: the step finishes, a checkpoint is written, the message says how to go on.
  const stopped = join(dir, "stopped.safetensors");
  const sig = await trainAndSignal(trainArgs(dir, stopped), /step 2\//, "SIGINT", 0);
  assert(sig.code === 1, `SIGINT: exit ${sig.code} ${sig.signal}: ${sig.stderr}`);
  const line = sig.stderr.trim().split("\n").at(-1)!;
  assert(/stopped by SIGINT at step \d+ and saved.*--resume/.test(line), `SIGINT: ${line}`);
  const at = (await readSafetensors(stopped)).metadata.step;
  assert(Number(at) >= 2 && Number(at) < STEPS, `SIGINT saved step ${at}`);
  const resumed = await train(trainArgs(dir, stopped, ["--resume"]));
  assert(resumed.code === 0, `resume after SIGINT: ${resumed.stderr}`);
  await assertSameRun(stopped, ref, "SIGINT and resumed");
});
