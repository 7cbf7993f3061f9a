// `vmambar eval --set shapes` over many sampling settings and seeds in one process: the model and
// the pipelines load once, so a grid of settings × seeds costs only the images (seconds each on
// a GPU). One line per setting: every attribute right over all its prompts, with the binomial
// standard error, then the per-kind and per-attribute shares that matter most.
//   deno run -A tools/sampling_sweep.ts [--model M] [--tokenizer T] [--seeds 0-9] [--batch 100]
//     [--limit N] [--kinds count,relation] [--json FILE] --sets="--cfg 1;--temperature 1,1,0.5"
// Each set is a list of `vmambar eval` sampling flags (--cfg, --temperature, --top-k, --top-p,
// --sequential, --candidates); an empty set is the defaults.
import { parseArgs } from "node:util";
import { parseCommand } from "../lib/cli/args.ts";
import { DEFAULT_MODEL, DEFAULT_TOKENIZER } from "../lib/cli/defaults.ts";
import { shapesRun } from "../lib/cli/eval.ts";
import { prepareOutputFile, writeAtomic } from "../lib/cli/output.ts";
import { SAMPLING_OPTIONS, samplingFlags, samplingText } from "../lib/cli/sampling.ts";
import { PROMPT_KINDS, type PromptScore, summarize } from "../lib/eval/shapes_eval.ts";
import { initGpu } from "../lib/gpu/mod.ts";
import { loadModel } from "../lib/model/load.ts";
import { loadTokenizer } from "../lib/tokenizer/load.ts";

function usage(message: string): never {
  console.error(`sampling_sweep: ${message}`);
  Deno.exit(2);
}

const { values } = (() => {
  try {
    return parseArgs({
      args: Deno.args,
      options: {
        model: { type: "string", default: DEFAULT_MODEL },
        tokenizer: { type: "string", default: DEFAULT_TOKENIZER },
        seeds: { type: "string", default: "0-9" },
        batch: { type: "string", default: "100" },
        limit: { type: "string" },
        kinds: { type: "string" },
        sets: { type: "string", default: "" },
        json: { type: "string" },
      },
    });
  } catch (e) {
    usage((e as Error).message.split("\n")[0]);
  }
})();

/** "0-9" or "0,1,2" → seeds. */
function seedList(text: string): number[] {
  const range = /^(\d+)-(\d+)$/.exec(text);
  if (range) {
    const [a, b] = [Number(range[1]), Number(range[2])];
    if (b < a) usage(`--seeds ${text}: empty range`);
    return Array.from({ length: b - a + 1 }, (_, i) => a + i);
  }
  const list = text.split(",").map(Number);
  if (list.some((x) => !Number.isInteger(x) || x < 0)) usage(`--seeds ${text}: not seeds`);
  return list;
}

const seeds = seedList(values.seeds!);
const batch = Number(values.batch);
if (!Number.isInteger(batch) || batch < 1) usage(`--batch ${values.batch}: not a count`);
const limit = values.limit === undefined ? undefined : Number(values.limit);
// --kinds: only the prompts of these kinds (a cheaper run on the CPU for one kind's misses).
const kinds = values.kinds?.split(",").map((k) => k.trim());
for (const k of kinds ?? []) {
  if (!(PROMPT_KINDS as readonly string[]).includes(k)) {
    usage(`--kinds ${values.kinds}: ${k} is not one of ${PROMPT_KINDS.join(", ")}`);
  }
}
const spec = { name: "sampling_sweep", usage: "", summary: "", options: SAMPLING_OPTIONS };
const sets = values.sets!.split(";").map((text) => {
  try {
    const parsed = parseCommand(spec, text.trim() === "" ? [] : text.trim().split(/\s+/));
    return { text: text.trim() || "(defaults)", values: parsed!.values };
  } catch (e) {
    usage(`set "${text}": ${(e as Error).message}`);
  }
});
// Every set parsed before any work: a typo in the last one costs nothing.
for (const s of sets) {
  try {
    samplingFlags(s.values, 0);
  } catch (e) {
    usage(`set "${s.text}": ${(e as Error).message}`);
  }
}

// --json is checked before any work (one line), then rewritten whole after each set.
try {
  if (values.json) prepareOutputFile(values.json, { force: true, flag: "--json" });
} catch (e) {
  usage((e as Error).message);
}
if (limit !== undefined && !(Number.isInteger(limit) && limit > 0)) {
  usage(`--limit ${values.limit}: not a count`);
}
await initGpu();
// A missing or wrong checkpoint is one line, as in `vmambar eval`.
const loaded = await Promise.all([loadTokenizer(values.tokenizer!), loadModel(values.model!)])
  .catch((e) => usage((e as Error).message));
const [tok, { model }] = loaded;
const pct = (r: number, t: number) => (t === 0 ? "  –  " : `${(100 * r / t).toFixed(1)}%`);
console.log(`${values.model}, seeds ${seeds.join(",")}, batch ${batch}`);
const results = [];
for (const s of sets) {
  const prompts = [], scores: PromptScore[] = [];
  let secs = 0;
  for (const seed of seeds) {
    const r = await shapesRun(model, tok, {
      seed,
      limit,
      kinds,
      batch,
      sampling: samplingFlags(s.values, seed),
    });
    prompts.push(...r.prompts);
    scores.push(...r.scores);
    secs += r.secs;
  }
  const sum = summarize(prompts, scores);
  const p = sum.allRight / sum.prompts;
  const se = Math.sqrt(p * (1 - p) / sum.prompts);
  const k = sum.kinds, a = sum.attributes;
  console.log(
    `${pct(sum.allRight, sum.prompts)} ± ${(100 * se).toFixed(1)}  ` +
      `kinds attr/cell/rel/count ${pct(k.attributes.right, k.attributes.total)} ` +
      `${pct(k.cell.right, k.cell.total)} ${pct(k.relation.right, k.relation.total)} ` +
      `${pct(k.count.right, k.count.total)}  count ${pct(a.count.right, a.count.total)} ` +
      `shape ${pct(a.shape.right, a.shape.total)} colour ${pct(a.colour.right, a.colour.total)}  ` +
      `${secs.toFixed(1)} s  | ${s.text} (${samplingText(samplingFlags(s.values, 0))})`,
  );
  results.push({ set: s.text, seeds, secs, summary: sum });
  if (values.json) await writeAtomic(values.json, JSON.stringify(results, null, 1));
}
model.dispose();
tok.vq.dispose();
