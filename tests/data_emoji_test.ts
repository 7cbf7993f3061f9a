// `data emoji` on the real npm package emoji-datasource-twitter (fetched on first use, at the
// version and integrity pinned in deno.json).
import { existsSync } from "node:fs";
import { join } from "node:path";
import { run } from "../main.ts";
import {
  emojiCaption,
  emojiImages,
  loadEmojiSet,
  skinToneName,
  splitEmoji,
} from "../lib/data/emoji.ts";
import { decodeImage } from "../lib/data/images.ts";
import { listShards, readShard } from "../lib/data/shards.ts";
import { SkipReport } from "../lib/data/skips.ts";
import { tempDir } from "./data_fixtures.ts";

function check(cond: boolean, msg: string): void {
  if (!cond) throw new Error(msg);
}

Deno.test("emoji: captions from names, short names and skin tones", () => {
  const santa = { name: "FATHER CHRISTMAS", short_name: "santa", short_names: ["santa"] };
  check(emojiCaption(santa) === "father christmas, santa", emojiCaption(santa));
  const dup = {
    name: "GRINNING FACE",
    short_name: "grinning",
    short_names: ["grinning", "grinning_face"],
  };
  check(emojiCaption(dup) === "grinning face, grinning", emojiCaption(dup));
  check(skinToneName("1F3FD") === "medium skin tone", skinToneName("1F3FD"));
  check(skinToneName("1F3FB-1F3FB") === "light skin tone", skinToneName("1F3FB-1F3FB"));
  check(skinToneName("1F3FB-1F3FF") === "light and dark skin tones", skinToneName("1F3FB-1F3FF"));
});

const lockFile = new URL("../deno.lock", import.meta.url);

Deno.test("emoji: the real twitter set lists every image, and the split holds out whole emoji", async () => {
  const lockBefore = Deno.readTextFileSync(lockFile);
  const { records, imageDir } = await loadEmojiSet("twitter");
  // Fetching an emoji set goes around Deno's npm resolution, so deno.lock stays as it was.
  check(Deno.readTextFileSync(lockFile) === lockBefore, "loading an emoji set rewrote deno.lock");
  const images = emojiImages(records, "twitter", imageDir);
  const expected = records.reduce(
    (n, r) =>
      n + (r.has_img_twitter ? 1 : 0) +
      Object.values(r.skin_variations ?? {}).filter((v) => v.has_img_twitter).length,
    0,
  );
  check(
    images.length === expected && images.length > 3000,
    `${images.length} images, want ${expected}`,
  );
  const missing = images.filter((i) => !existsSync(i.file));
  check(missing.length === 0, `${missing.length} image files missing, e.g. ${missing[0]?.file}`);
  const santa = images.filter((i) => i.caption.startsWith("father christmas"));
  check(santa.length === 6, `${santa.length} santas`);
  check(
    santa.some((i) => i.caption === "father christmas, santa, dark skin tone"),
    santa.map((i) => i.caption).join("|"),
  );
  const { train, val } = splitEmoji(images, 0.1, 0);
  check(train.length + val.length === images.length, "split loses images");
  const trainBases = new Set(train.map((i) => i.base));
  check(val.every((i) => !trainBases.has(i.base)), "a held-out emoji's variant is in train");
  const share = new Set(val.map((i) => i.base)).size / new Set(images.map((i) => i.base)).size;
  check(Math.abs(share - 0.1) < 0.01, `held-out share ${share}`);
  check(
    splitEmoji(images, 0.1, 0).val.map((i) => i.unified).join() ===
      val.map((i) => i.unified).join(),
    "split not seeded",
  );
});

Deno.test("emoji: `vmambar data emoji` writes train and validation shards that decode", async () => {
  const out = join(await tempDir("emoji"), "emoji");
  check(
    await run(["data", "emoji", "--set", "twitter", "--size", "32", "--out", out]) === 0,
    "command failed",
  );
  const skips = new SkipReport();
  const read = async (dir: string) => {
    const samples = [];
    for (const shard of listShards(dir)) {
      for await (const s of readShard(shard, skips)) samples.push(s);
    }
    return samples;
  };
  const [train, val] = [await read(out), await read(join(out, "val"))];
  const { records, imageDir } = await loadEmojiSet("twitter");
  const total = emojiImages(records, "twitter", imageDir).length;
  check(
    train.length + val.length === total && skips.total === 0,
    `${train.length} + ${val.length} of ${total}`,
  );
  check(val.length > 0.05 * total && val.length < 0.2 * total, `${val.length} held out`);
  const meta = (s: { files: Record<string, Uint8Array> }) =>
    JSON.parse(new TextDecoder().decode(s.files.json));
  const trainBases = new Set(train.map((s) => meta(s).base));
  check(val.every((s) => !trainBases.has(meta(s).base)), "an emoji is in both splits");
  const toned = train.find((s) => meta(s).skin_tone);
  check(toned !== undefined, "no skin-tone variant in train");
  check(
    new TextDecoder().decode(toned!.files.txt).endsWith(meta(toned!).skin_tone),
    "tone not in caption",
  );
  // The stored PNG is 32 × 32 RGB on white: the corner of an emoji image is background.
  const rgb = await decodeImage(train[0].files.png, 32);
  check(rgb.length === 32 * 32 * 3, "png size");
  check(
    await run(["data", "emoji", "--set", "twitter", "--out", out]) === 1,
    "overwrote shards without --force",
  );
  check(await run(["data", "emoji", "--set", "nope", "--out", out]) === 1, "accepted --set nope");
});
