// Webdataset shards in img2dataset's layout: `00000.tar` holds `000000000.jpg`, `.txt` and
// `.json`, one sample's members next to each other. Shard lists come from brace patterns
// (`data/{00000..00331}.tar`), directories of .tar files, or single files.
import { basename, join } from "node:path";
import { UserError } from "../errors.ts";
import { concat, readTar, TAR_END, tarMember } from "./tar.ts";
import type { SkipReport } from "./skips.ts";

/**
 * Expands shell-style braces as webdataset's braceexpand does: `{a,b}` alternatives and
 * `{00000..00331}` ranges (zero-padded to the width of the first bound when it has a leading
 * zero; an optional `..step`), nested and repeated.
 */
export function expandBraces(pattern: string): string[] {
  let depth = 0;
  let open = -1;
  for (let i = 0; i < pattern.length; i++) {
    if (pattern[i] === "{") {
      if (depth++ === 0) open = i;
    } else if (pattern[i] === "}" && depth > 0 && --depth === 0) {
      const head = pattern.slice(0, open);
      const tails = expandBraces(pattern.slice(i + 1));
      const alts = braceAlternatives(pattern.slice(open + 1, i));
      // A brace with no comma and no range is literal, as in the shell.
      if (!alts) return tails.map((t) => pattern.slice(0, i + 1) + t);
      const out: string[] = [];
      for (const alt of alts) {
        for (const a of expandBraces(alt)) for (const t of tails) out.push(head + a + t);
      }
      return out;
    }
  }
  if (depth > 0) throw new UserError(`unbalanced '{' in shard pattern ${pattern}`);
  return [pattern];
}

function braceAlternatives(body: string): string[] | null {
  const range = /^(-?\d+)\.\.(-?\d+)(?:\.\.(\d+))?$/.exec(body);
  if (range) {
    const [, a, b, s] = range;
    const from = parseInt(a, 10), to = parseInt(b, 10), step = Math.max(1, parseInt(s ?? "1"));
    const width = /^-?0\d/.test(a) ? a.length : 0;
    const out: string[] = [];
    for (let v = from; from <= to ? v <= to : v >= to; v += from <= to ? step : -step) {
      out.push(String(v).padStart(width, "0"));
    }
    return out;
  }
  const alts: string[] = [];
  let depth = 0, start = 0;
  for (let i = 0; i < body.length; i++) {
    if (body[i] === "{") depth++;
    else if (body[i] === "}") depth--;
    else if (body[i] === "," && depth === 0) {
      alts.push(body.slice(start, i));
      start = i + 1;
    }
  }
  alts.push(body.slice(start));
  return alts.length > 1 ? alts : null;
}

function statOrNull(path: string): Deno.FileInfo | null {
  try {
    return Deno.statSync(path);
  } catch {
    return null;
  }
}

/** The .tar files directly inside a directory, sorted by name. */
export function tarsInDirectory(dir: string): string[] {
  return [...Deno.readDirSync(dir)]
    .filter((e) => e.isFile && e.name.endsWith(".tar"))
    .map((e) => join(dir, e.name))
    .sort();
}

/**
 * The shard files a spec names: `::`-separated parts (as webdataset joins lists), each a brace
 * pattern, a directory, or a .tar file. Every named file must exist.
 */
export function listShards(spec: string): string[] {
  const shards: string[] = [];
  for (const part of spec.split("::").filter((p) => p !== "")) {
    for (const path of expandBraces(part)) {
      const info = statOrNull(path);
      if (!info) throw new UserError(`no such shard or directory: ${path}`);
      if (info.isDirectory) shards.push(...tarsInDirectory(path));
      else shards.push(path);
    }
  }
  if (shards.length === 0) throw new UserError(`no .tar shards in ${spec}`);
  return shards;
}

/** One sample of a shard: its key and its members by extension ("jpg", "txt", "json"). */
export interface ShardSample {
  key: string;
  shard: string;
  files: Record<string, Uint8Array>;
}

/** Splits a member name as webdataset does: key up to the first dot of the last path part. */
export function splitMemberName(name: string): { key: string; ext: string } | null {
  const slash = name.lastIndexOf("/");
  const base = name.slice(slash + 1);
  const dot = base.indexOf(".");
  if (dot <= 0) return null; // no extension, or a hidden file such as macOS "._x.jpg"
  return {
    key: name.slice(0, slash + 1) + base.slice(0, dot),
    ext: base.slice(dot + 1).toLowerCase(),
  };
}

/**
 * The samples of one shard, streamed. A damaged member or an unopenable shard is recorded as
 * "unreadable member" and reading goes on with what is left.
 */
export async function* readShard(path: string, skips: SkipReport): AsyncGenerator<ShardSample> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path);
  } catch (e) {
    skips.record("unreadable member", `${path} (${(e as Error).message})`);
    return;
  }
  const shard = basename(path);
  let current: ShardSample | null = null;
  const entries = readTar(file.readable, (p) => {
    skips.record("unreadable member", `${shard}:${p.name ?? `@${p.offset} (${p.message})`}`);
    if (p.name) {
      const parts = splitMemberName(p.name);
      // The sample whose member was cut off is incomplete: drop it rather than yield half.
      if (parts && current?.key === parts.key) current = null;
    }
  });
  try {
    for await (const entry of entries) {
      const parts = splitMemberName(entry.name);
      if (!parts) continue;
      if (current && current.key !== parts.key) {
        yield current;
        current = null;
      }
      current ??= { key: parts.key, shard, files: {} };
      current.files[parts.ext] = entry.data;
    }
  } catch (e) {
    // An I/O error mid-shard loses the rest of that shard, not the run.
    skips.record("unreadable member", `${shard}:${current?.key ?? "?"} (${(e as Error).message})`);
    return;
  }
  if (current) yield current;
}

/** img2dataset's key: 5-digit shard number then 4-digit index within the shard. */
export function sampleKey(shard: number, index: number, perShard: number): string {
  return String(shard).padStart(5, "0") + String(index).padStart(String(perShard - 1).length, "0");
}

/** Samples per shard when none is given (img2dataset's default). */
export const DEFAULT_PER_SHARD = 10000;

/** A sample's members as the tar bytes `ShardWriter.add` writes for them under `key`. */
export function packSample(key: string, members: Record<string, Uint8Array | string>): Uint8Array {
  return concat(
    Object.entries(members).map(([ext, data]) =>
      tarMember(`${key}.${ext}`, typeof data === "string" ? new TextEncoder().encode(data) : data)
    ),
  );
}

/**
 * Writes samples into numbered shards of `perShard` samples. Each shard is written to a .tmp
 * file and renamed when complete, so a reader never sees half a shard.
 */
export class ShardWriter {
  readonly dir: string;
  readonly perShard: number;
  #file: Deno.FsFile | null = null;
  #shard = -1;
  #index = 0;
  #count = 0;
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;
  readonly written: string[] = [];

  constructor(dir: string, perShard = DEFAULT_PER_SHARD) {
    this.dir = dir;
    this.perShard = perShard;
    Deno.mkdirSync(dir, { recursive: true });
  }

  get count(): number {
    return this.#count;
  }

  /** The key the next `add` will give its sample. */
  get nextKey(): string {
    const full = !this.#file || this.#index === this.perShard;
    return sampleKey(full ? this.#shard + 1 : this.#shard, full ? 0 : this.#index, this.perShard);
  }

  #shardPath(n: number): string {
    return join(this.dir, `${String(n).padStart(5, "0")}.tar`);
  }

  /** Adds one sample; `members` maps extension to bytes or text. Returns the sample's key. */
  async add(members: Record<string, Uint8Array | string>): Promise<string> {
    if (!this.#file || this.#index === this.perShard) await this.#nextShard();
    const key = sampleKey(this.#shard, this.#index++, this.perShard);
    for (const [ext, data] of Object.entries(members)) {
      const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
      const member = tarMember(`${key}.${ext}`, bytes);
      this.#pending.push(member);
      this.#pendingBytes += member.length;
    }
    if (this.#pendingBytes > 1 << 20) await this.#flush();
    this.#count++;
    return key;
  }

  /**
   * Adds one sample packed elsewhere (packSample, e.g. in a worker) under `key`, which must be
   * the key `add` would give it: a sample out of order is refused, not written.
   */
  async addPacked(key: string, packed: Uint8Array): Promise<void> {
    if (key !== this.nextKey) {
      throw new Error(`ShardWriter: sample ${key} arrived where ${this.nextKey} belongs`);
    }
    if (!this.#file || this.#index === this.perShard) await this.#nextShard();
    this.#index++;
    this.#pending.push(packed);
    this.#pendingBytes += packed.length;
    if (this.#pendingBytes > 1 << 20) await this.#flush();
    this.#count++;
  }

  async #flush(): Promise<void> {
    if (!this.#file || this.#pending.length === 0) return;
    const bytes = concat(this.#pending);
    this.#pending = [];
    this.#pendingBytes = 0;
    let o = 0;
    while (o < bytes.length) o += await this.#file.write(bytes.subarray(o));
  }

  async #nextShard(): Promise<void> {
    await this.#closeShard();
    this.#shard++;
    this.#index = 0;
    this.#file = await Deno.open(this.#shardPath(this.#shard) + ".tmp", {
      write: true,
      create: true,
      truncate: true,
    });
  }

  async #closeShard(): Promise<void> {
    if (!this.#file) return;
    this.#pending.push(TAR_END);
    await this.#flush();
    this.#file.close();
    this.#file = null;
    const path = this.#shardPath(this.#shard);
    await Deno.rename(path + ".tmp", path);
    this.written.push(path);
  }

  async close(): Promise<void> {
    await this.#closeShard();
  }
}

/**
 * Makes `dir` ready for new shards: refuses to mix with existing ones unless `force`, in which
 * case the old shards (and the listed extra files) are removed first.
 */
export function prepareOutputDirectory(dir: string, force: boolean, extras: string[] = []): void {
  const info = statOrNull(dir);
  if (info && !info.isDirectory) throw new UserError(`--out ${dir} exists and is not a directory`);
  if (!info) return;
  const old = tarsInDirectory(dir);
  if (old.length > 0 && !force) {
    throw new UserError(
      `--out ${dir} already holds ${old.length} shard(s); pass --force to replace them`,
    );
  }
  for (const path of [...old, ...extras.map((e) => join(dir, e))]) {
    if (statOrNull(path)) Deno.removeSync(path, { recursive: true });
  }
}
