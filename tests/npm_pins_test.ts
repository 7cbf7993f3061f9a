// Every npm package the project uses is pinned in deno.json: required ones in `imports` at an
// exact version (and locked in deno.lock), optional ones in `optionalNpm` with their integrity and
// kept out of deno.lock, so that a fresh run never downloads them and fetching one never rewrites
// deno.lock. The fetcher is checked against a local registry.
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { concat, TAR_END, tarMember } from "../lib/data/tar.ts";
import { type NpmPin, OPTIONAL_NPM, pinnedPackage, tarballUrl } from "../lib/data/npm_pins.ts";
import { EMOJI_SETS } from "../lib/data/emoji.ts";
import { tempDir } from "./data_fixtures.ts";

function check(cond: boolean, msg: string): void {
  if (!cond) throw new Error(msg);
}

const root = fileURLToPath(new URL("..", import.meta.url));
const config = JSON.parse(Deno.readTextFileSync(join(root, "deno.json")));
const lock = JSON.parse(Deno.readTextFileSync(join(root, "deno.lock")));
const EXACT = /^\d+\.\d+\.\d+$/;

/** Every .ts file under a folder. */
function* sources(dir: string): Generator<string> {
  for (const e of Deno.readDirSync(dir)) {
    const path = join(dir, e.name);
    if (e.isDirectory) yield* sources(path);
    else if (e.name.endsWith(".ts")) yield path;
  }
}

/** The module specifiers a file imports (static, dynamic and type imports, re-exports). */
function specifiers(text: string): string[] {
  const out: string[] = [];
  const quoted = /(?:\bfrom\s+|\bimport\s*\(\s*|\bimport\s+)(["'])([^"'\n]+)\1/g;
  for (const m of text.matchAll(quoted)) out.push(m[2]);
  // A specifier built at run time cannot be pinned: flag any template that names npm.
  for (const m of text.matchAll(/`npm:[^`]*`/g)) out.push(m[0]);
  return out;
}

Deno.test("npm pins: every package lib/ and main.ts import is pinned exactly in deno.json", () => {
  const files = [join(root, "main.ts"), ...sources(join(root, "lib"))];
  const used = new Map<string, string>();
  for (const file of files) {
    for (const s of specifiers(Deno.readTextFileSync(file))) {
      if (/^(\.|\/|node:|jsr:|https?:|file:)/.test(s)) continue;
      check(!s.includes("npm:"), `${file}: imports ${s}; import npm packages through deno.json`);
      used.set(s.startsWith("@") ? s.split("/").slice(0, 2).join("/") : s.split("/")[0], file);
    }
  }
  check(used.has("sharp"), `no import of sharp found: the scan is broken (${[...used.keys()]})`);
  for (const [name, file] of used) {
    const target: string | undefined = config.imports?.[name];
    check(target !== undefined, `${file} imports ${name}, which deno.json's imports lacks`);
    const m = /^npm:(@?[^@]+)@(.+)$/.exec(target!);
    check(m !== null && m[1] === name, `deno.json maps ${name} to ${target}`);
    check(EXACT.test(m![2]), `deno.json pins ${name} at ${m![2]}, not an exact version`);
    check(lock.specifiers?.[target!] === m![2], `deno.lock does not lock ${target}`);
  }
});

Deno.test("npm pins: optional packages are pinned with integrity and kept out of deno.lock", () => {
  const pins = Object.values(OPTIONAL_NPM);
  for (const set of EMOJI_SETS) {
    check(`emoji-datasource-${set}` in OPTIONAL_NPM, `emoji-datasource-${set} is not pinned`);
  }
  const imports = Object.values(config.imports ?? {}).join(" ");
  const locked = JSON.stringify({ specifiers: lock.specifiers, npm: Object.keys(lock.npm ?? {}) });
  for (const p of pins) {
    check(EXACT.test(p.version), `${p.name}: version ${p.version} is not exact`);
    check(/^sha512-[A-Za-z0-9+/]{86}==$/.test(p.integrity), `${p.name}: integrity ${p.integrity}`);
    // In deno.lock or imports, Deno would install it on every fresh start (CI included).
    check(!locked.includes(p.name), `deno.lock holds ${p.name}: every fresh run would fetch it`);
    check(!imports.includes(p.name), `deno.json's imports name ${p.name}: Deno would install it`);
  }
});

/** A gzipped npm tarball (files under package/) and its integrity. */
async function tarball(files: Record<string, string>): Promise<[Uint8Array, string]> {
  const enc = new TextEncoder();
  const tar = concat([
    ...Object.entries(files).map(([p, t]) => tarMember(`package/${p}`, enc.encode(t))),
    TAR_END,
  ]);
  const gz = new Uint8Array(
    await new Response(
      new Blob([tar as BlobPart]).stream().pipeThrough(new CompressionStream("gzip")),
    ).arrayBuffer(),
  );
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-512", gz as BufferSource));
  return [gz, `sha512-${btoa(String.fromCharCode(...digest))}`];
}

Deno.test("npm pins: a pinned package is fetched once, checked, and only the kept files unpacked", async () => {
  const [gz, integrity] = await tarball({
    "package.json": "{}",
    "emoji.json": "[1, 2]",
    "img/x/64/a.png": "A",
    "img/x/16/a.png": "small",
  });
  const requests: string[] = [];
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, (req) => {
    requests.push(new URL(req.url).pathname);
    return new Response(gz as BodyInit);
  });
  const registry = `http://127.0.0.1:${server.addr.port}/`;
  const cache = await tempDir("npm-pins");
  const lines: string[] = [];
  const opts = {
    cache,
    registry,
    log: (l: string) => lines.push(l),
    keep: (p: string) => p === "emoji.json" || p.startsWith("img/x/64/"),
  };
  try {
    const pin: NpmPin = { name: "fake-pkg", version: "1.2.3", integrity };
    check(
      tarballUrl({ ...pin, name: "@scope/fake" }, registry).endsWith(
        "@scope/fake/-/fake-1.2.3.tgz",
      ),
      "scoped tarball address",
    );
    const dir = await pinnedPackage(pin, opts);
    check(dir === join(cache, "npm", "fake-pkg@1.2.3"), dir);
    check(Deno.readTextFileSync(join(dir, "emoji.json")) === "[1, 2]", "emoji.json unpacked");
    check(Deno.readTextFileSync(join(dir, "img/x/64/a.png")) === "A", "64-px image unpacked");
    for (const p of ["package.json", "img/x/16/a.png"]) {
      check(!exists(join(dir, p)), `${p} was unpacked`);
    }
    check(requests.join() === "/fake-pkg/-/fake-pkg-1.2.3.tgz", requests.join());
    await pinnedPackage(pin, opts);
    check(requests.length === 1, `fetched again: ${requests.join()}`);

    // A tarball that does not match its pin is refused and leaves nothing behind.
    const bad: NpmPin = {
      name: "other-pkg",
      version: "1.0.0",
      integrity: `sha512-${"A".repeat(86)}==`,
    };
    let error = "";
    await pinnedPackage(bad, opts).catch((e) => error = e.message);
    check(/does not match the integrity pinned in deno\.json/.test(error), error);
    check(!exists(join(cache, "npm", "other-pkg@1.0.0")), "a refused package was unpacked");
    check(
      [...Deno.readDirSync(join(cache, "npm"))].every((e) => !e.name.includes(".tmp-")),
      "a temporary folder was left",
    );
  } finally {
    await server.shutdown();
  }
});

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}
