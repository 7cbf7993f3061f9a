// `data folder`: any image–caption source (a folder or a manifest) rewritten as shards of
// images resized and centre-cropped to one size, the layout every other command reads.
import { CorruptImage, reencodeImage } from "./images.ts";
import { Progress } from "./progress.ts";
import { ShardWriter } from "./shards.ts";
import type { SkipReport } from "./skips.ts";
import type { SampleSource } from "./sources.ts";
import { mapOrdered } from "./stream.ts";

export interface ConvertOptions {
  out: string;
  side: number;
  format: "jpg" | "png" | "webp";
  quality: number;
  perShard?: number;
  /** Total samples, for the progress line, when known. */
  total?: number;
}

/** Writes the source's samples in stored order; bad ones are recorded in `skips`. */
export async function convertToShards(
  source: SampleSource,
  skips: SkipReport,
  o: ConvertOptions,
): Promise<ShardWriter> {
  const writer = new ShardWriter(o.out, o.perShard);
  const progress = new Progress("images", o.total);
  const encode = async (s: { key: string; caption: string; image: Uint8Array | string }) => {
    let bytes: Uint8Array;
    try {
      bytes = typeof s.image === "string" ? await Deno.readFile(s.image) : s.image;
    } catch {
      skips.record("unreadable file", s.key);
      return { s, image: null };
    }
    try {
      return { s, image: await reencodeImage(bytes, o.side, o.format, o.quality) };
    } catch (e) {
      if (!(e instanceof CorruptImage)) throw e;
      skips.record("corrupt image", s.key);
      return { s, image: null };
    }
  };
  try {
    for await (const { s, image } of mapOrdered(source.samples(), encode, 4)) {
      progress.tick();
      if (!image) continue;
      const json = {
        key: writer.nextKey,
        caption: s.caption,
        status: "success",
        width: o.side,
        height: o.side,
        source: s.key,
      };
      await writer.add({ [o.format]: image, txt: s.caption, json: JSON.stringify(json) });
    }
  } finally {
    progress.finish();
    await writer.close();
  }
  return writer;
}
