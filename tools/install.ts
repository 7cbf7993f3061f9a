// `deno task install`: puts `vmambar` on PATH as `deno install -g` does, then makes the wrapper
// run the Deno that installed it (its absolute path) instead of whatever `deno` is on PATH, so
// the command also works where Deno was only run through npx (README's Quick start).
// Extra arguments go to `deno install`, e.g. `deno task install --root DIR`.
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const deno = Deno.execPath();
const args = ["install", "-g", "-A", "-f", "--name", "vmambar", "--config", "deno.json", "main.ts"];
const done = await new Deno.Command(deno, {
  args: [...args, ...Deno.args],
  cwd: fileURLToPath(new URL("..", import.meta.url)),
}).spawn().status;
if (!done.success) Deno.exit(done.code);

// Where deno install puts it: --root DIR, else $DENO_INSTALL_ROOT, else ~/.deno.
const rootAt = Deno.args.findIndex((a) => a === "--root" || a.startsWith("--root="));
const root = rootAt < 0
  ? Deno.env.get("DENO_INSTALL_ROOT") ??
    join(Deno.env.get("HOME") ?? Deno.env.get("USERPROFILE") ?? ".", ".deno")
  : Deno.args[rootAt].includes("=")
  ? Deno.args[rootAt].slice("--root=".length)
  : Deno.args[rootAt + 1];
const windows = Deno.build.os === "windows";
const wrapper = join(root, "bin", windows ? "vmambar.cmd" : "vmambar");
const text = await Deno.readTextFile(wrapper);
const quoted = windows ? `"${deno}"` : `'${deno.replaceAll("'", `'\\''`)}'`;
const pinned = text.replace(/^(exec |@)?deno (run )/m, `$1${quoted} $2`);
if (pinned === text) {
  console.error(`install: ${wrapper} runs deno from PATH (its form was not recognised)`);
} else {
  await Deno.writeTextFile(wrapper, pinned);
  console.log(`${wrapper} runs ${deno}`);
}
