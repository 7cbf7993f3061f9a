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

/**
 * `--fit`: the schedule's length that ends within `maxMinutes`, from the speed measured since
 * `timed` (a step and its time in seconds from the run's start), keeping a reserve for validation
 * and the last checkpoint; `steps` where that already fits. Never below warmup + 1.
 */
export function fittedSteps(
  s: { steps: number; warmup: number },
  step: number,
  timed: { step: number; time: number },
  now: number,
  maxMinutes: number,
): number {
  const perStep = (now - timed.time) / Math.max(1, step - timed.step);
  const left = maxMinutes * 60 * 0.95 - now - 30;
  const fits = step + Math.floor(left / perStep);
  return fits < s.steps ? Math.max(s.warmup + 1, fits) : s.steps;
}
