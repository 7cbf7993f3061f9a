// Optional npm packages (the emoji image sets, ~70 MB each), pinned in deno.json's `optionalNpm`
// by exact version and integrity, and fetched only when a command needs one.
//
// They are kept out of Deno's npm resolution on purpose: Deno installs every package its lockfile
// holds on a fresh start (with or without node_modules) and every npm entry of deno.json's
// `imports`, so pinning them there would make every fresh run and CI download ~280 MB; left out
// of both, importing one rewrites deno.lock. Here they are fetched from the npm registry,
// checked against the pinned sha512, and unpacked once into a cache folder; deno.lock never
// changes.
import { dirname, join } from "node:path";
import denoConfig from "../../deno.json" with { type: "json" };
import { UserError } from "../errors.ts";
import { readTar } from "./tar.ts";

export interface NpmPin {
  name: string;
  version: string;
  /** The registry's `dist.integrity`: "sha512-" and the tarball's base64 SHA-512. */
  integrity: string;
}

/** deno.json's `optionalNpm`: package name → { version, integrity }. */
export const OPTIONAL_NPM: Record<string, NpmPin> = Object.fromEntries(
  Object.entries(
    (denoConfig as { optionalNpm?: Record<string, Omit<NpmPin, "name">> }).optionalNpm ?? {},
  ).map(([name, p]) => [name, { name, ...p }]),
);

/** The pin of an optional package; one that deno.json does not pin is a programming error. */
export function optionalPin(name: string): NpmPin {
  const pin = OPTIONAL_NPM[name];
  if (!pin) throw new Error(`npm package ${name} is not pinned in deno.json's optionalNpm`);
  return pin;
}

/** Where fetched packages are unpacked: $VMAMBAR_CACHE, else the user's cache folder. */
export function cacheRoot(): string {
  const env = (k: string) => Deno.env.get(k) || undefined;
  const own = env("VMAMBAR_CACHE");
  if (own) return own;
  const base = env("XDG_CACHE_HOME") ?? env("LOCALAPPDATA") ??
    (env("HOME") ?? env("USERPROFILE") ?? ".") + "/.cache";
  return join(base, "vmambar");
}

/** The registry Deno's npm support uses too: $NPM_CONFIG_REGISTRY or npmjs.org. */
function registry(): string {
  const r = Deno.env.get("NPM_CONFIG_REGISTRY") || "https://registry.npmjs.org/";
  return r.endsWith("/") ? r : `${r}/`;
}

/** The tarball's address, as npm forms it (`@scope/name` → `@scope/name/-/name-1.0.0.tgz`). */
export function tarballUrl(pin: NpmPin, base = registry()): string {
  return `${base}${pin.name}/-/${pin.name.split("/").at(-1)}-${pin.version}.tgz`;
}

async function integrityOf(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-512", bytes as BufferSource));
  let bin = "";
  for (const b of digest) bin += String.fromCharCode(b);
  return `sha512-${btoa(bin)}`;
}

export interface FetchOptions {
  /** Unpack only the package paths (without npm's `package/` prefix) this accepts. */
  keep?: (path: string) => boolean;
  /** Defaults: cacheRoot() and $NPM_CONFIG_REGISTRY or npmjs.org. */
  cache?: string;
  registry?: string;
  /** Progress lines (stderr by default). */
  log?: (line: string) => void;
}

/**
 * The folder holding the pinned package's files, fetched, checked against the pin's integrity
 * and unpacked on first use (`keep` picks the files). A download that fails or does not match the
 * pin is a one-line error; nothing is left half-unpacked.
 */
export async function pinnedPackage(pin: NpmPin, opts: FetchOptions = {}): Promise<string> {
  const dir = join(opts.cache ?? cacheRoot(), "npm", `${pin.name}@${pin.version}`);
  const done = join(dir, ".integrity");
  try {
    if ((await Deno.readTextFile(done)).trim() === pin.integrity) return dir;
  } catch { /* not fetched yet */ }
  const url = tarballUrl(pin, opts.registry ?? registry());
  const log = opts.log ?? ((l: string) => console.error(l));
  log(`fetching ${pin.name}@${pin.version} (pinned in deno.json) from ${url}`);
  let bytes: Uint8Array;
  try {
    const res = await fetch(url);
    if (!res.ok) {
      await res.body?.cancel();
      throw new Error(`HTTP ${res.status} ${res.statusText}`);
    }
    bytes = new Uint8Array(await res.arrayBuffer());
  } catch (e) {
    throw new UserError(
      `cannot download npm package ${pin.name}@${pin.version} from ${url} (it needs network ` +
        `access the first time): ${(e as Error).message.split("\n")[0]}`,
    );
  }
  const got = await integrityOf(bytes);
  if (got !== pin.integrity) {
    throw new UserError(
      `${url} does not match the integrity pinned in deno.json (${pin.integrity.slice(0, 19)}…, ` +
        `got ${got.slice(0, 19)}…): refusing it`,
    );
  }
  // Unpack beside the final folder and rename it into place, so an interrupted run leaves no
  // folder that looks complete.
  const tmp = `${dir}.tmp-${Deno.pid}`;
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
  const problems: string[] = [];
  let files = 0;
  try {
    const tar = new Blob([bytes as BlobPart]).stream().pipeThrough(
      new DecompressionStream("gzip"),
    );
    for await (const entry of readTar(tar, (p) => problems.push(p.message))) {
      const path = entry.name.replace(/^[^/]+\//, ""); // npm's top folder, usually package/
      if (path.split("/").some((p) => p === ".." || p === "") || path.startsWith("/")) {
        problems.push(`unsafe member name ${entry.name}`);
        continue;
      }
      if (opts.keep && !opts.keep(path)) continue;
      const target = join(tmp, path);
      await Deno.mkdir(dirname(target), { recursive: true });
      await Deno.writeFile(target, entry.data);
      files++;
    }
    if (problems.length > 0) throw new Error(problems[0]);
    await Deno.writeTextFile(join(tmp, ".integrity"), `${pin.integrity}\n`);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    await Deno.rename(tmp, dir);
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    if (e instanceof UserError) throw e;
    throw new UserError(
      `cannot unpack ${pin.name}@${pin.version} into ${dir}: ${(e as Error).message}`,
    );
  }
  log(`unpacked ${files} files of ${pin.name}@${pin.version} into ${dir}`);
  return dir;
}
