// vmambar: text-to-image with next-scale prediction on a Mamba + shared-attention backbone,
// trained and run on WebGPU. This file only dispatches to lib/cli/*.
import { commands } from "./lib/cli/commands.ts";
import { UserError } from "./lib/errors.ts";

export const VERSION = "0.1.0";

function usage(): string {
  const w = Math.max(...Object.keys(commands).map((k) => k.length)) + 2;
  return [
    `vmambar ${VERSION}: text-to-image generation on WebGPU (next-scale prediction, Mamba + GSA)`,
    "",
    "usage: vmambar <command> [options]",
    "",
    "commands:",
    ...Object.entries(commands).map(([k, c]) => `  ${k.padEnd(w)}${c.summary}`),
    "",
    "Run `vmambar <command> --help` for a command's options.",
  ].join("\n");
}

export async function run(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "-h" || name === "--help" || name === "help") {
    console.log(usage());
    return 0;
  }
  if (name === "-V" || name === "--version") {
    console.log(VERSION);
    return 0;
  }
  const cmd = commands[name];
  if (!cmd) {
    console.error(`vmambar: unknown command '${name}' (run vmambar --help for the list)`);
    return 2;
  }
  try {
    await cmd.run(rest);
    return 0;
  } catch (e) {
    if (e instanceof UserError) {
      console.error(`vmambar ${name}: ${e.message}`);
      return 1;
    }
    throw e;
  }
}

if (import.meta.main) Deno.exit(await run(Deno.args));
