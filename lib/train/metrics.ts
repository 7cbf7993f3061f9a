// Training metrics: one JSON object per line (metrics.jsonl), appended as training goes, plus the
// image-quality measures the tokenizer reports.
import { killPoint } from "../io/kill_points.ts";

export class MetricsLog {
  #file: Deno.FsFile | null = null;
  constructor(readonly path: string) {}

  async write(record: Record<string, unknown>): Promise<void> {
    killPoint(`${this.path} line`);
    this.#file ??= await Deno.open(this.path, { create: true, append: true });
    await this.#file.write(
      new TextEncoder().encode(JSON.stringify({ time: Date.now(), ...record }) + "\n"),
    );
  }

  close(): void {
    this.#file?.close();
    this.#file = null;
  }
}

/** Drops the metrics lines a crash left past the saved step: the resumed run writes them again. */
export async function keepMetricsUpTo(path: string, step: number): Promise<void> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch {
    return;
  }
  const kept = text.split("\n").filter((line) => {
    if (line.trim() === "") return false;
    try {
      return (JSON.parse(line).step ?? 0) <= step;
    } catch {
      return false; // a line cut by the crash
    }
  });
  await Deno.writeTextFile(path, kept.map((l) => l + "\n").join(""));
}

/** A duration for a progress line: 45s, 3m07s, 2h05m. */
export const formatDuration = (s: number) =>
  s >= 3600
    ? `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, "0")}m`
    : s >= 60
    ? `${Math.floor(s / 60)}m${String(Math.floor(s % 60)).padStart(2, "0")}s`
    : `${s.toFixed(0)}s`;

/** PSNR in dB of images in [0, 255] (or any range with that peak). */
export function psnr(a: ArrayLike<number>, b: ArrayLike<number>, peak = 255): number {
  let se = 0;
  for (let i = 0; i < a.length; i++) se += (a[i] - b[i]) ** 2;
  const mse = se / a.length;
  return mse === 0 ? Infinity : 10 * Math.log10((peak * peak) / mse);
}

/**
 * SSIM of two HWC images in [0, 255] (Wang et al. 2004: 11×11 Gaussian window σ 1.5,
 * K1 0.01, K2 0.03), averaged over channels and valid window positions.
 */
export function ssim(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  h: number,
  w: number,
  c: number,
): number {
  const win = 11, sigma = 1.5, half = 5;
  const g: number[] = [];
  for (let i = -half; i <= half; i++) g.push(Math.exp(-(i * i) / (2 * sigma * sigma)));
  const gs = g.reduce((x, y) => x + y, 0);
  const k = g.map((v) => v / gs);
  const C1 = (0.01 * 255) ** 2, C2 = (0.03 * 255) ** 2;
  if (h < win || w < win) return NaN;
  let total = 0, count = 0;
  for (let ch = 0; ch < c; ch++) {
    for (let y = half; y < h - half; y++) {
      for (let x = half; x < w - half; x++) {
        let ma = 0, mb = 0, saa = 0, sbb = 0, sab = 0;
        for (let dy = -half; dy <= half; dy++) {
          for (let dx = -half; dx <= half; dx++) {
            const wt = k[dy + half] * k[dx + half];
            const i = ((y + dy) * w + (x + dx)) * c + ch;
            const va = a[i], vb = b[i];
            ma += wt * va;
            mb += wt * vb;
            saa += wt * va * va;
            sbb += wt * vb * vb;
            sab += wt * va * vb;
          }
        }
        const va = saa - ma * ma, vb = sbb - mb * mb, cov = sab - ma * mb;
        total += ((2 * ma * mb + C1) * (2 * cov + C2)) /
          ((ma * ma + mb * mb + C1) * (va + vb + C2));
        count++;
      }
    }
  }
  return total / count;
}
