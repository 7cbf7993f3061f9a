// CSV, TSV and JSONL manifests of local image paths and captions. The path column may be named
// path, file, filename, image or filepath; the caption column caption, text or txt. Relative
// paths are taken from the manifest's own directory.
import { dirname, extname, isAbsolute, join } from "node:path";
import { UserError } from "../errors.ts";
import type { FolderItem } from "./folder.ts";
import type { SkipReport } from "./skips.ts";

const PATH_COLUMNS = ["path", "filepath", "file", "filename", "image", "image_path"];
const CAPTION_COLUMNS = ["caption", "text", "txt", "prompt"];

export const MANIFEST_EXTENSIONS = ["csv", "tsv", "jsonl"];

export function isManifest(path: string): boolean {
  return MANIFEST_EXTENSIONS.includes(extname(path).slice(1).toLowerCase());
}

/** RFC 4180 rows: quoted fields may hold the separator, newlines and doubled quotes. */
export function parseDelimited(text: string, sep: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"' && field === "") quoted = true;
    else if (c === sep) {
      row.push(field);
      field = "";
    } else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      row.push(field);
      rows.push(row);
      row = [];
      field = "";
    } else field += c;
  }
  if (field !== "" || row.length > 0) {
    row.push(field);
    rows.push(row);
  }
  return rows.filter((r) => !(r.length === 1 && r[0] === ""));
}

function findColumn(names: string[], wanted: string[]): number {
  const lower = names.map((n) => n.trim().toLowerCase());
  for (const w of wanted) {
    const i = lower.indexOf(w);
    if (i >= 0) return i;
  }
  return -1;
}

/** The manifest's rows as items; a row without a caption is recorded as "missing caption". */
export function readManifest(path: string, skips: SkipReport): FolderItem[] {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    throw new UserError(`cannot read manifest ${path}: ${(e as Error).message}`);
  }
  const base = dirname(path);
  const resolve = (p: string) => (isAbsolute(p) ? p : join(base, p));
  const items: FolderItem[] = [];
  const add = (line: number, file: string | undefined, caption: unknown) => {
    if (!file) throw new UserError(`${path}:${line}: row has no image path`);
    if (typeof caption !== "string" || caption.trim() === "") {
      skips.record("missing caption", file);
      return;
    }
    items.push({ key: file, imagePath: resolve(file), caption: caption.trim() });
  };
  if (extname(path).toLowerCase() === ".jsonl") {
    text.split("\n").forEach((line, i) => {
      if (line.trim() === "") return;
      let row: Record<string, unknown>;
      try {
        row = JSON.parse(line);
      } catch {
        throw new UserError(`${path}:${i + 1}: not a JSON object`);
      }
      const file = PATH_COLUMNS.map((c) => row[c]).find((v) => typeof v === "string") as
        | string
        | undefined;
      add(i + 1, file, CAPTION_COLUMNS.map((c) => row[c]).find((v) => v !== undefined));
    });
    return items;
  }
  const [header, ...rows] = parseDelimited(
    text,
    extname(path).toLowerCase() === ".tsv" ? "\t" : ",",
  );
  if (!header) return items;
  const pathCol = findColumn(header, PATH_COLUMNS);
  const captionCol = findColumn(header, CAPTION_COLUMNS);
  if (pathCol < 0 || captionCol < 0) {
    throw new UserError(
      `${path}: header needs a path column (${PATH_COLUMNS.join("|")}) and a caption column (${
        CAPTION_COLUMNS.join("|")
      }), got: ${header.join(", ")}`,
    );
  }
  rows.forEach((r, i) => add(i + 2, r[pathCol], r[captionCol]));
  return items;
}
