// The files a training run writes beside its checkpoint, so the CLI can check them all before
// any work without loading the trainer.
import { existsSync } from "node:fs";
import { UserError } from "../errors.ts";

export function runFiles(out: string) {
  const base = out.replace(/\.safetensors$/, "");
  return {
    state: `${base}.train-state.safetensors`,
    metrics: `${base}.metrics.jsonl`,
    grid: `${base}.recon.png`,
  };
}

/**
 * A fresh run's files: refuses an existing checkpoint without --force, removes what an earlier
 * run left beside it, and starts an empty metrics log.
 */
export async function clearForFreshRun(
  out: string,
  force: boolean,
  beside: string[],
  metrics: string,
): Promise<void> {
  if (existsSync(out) && !force) {
    throw new UserError(
      `${out} exists: pass --resume to continue its training or --force to start over`,
    );
  }
  for (const path of [...beside, out]) await Deno.remove(path).catch(() => {});
  await Deno.writeTextFile(metrics, "");
}
