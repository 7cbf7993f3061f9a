// Real images from the npm package emoji-datasource-<set>: its img/<set>/64/ PNGs and
// emoji.json. Captions come from the emoji's name and short names; skin-tone variants add their
// tone. The split is by base emoji, so a held-out emoji's skin tones are held out with it.
import { join } from "node:path";
import { UserError } from "../errors.ts";
import { CorruptImage, decodeImage } from "./images.ts";
import { mapOrdered } from "./stream.ts";
import { encodePng } from "./png.ts";
import { type FetchOptions, optionalPin, pinnedPackage } from "./npm_pins.ts";
import { Progress } from "./progress.ts";
import { deriveSeed, mulberry32, shuffleInPlace } from "./random.ts";
import { ShardWriter } from "./shards.ts";
import type { SkipReport } from "./skips.ts";

export const EMOJI_SETS = ["twitter", "google", "apple", "facebook"] as const;
export type EmojiSet = typeof EMOJI_SETS[number];

/** The fields of emoji.json that are used here. */
interface EmojiRecord {
  name: string | null;
  short_name: string;
  short_names: string[];
  unified: string;
  image: string;
  category: string;
  subcategory?: string;
  [hasImage: `has_img_${string}`]: boolean | undefined;
  skin_variations?: Record<string, { unified: string; image: string } & Record<string, unknown>>;
}

/** One image to import. `base` groups a base emoji with its skin-tone variants. */
export interface EmojiImage {
  base: string;
  unified: string;
  file: string;
  caption: string;
  meta: Record<string, unknown>;
}

const TONES: Record<string, string> = {
  "1F3FB": "light",
  "1F3FC": "medium-light",
  "1F3FD": "medium",
  "1F3FE": "medium-dark",
  "1F3FF": "dark",
};

/** "1F3FB" → "light skin tone"; "1F3FB-1F3FF" (two people) → "light and dark skin tones". */
export function skinToneName(code: string): string {
  const tones = [...new Set(code.split("-").map((c) => TONES[c.toUpperCase()] ?? c.toLowerCase()))];
  return tones.length === 1 ? `${tones[0]} skin tone` : `${tones.join(" and ")} skin tones`;
}

/** "FATHER CHRISTMAS" + ["santa"] → "father christmas, santa" (names deduplicated). */
export function emojiCaption(e: Pick<EmojiRecord, "name" | "short_name" | "short_names">): string {
  const words = (s: string) => s.toLowerCase().replace(/[_-]+/g, " ").replace(/:/g, "").trim();
  const names = [e.name ?? e.short_name, ...(e.short_names ?? [])].map(words).filter((n) => n);
  return [...new Set(names)].join(", ");
}

/**
 * Loads emoji.json of a set and its 64-px folder, from npm package emoji-datasource-<set> at the
 * version and integrity pinned in deno.json's `optionalNpm` (fetched and unpacked on first use:
 * lib/data/npm_pins.ts says why not through Deno's npm support).
 */
export async function loadEmojiSet(
  set: EmojiSet,
  opts: FetchOptions = {},
): Promise<{ records: EmojiRecord[]; imageDir: string }> {
  const dir = await pinnedPackage(optionalPin(`emoji-datasource-${set}`), {
    keep: (path) => path === "emoji.json" || path.startsWith(`img/${set}/64/`),
    ...opts,
  });
  let records: EmojiRecord[];
  try {
    records = JSON.parse(await Deno.readTextFile(join(dir, "emoji.json")));
  } catch (e) {
    throw new UserError(`${join(dir, "emoji.json")}: ${(e as Error).message.split("\n")[0]}`);
  }
  return { records, imageDir: join(dir, "img", set, "64") };
}

/** Every image of the set that the package has, base emoji first, then its skin tones. */
export function emojiImages(records: EmojiRecord[], set: EmojiSet, imageDir: string): EmojiImage[] {
  const has = `has_img_${set}` as const;
  const out: EmojiImage[] = [];
  for (const e of records) {
    const caption = emojiCaption(e);
    const meta = {
      base: e.unified,
      name: e.name,
      short_names: e.short_names,
      category: e.category,
      subcategory: e.subcategory,
    };
    if (e[has]) {
      out.push({
        base: e.unified,
        unified: e.unified,
        file: join(imageDir, e.image),
        caption,
        meta,
      });
    }
    for (const [code, v] of Object.entries(e.skin_variations ?? {})) {
      if (!v[has]) continue;
      const tone = skinToneName(code);
      out.push({
        base: e.unified,
        unified: v.unified,
        file: join(imageDir, v.image),
        caption: `${caption}, ${tone}`,
        meta: { ...meta, skin_tone: tone },
      });
    }
  }
  return out;
}

/** Splits images by base emoji: a seeded `valFraction` of the bases (at least one) is held out. */
export function splitEmoji(images: EmojiImage[], valFraction: number, seed: number) {
  const bases = shuffleInPlace(
    [...new Set(images.map((i) => i.base))],
    mulberry32(deriveSeed(seed, "emoji")),
  );
  const held = new Set(bases.slice(0, Math.max(1, Math.round(bases.length * valFraction))));
  return {
    train: images.filter((i) => !held.has(i.base)),
    val: images.filter((i) => held.has(i.base)),
  };
}

/** Decodes, resizes (on white) and writes images into shards; returns the samples written. */
export async function writeEmojiShards(
  images: EmojiImage[],
  out: string,
  side: number,
  label: string,
  skips: SkipReport,
  perShard?: number,
): Promise<number> {
  const writer = new ShardWriter(out, perShard);
  const progress = new Progress(label, images.length);
  const decode = async (img: EmojiImage) => {
    try {
      return { img, rgb: await decodeImage(await Deno.readFile(img.file), side) };
    } catch (e) {
      if (!(e instanceof CorruptImage || e instanceof Deno.errors.NotFound)) throw e;
      skips.record(
        e instanceof Deno.errors.NotFound ? "unreadable file" : "corrupt image",
        img.unified,
      );
      return { img, rgb: null };
    }
  };
  try {
    for await (const { img, rgb } of mapOrdered(images, decode, 4)) {
      progress.tick();
      if (!rgb) continue;
      const json = {
        key: writer.nextKey,
        caption: img.caption,
        status: "success",
        width: side,
        height: side,
        unified: img.unified,
        ...img.meta,
      };
      await writer.add({
        png: encodePng(rgb, side, side),
        txt: img.caption,
        json: JSON.stringify(json),
      });
    }
  } finally {
    progress.finish();
    await writer.close();
  }
  return writer.count;
}
