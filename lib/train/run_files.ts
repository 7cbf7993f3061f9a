// The files a training run writes beside its checkpoint, so the CLI can check them all before
// any work without loading the trainer.

export function runFiles(out: string) {
  const base = out.replace(/\.safetensors$/, "");
  return {
    state: `${base}.train-state.safetensors`,
    metrics: `${base}.metrics.jsonl`,
    grid: `${base}.recon.png`,
  };
}
