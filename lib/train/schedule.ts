// Learning-rate schedule: linear warmup, then cosine decay to a floor (as VAR's and nanoGPT's).

export interface Schedule {
  lr: number;
  warmup: number;
  total: number;
  /** The rate at the end, as a fraction of lr (default 0.1). */
  minRatio?: number;
}

export function learningRate(step: number, s: Schedule): number {
  const floor = s.lr * (s.minRatio ?? 0.1);
  if (step < s.warmup) return (s.lr * (step + 1)) / s.warmup;
  if (step >= s.total) return floor;
  const progress = (step - s.warmup) / Math.max(1, s.total - s.warmup);
  return floor + 0.5 * (s.lr - floor) * (1 + Math.cos(Math.PI * progress));
}
