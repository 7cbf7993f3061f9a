// Which scale decides a wrong count? Each prompt of the chosen kinds is drawn once at the default
// sampling; then, for each K in --keep, its first K scales' tokens are kept and the rest redrawn
// --redraws times with other seeds. If a wrong count survives the redraws from K, the first K
// scales decided it. K = 0 redraws everything (the base rate); K = the number of scales keeps every
// token, so every redraw must repeat its original (a check of the forcing itself).
//   deno run -A tools/redraw_diag.ts [--model M] [--tokenizer T] [--seeds 0,1] [--redraws 2]
//     [--keep 0,3,4,5,6] [--kinds count,relation]
// One line per K and per original outcome: the share of redraws with the count wrong, and with
// anything wrong.
import { parseArgs } from "node:util";
import { intFlag, numberListFlag } from "../lib/cli/args.ts";
import { DEFAULT_MODEL, DEFAULT_TOKENIZER } from "../lib/cli/defaults.ts";
import { batchCaptionIds } from "../lib/data/text.ts";
import { detectScene } from "../lib/eval/detect.ts";
import { PROMPT_KINDS, scorePrompt, shapesPromptSet } from "../lib/eval/shapes_eval.ts";
import { initGpu } from "../lib/gpu/mod.ts";
import { generateScales, type TokenPicker } from "../lib/model/generate.ts";
import { loadModel } from "../lib/model/load.ts";
import { DEFAULT_SAMPLING, guidanceCfg, samplingPicker } from "../lib/model/sample.ts";
import { concat } from "../lib/tensor/ops.ts";
import { noGrad, tensor, tidyAsync } from "../lib/tensor/tensor.ts";
import { loadTokenizer } from "../lib/tokenizer/load.ts";
import { floatNCHWToPixels } from "../lib/tokenizer/reconstruct.ts";

function usage(message: string): never {
  console.error(`redraw_diag: ${message}`);
  Deno.exit(2);
}

const values = (() => {
  try {
    const { values } = parseArgs({
      args: Deno.args,
      options: {
        model: { type: "string", default: DEFAULT_MODEL },
        tokenizer: { type: "string", default: DEFAULT_TOKENIZER },
        seeds: { type: "string", default: "0" },
        redraws: { type: "string", default: "2" },
        keep: { type: "string", default: "0,3,4,5" },
        kinds: { type: "string", default: "count,relation" },
      },
    });
    return values;
  } catch (e) {
    usage((e as Error).message.split("\n")[0]);
  }
})();
const lists = (() => {
  try {
    return {
      seeds: numberListFlag(values, "seeds"),
      redraws: intFlag(values, "redraws", 1),
      keep: numberListFlag(values, "keep"),
    };
  } catch (e) {
    usage((e as Error).message);
  }
})();
const kinds = values.kinds!.split(",").map((k) => k.trim());
for (const k of kinds) {
  if (!(PROMPT_KINDS as readonly string[]).includes(k)) {
    usage(`--kinds ${values.kinds}: ${k} is not one of ${PROMPT_KINDS.join(", ")}`);
  }
}
if (!lists.seeds.every(Number.isInteger)) usage(`--seeds ${values.seeds}: not whole numbers`);

await initGpu();
const loaded = await Promise.all([loadTokenizer(values.tokenizer!), loadModel(values.model!)])
  .catch((e) => usage((e as Error).message));
const [tok, { model }] = loaded;
const scales = model.cfg.scales;
for (const k of lists.keep) {
  if (!Number.isInteger(k) || k > scales.length) usage(`--keep ${k}: not 0..${scales.length}`);
}
const size = tok.cfg.image, per = size * size * 3, T = model.cfg.text_length;
// tally[keep][original count wrong ? 1 : 0] = [redraws, count wrong, anything wrong]
const tally = lists.keep.map(() => [[0, 0, 0], [0, 0, 0]]);
let originals = 0, originalsWrong = 0;
for (const seed of lists.seeds) {
  const prompts = shapesPromptSet(seed, undefined, size).filter((p) => kinds.includes(p.kind));
  const B = prompts.length;
  const ids = batchCaptionIds(prompts.map((p) => p.scene.caption), T);
  const o = { ...DEFAULT_SAMPLING, seed: seed * 7919 + 1 };
  // One draw of every prompt at once: its indices per scale (host) and each image's score.
  const draw = (pick: TokenPicker) =>
    tidyAsync(async () => {
      const g = generateScales(model, tok.vq.quantize, ids, guidanceCfg(o), pick);
      // Every scale's indices in one readback: row b holds scale 0's, then scale 1's, ...
      const all = await concat(g.indices.map((t) => t.reshape([B, -1])), 1).toArray();
      const L = all.length / B;
      let at = 0;
      const idx = scales.map((pn) => {
        const n = pn * pn, out = new Int32Array(B * n);
        for (let b = 0; b < B; b++) out.set(all.slice(b * L + at, b * L + at + n), b * n);
        at += n;
        return out;
      });
      const x = noGrad(() => tok.vq.decodeMap(g.fHat));
      const px = floatNCHWToPixels(await x.toArray(), B, size);
      const scores = prompts.map((p, i) =>
        scorePrompt(p, detectScene(px.subarray(i * per, (i + 1) * per), size))
      );
      return { idx, scores };
    });
  const original = await draw(samplingPicker(o));
  const wrong = original.scores.map((s) => !s.checked.count);
  originals += B;
  originalsWrong += wrong.filter(Boolean).length;
  for (const [a, keep] of lists.keep.entries()) {
    for (let r = 0; r < lists.redraws; r++) {
      const fresh = samplingPicker({ ...o, seed: o.seed + 1000 * (r + 1) + 17 * a });
      // Scales below `keep` return the original's tokens (a scale's, or one token of a scale
      // drawn token by token); the rest are drawn afresh.
      const pick: TokenPicker = (k, cond, uncond, t, row) => {
        if (k >= keep) return fresh(k, cond, uncond, t, row);
        const n = scales[k] * scales[k], src = original.idx[k];
        if (row === undefined) return tensor(Int32Array.from(src), [B * n], "i32");
        return tensor(Int32Array.from({ length: B }, (_, b) => src[b * n + row]), [B], "i32");
      };
      const redrawn = await draw(pick);
      redrawn.scores.forEach((s, i) => {
        const t = tally[a][wrong[i] ? 1 : 0];
        t[0]++;
        if (!s.checked.count) t[1]++;
        if (!s.allRight) t[2]++;
      });
    }
  }
  console.error(`seed ${seed} done`);
}
const pct = (x: number, n: number) => (n === 0 ? "  –  " : `${(100 * x / n).toFixed(1)}%`);
console.log(`${values.model}: ${originalsWrong} of ${originals} original draws count wrong`);
for (const [a, keep] of lists.keep.entries()) {
  for (const w of [1, 0]) {
    const [n, countWrong, anyWrong] = tally[a][w];
    console.log(
      `keep ${keep} scale(s) (pn ${scales.slice(0, keep).join(",") || "none"}), original count ` +
        `${w ? "wrong" : "right"}: ${n} redraws, count wrong ${pct(countWrong, n)}, ` +
        `anything wrong ${pct(anyWrong, n)}`,
    );
  }
}
model.dispose();
tok.vq.dispose();
