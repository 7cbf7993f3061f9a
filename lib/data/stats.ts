// `data stats`: how many samples a source holds, how long its captions are (in bytes, the unit
// of text ids), and a contact sheet of a few of them to look at.
import { CorruptImage, decodeImage } from "./images.ts";
import { encodePng } from "./png.ts";
import { Progress } from "./progress.ts";
import type { SkipReport } from "./skips.ts";
import type { RawSample, SampleSource } from "./sources.ts";

export interface SourceStats {
  count: number;
  /** Caption lengths in UTF-8 bytes, sorted. */
  lengths: Uint32Array;
  /** Samples whose image decoded, when images were checked. */
  decoded?: number;
  /** The first samples, kept for the contact sheet. */
  firstSamples: RawSample[];
}

const utf8 = new TextEncoder();

/** Reads every sample once (images stay encoded unless `checkImages`). */
export async function collectStats(
  source: SampleSource,
  skips: SkipReport,
  o: { keep: number; checkImages: boolean },
): Promise<SourceStats> {
  const lengths: number[] = [];
  const firstSamples: RawSample[] = [];
  let decoded = 0;
  const progress = new Progress("samples");
  try {
    for await (const s of source.samples()) {
      lengths.push(utf8.encode(s.caption).length);
      if (firstSamples.length < o.keep) firstSamples.push(s);
      if (o.checkImages) {
        let bytes: Uint8Array | null = null;
        try {
          bytes = typeof s.image === "string" ? await Deno.readFile(s.image) : s.image;
        } catch {
          skips.record("unreadable file", s.key);
        }
        try {
          if (bytes) await decodeImage(bytes, 16);
          if (bytes) decoded++;
        } catch (e) {
          if (!(e instanceof CorruptImage)) throw e;
          skips.record("corrupt image", s.key);
        }
      }
      progress.tick();
    }
  } finally {
    progress.finish();
  }
  return {
    count: lengths.length,
    lengths: new Uint32Array(lengths).sort(),
    decoded: o.checkImages ? decoded : undefined,
    firstSamples,
  };
}

/** Value at quantile q of sorted values (nearest rank). */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

/** A text report: count, caption-length quantiles and a histogram, and truncation at T. */
export function formatStats(s: SourceStats, T: number): string {
  const L = s.lengths;
  const mean = L.reduce((a, b) => a + b, 0) / Math.max(1, L.length);
  const lines = [
    `samples: ${s.count}` + (s.decoded !== undefined ? ` (${s.decoded} images decode)` : ""),
    `caption bytes: min ${L[0]}  median ${quantile(L, 0.5)}  p90 ${quantile(L, 0.9)}  p99 ${
      quantile(L, 0.99)
    }  max ${L[L.length - 1]}  mean ${mean.toFixed(1)}`,
  ];
  // Captions longer than T − 2 bytes lose their tail (and EOS) in text ids (DESIGN.md §4).
  const cut = L.filter((n) => n + 2 > T).length;
  lines.push(`cut at T=${T}: ${cut} (${(100 * cut / Math.max(1, L.length)).toFixed(1)}%)`);
  const max = L[L.length - 1];
  const width = Math.max(1, 2 ** Math.ceil(Math.log2(Math.max(1, max + 1) / 10)));
  const bins = new Map<number, number>();
  for (const n of L) bins.set(Math.floor(n / width), (bins.get(Math.floor(n / width)) ?? 0) + 1);
  const most = Math.max(...bins.values());
  lines.push("caption bytes histogram:");
  for (let b = 0; b <= Math.floor(max / width); b++) {
    const n = bins.get(b) ?? 0;
    const label = `${b * width}–${(b + 1) * width - 1}`.padStart(9);
    lines.push(`  ${label} ${"#".repeat(Math.round(40 * n / most)).padEnd(40)} ${n}`);
  }
  return lines.join("\n");
}

/**
 * A grid of thumbnails (columns × rows, 2 px white gutters) as PNG; samples that fail to decode
 * are left grey and recorded in `skips`.
 */
export async function contactSheet(
  samples: RawSample[],
  thumb: number,
  skips: SkipReport,
): Promise<Uint8Array> {
  const cols = Math.max(1, Math.ceil(Math.sqrt(samples.length)));
  const rows = Math.max(1, Math.ceil(samples.length / cols));
  const gap = 2;
  const W = cols * (thumb + gap) + gap, H = rows * (thumb + gap) + gap;
  const sheet = new Uint8Array(W * H * 3).fill(255);
  for (let i = 0; i < samples.length; i++) {
    const x0 = gap + (i % cols) * (thumb + gap), y0 = gap + Math.floor(i / cols) * (thumb + gap);
    let rgb: Uint8Array;
    try {
      const s = samples[i];
      rgb = await decodeImage(
        typeof s.image === "string" ? await Deno.readFile(s.image) : s.image,
        thumb,
      );
    } catch (e) {
      if (!(e instanceof CorruptImage || e instanceof Deno.errors.NotFound)) throw e;
      skips.record(e instanceof CorruptImage ? "corrupt image" : "unreadable file", samples[i].key);
      rgb = new Uint8Array(thumb * thumb * 3).fill(128);
    }
    for (let y = 0; y < thumb; y++) {
      sheet.set(rgb.subarray(y * thumb * 3, (y + 1) * thumb * 3), ((y0 + y) * W + x0) * 3);
    }
  }
  return encodePng(sheet, W, H);
}
