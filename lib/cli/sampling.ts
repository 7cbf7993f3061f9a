// The sampling options `generate`, `eval --set shapes` and `bench generate` share: one spec, one
// parser, the defaults of DEFAULT_SAMPLING (lib/model/sample.ts).
import { UserError } from "../errors.ts";
import { DEFAULT_SAMPLING, type SamplingOptions } from "../model/sample.ts";
import { type CommandSpec, intFlag, numberFlag, stringOption as str, type Values } from "./args.ts";

/** --cfg, --temperature, --top-k, --top-p (the seed stays each command's own). */
export const SAMPLING_OPTIONS: CommandSpec["options"] = {
  cfg: str("classifier-free guidance scale (0: off)", "S", String(DEFAULT_SAMPLING.cfg)),
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
  candidates: str(
    "draw N images per prompt and keep the one the model finds likeliest under its prompt " +
      "(N times the work)",
    "N",
    String(DEFAULT_SAMPLING.candidates ?? 1),
  ),
};

/** The sampling options of parsed values, each checked, with `seed`. */
export function samplingFlags(v: Values, seed: number): SamplingOptions {
  const cfg = numberFlag(v, "cfg", { min: 0 });
  const list = String(v.temperature).split(",").map((t) => t.trim());
  const temps = list.map((t) => {
    const x = t === "" ? NaN : Number(t);
    if (!(x >= 0 && x < Infinity)) {
      throw new UserError(`--temperature: ${JSON.stringify(t)} is not a number ≥ 0`);
    }
    return x;
  });
  const temperature = temps[0];
  const topK = intFlag(v, "top-k", 0);
  const topP = numberFlag(v, "top-p");
  if (!(topP > 0 && topP <= 1)) throw new UserError(`--top-p must be in (0, 1], got ${topP}`);
  const candidates = intFlag(v, "candidates", 1, 64);
  return {
    cfg,
    candidates,
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
  const parts = [`cfg ${o.cfg}`, `temperature ${t}`];
  if (o.topK > 0) parts.push(`top-k ${o.topK}`);
  if (o.topP < 1) parts.push(`top-p ${o.topP}`);
  if ((o.candidates ?? 1) > 1) parts.push(`best of ${o.candidates}`);
  return parts.join(", ");
}
