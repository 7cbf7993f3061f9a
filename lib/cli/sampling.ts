// The sampling options `generate`, `eval --set shapes` and `bench generate` share: one spec, one
// parser, the defaults of DEFAULT_SAMPLING (lib/model/sample.ts).
import { UserError } from "../errors.ts";
import { gpuStarted } from "../gpu/mod.ts";
import {
  AUTO_CANDIDATES,
  candidateCount,
  DEFAULT_SAMPLING,
  guidanceCfg,
  type SamplingOptions,
} from "../model/sample.ts";
import {
  type CommandSpec,
  intFlag,
  numberFlag,
  numberListFlag,
  stringOption as str,
  type Values,
} from "./args.ts";

export { guidanceCfg };

/** --cfg, --temperature, --top-k, --top-p (the seed stays each command's own). */
export const SAMPLING_OPTIONS: CommandSpec["options"] = {
  cfg: str(
    "classifier-free guidance scale (0: off; down to -1, which leans on the null caption), " +
      "reached at the last scale; a list G1,G2,… sets each scale's guidance instead, coarsest " +
      "first, the last repeating",
    "S",
    String(DEFAULT_SAMPLING.cfg),
  ),
  temperature: str(
    "sampling temperature (0: greedy); a list T1,T2,… sets it per scale, coarsest first, the " +
      "last repeating",
    "T",
    String(DEFAULT_SAMPLING.temperature),
  ),
  "top-k": str(
    "sample among the K most likely tokens (0: all)",
    "K",
    String(DEFAULT_SAMPLING.topK),
  ),
  "top-p": str(
    "sample among the most likely tokens holding this much probability",
    "P",
    String(DEFAULT_SAMPLING.topP),
  ),
  sequential: str(
    "draw the tokens of scales 2 to N+1 one at a time in raster order, each given those drawn " +
      "before it (a pass of its scale per token, so slower); 0: each scale's tokens at once, as VAR",
    "N",
    String(DEFAULT_SAMPLING.sequential ?? 0),
  ),
  candidates: str(
    "draw N images per prompt and keep the one the model scores best (likely under the prompt " +
      `and without it); auto: ${AUTO_CANDIDATES.gpu} on a GPU, where they cost far less than ` +
      `${AUTO_CANDIDATES.gpu} images, ${AUTO_CANDIDATES.cpu} on a CPU, where each costs a whole image`,
    "N",
    "auto",
  ),
};

/** The sampling options of parsed values, each checked, with `seed`. */
export function samplingFlags(v: Values, seed: number): SamplingOptions {
  const guidance = numberListFlag(v, "cfg", -1);
  const cfg = guidance[0];
  const temps = numberListFlag(v, "temperature");
  const temperature = temps[0];
  const topK = intFlag(v, "top-k", 0);
  const topP = numberFlag(v, "top-p");
  if (!(topP > 0 && topP <= 1)) throw new UserError(`--top-p must be in (0, 1], got ${topP}`);
  const candidates = v.candidates === "auto" ? undefined : intFlag(v, "candidates", 1, 64);
  const sequential = intFlag(v, "sequential", 0, 64);
  if (sequential > 0 && candidates !== undefined && candidates > 1) {
    throw new UserError("--candidates and --sequential do not go together: pick one");
  }
  return {
    cfg,
    ...(guidance.length > 1 ? { guidanceByScale: guidance } : {}),
    ...(sequential > 0 ? { sequential } : {}),
    ...(candidates !== undefined ? { candidates } : {}),
    temperature,
    topK,
    topP,
    seed,
    ...(temps.length > 1 ? { temperatureByScale: temps } : {}),
  };
}

/** "cfg 1, temperature 1" and the top-k/top-p filters where they are on. */
export function samplingText(o: SamplingOptions): string {
  const t = o.temperatureByScale?.length ? o.temperatureByScale.join("/") : o.temperature;
  const g = o.guidanceByScale?.length ? `guidance ${o.guidanceByScale.join("/")}` : `cfg ${o.cfg}`;
  const parts = [g, `temperature ${t}`];
  if (o.sequential) {
    parts.push(`${o.sequential === 1 ? "scale 2" : `scales 2–${o.sequential + 1}`} token by token`);
  }
  if (o.topK > 0) parts.push(`top-k ${o.topK}`);
  if (o.topP < 1) parts.push(`top-p ${o.topP}`);
  const n = o.candidates ?? (gpuStarted() ? candidateCount(o) : "auto");
  if (n !== 1) parts.push(`best of ${n}`);
  return parts.join(", ");
}
