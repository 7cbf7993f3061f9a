// Output paths, checked before any work: a run must not train for an hour and then fail to
// save. Parent folders are created, a folder where a file is meant and an existing file
// without --force are refused, and the place is probed for writing; each as one line naming
// the flag.
import { dirname, join } from "node:path";
import { UserError } from "../errors.ts";

export interface OutputCheck {
  /** Replace an existing file instead of refusing it (the caller removes or truncates it). */
  force?: boolean;
  /** How the error names the path: a flag such as "--out", or a phrase. */
  flag: string;
}

function statOrNull(path: string): Deno.FileInfo | null {
  try {
    return Deno.statSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return null;
    throw e;
  }
}

const reason = (e: unknown) => {
  const m = (e as Error).message;
  return m.replace(/:? ?\(os error \d+\)|, \w+ '.*'$/g, "").split(":")[0].trim() || m;
};

/** Creates `dir` and its parents, then proves a file can be created in it. */
function ensureWritableFolder(dir: string, flag: string, path: string): void {
  for (let up = dir;; up = dirname(up)) {
    const info = statOrNull(up);
    if (info && !info.isDirectory) {
      throw new UserError(`${flag} ${path}: ${up} is a file, not a folder`);
    }
    if (info || dirname(up) === up) break;
  }
  try {
    Deno.mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw new UserError(`${flag} ${path}: cannot create the folder ${dir} (${reason(e)})`);
  }
  const probe = join(dir, `.vmambar-probe-${Deno.pid}`);
  try {
    Deno.writeFileSync(probe, new Uint8Array(0));
    Deno.removeSync(probe);
  } catch (e) {
    throw new UserError(`${flag} ${path}: cannot write in ${dir} (${reason(e)})`);
  }
}

/**
 * Makes `path` ready to be written as a file, before any work: creates its folders, refuses a
 * folder there, refuses an existing file unless `force`, and refuses a place it cannot write.
 */
export function prepareOutputFile(path: string, { force = false, flag }: OutputCheck): void {
  const info = statOrNull(path);
  if (info?.isDirectory) {
    throw new UserError(`${flag} ${path} is a folder: give a file name (e.g. ${join(path, "x")})`);
  }
  if (info && !force) throw new UserError(`${flag} ${path} exists: pass --force to replace it`);
  ensureWritableFolder(dirname(path), flag, path);
  if (info) {
    try {
      Deno.openSync(path, { write: true }).close();
    } catch (e) {
      throw new UserError(`${flag} ${path}: cannot write it (${reason(e)})`);
    }
  }
}

/** Makes `dir` ready to hold output files: creates it, refuses a file there, probes it. */
export function prepareOutputFolder(dir: string, { flag }: OutputCheck): void {
  const info = statOrNull(dir);
  if (info && !info.isDirectory) {
    throw new UserError(`${flag} ${dir} is a file, not a folder`);
  }
  ensureWritableFolder(dir, flag, dir);
}

/**
 * A set of files (shards) built under `DIR.partial` and published as DIR only when complete, so
 * an interrupted run never leaves a set that looks whole. A leftover `.partial` from an earlier
 * interrupted run is removed. DIR itself, when it exists, must already be cleared of old files.
 */
export function stagedFolder(dir: string): { path: string; publish(): void } {
  const path = stagedPath(dir);
  if (statOrNull(path)) Deno.removeSync(path, { recursive: true });
  Deno.mkdirSync(path, { recursive: true });
  return { path, publish: () => publishFolder(path, dir) };
}

/** Where stagedFolder(dir) builds the set (for the other processes of a data-parallel run). */
export const stagedPath = (dir: string) => `${dir.replace(/\/+$/, "")}.partial`;

function publishFolder(from: string, to: string): void {
  const info = statOrNull(to);
  if (info?.isDirectory && [...Deno.readDirSync(to)].length === 0) Deno.removeSync(to);
  if (!statOrNull(to)) return Deno.renameSync(from, to);
  // DIR held other files: the new ones join them one by one.
  for (const e of Deno.readDirSync(from)) {
    const src = join(from, e.name), dst = join(to, e.name);
    if (e.isDirectory && statOrNull(dst)?.isDirectory) publishFolder(src, dst);
    else Deno.renameSync(src, dst);
  }
  Deno.removeSync(from, { recursive: true });
}

/** Writes `data` to a temporary file beside `path`, then renames it into place: never half a file. */
export async function writeAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const tmp = `${path}.tmp-${Deno.pid}`;
  if (typeof data === "string") await Deno.writeTextFile(tmp, data);
  else await Deno.writeFile(tmp, data);
  await Deno.rename(tmp, path);
}
