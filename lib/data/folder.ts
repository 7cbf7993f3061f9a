// A folder source: image files anywhere under a directory, each captioned by the .txt file of
// the same name beside it (photo.jpg + photo.txt).
import { extname, join, relative } from "node:path";
import { isImageExtension } from "./images.ts";
import type { SkipReport } from "./skips.ts";

export interface FolderItem {
  key: string;
  imagePath: string;
  caption: string;
}

function walk(dir: string, out: string[]): void {
  for (const e of Deno.readDirSync(dir)) {
    if (e.name.startsWith(".")) continue;
    const path = join(dir, e.name);
    if (e.isDirectory) walk(path, out);
    else if (e.isFile) out.push(path);
  }
}

/**
 * The captioned images under `dir`, sorted by path. An image without its .txt is recorded as
 * "missing caption"; a .txt without an image is ignored.
 */
export function listFolder(dir: string, skips: SkipReport): FolderItem[] {
  const files: string[] = [];
  walk(dir, files);
  const have = new Set(files);
  const items: FolderItem[] = [];
  for (const path of files.sort()) {
    const ext = extname(path).slice(1);
    if (!isImageExtension(ext)) continue;
    const stem = path.slice(0, path.length - ext.length - 1);
    const key = relative(dir, stem);
    const captionPath = `${stem}.txt`;
    if (!have.has(captionPath)) {
      skips.record("missing caption", key);
      continue;
    }
    let caption: string;
    try {
      caption = Deno.readTextFileSync(captionPath).trim();
    } catch {
      skips.record("missing caption", key);
      continue;
    }
    items.push({ key, imagePath: path, caption });
  }
  return items;
}

/** Whether a directory holds any image file (so it is a folder source, not a shard directory). */
export function hasImages(dir: string): boolean {
  const files: string[] = [];
  walk(dir, files);
  return files.some((f) => isImageExtension(extname(f).slice(1)));
}
