// `--world N`: runs the same command again as N processes under Open MPI's mpirun, and waits for
// them. mpirun ends the job when one process exits with an error; the collectives' deadline
// (VMAMBAR_COLLECTIVE_TIMEOUT) ends it when one hangs.
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { existsSync } from "node:fs";
import { UserError } from "../errors.ts";
import { launchedWorldSize } from "./collective.ts";

/** What every spawned process gets in its environment: nothing may enable NVLink multicast. */
export const RANK_ENV: Record<string, string> = { NCCL_NVLS_ENABLE: "0" };

/** This program's own command line: `deno run -A main.ts`, or a compiled binary. */
export function selfCommand(): string[] {
  const exe = Deno.execPath();
  if (!/^deno(\.exe)?$/.test(basename(exe))) return [exe];
  const main = Deno.mainModule;
  const cmd = [exe, "run", "-A"];
  if (main.startsWith("file:")) {
    const config = join(dirname(fileURLToPath(main)), "deno.json");
    if (existsSync(config)) cmd.push("--config", config);
  }
  return [...cmd, main];
}

/** mpirun's command line for `n` copies of `command` (`extra`: more mpirun options). */
export function mpirunCommand(n: number, command: string[], extra: string[] = []): string[] {
  const asRoot = Deno.uid() === 0 ? ["--allow-run-as-root"] : [];
  // No core binding: each process is many threads (V8, the GPU driver) and a GPU of its own.
  const env = Object.keys(RANK_ENV).flatMap((k) => ["-x", k]);
  return [
    "mpirun",
    "-np",
    String(n),
    "--oversubscribe",
    "--bind-to",
    "none",
    ...asRoot,
    ...env,
    ...extra,
    ...command,
  ];
}

/**
 * Runs `args` (a vmambar command line) as `n` MPI processes; returns their exit code and whether
 * a SIGINT (Ctrl-C) arrived while they ran.
 */
export async function runUnderMpirun(
  n: number,
  args: string[],
): Promise<{ code: number; interrupted: boolean }> {
  const [cmd, ...rest] = mpirunCommand(n, [...selfCommand(), ...args]);
  let child;
  try {
    child = new Deno.Command(cmd, {
      args: rest,
      env: RANK_ENV,
      stdin: "null",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new UserError(
        "--world needs Open MPI's mpirun (Debian: apt-get install openmpi-bin)",
      );
    }
    throw e;
  }
  // Ctrl-C reaches mpirun and the processes too: this launcher waits for them to end.
  let interrupted = false;
  const note = () => (interrupted = true);
  Deno.addSignalListener("SIGINT", note);
  try {
    return { code: (await child.status).code, interrupted };
  } finally {
    Deno.removeSignalListener("SIGINT", note);
  }
}

/**
 * `--world` of a data-parallel command (`train`, `tokenize`). In a process mpirun did not start,
 * `world` > 1 runs the same command line (`command` and its `argv`) as `world` processes under
 * mpirun and returns null once they all succeeded; one that failed is an error here too.
 * Otherwise returns the number of processes, that mpirun started (`world` must match it) or 1.
 */
export async function launchWorld(
  command: string,
  argv: string[],
  world: number | undefined,
): Promise<number | null> {
  const launched = launchedWorldSize();
  const n = world ?? launched;
  if (n > 1 && launched === 1) {
    const { code, interrupted } = await runUnderMpirun(n, [command, ...argv]);
    if (code !== 0 && interrupted) {
      throw new UserError(`${command} --world ${n}: stopped by SIGINT (exit ${code})`);
    }
    if (code !== 0) throw new UserError(`${command} --world ${n}: a process failed (exit ${code})`);
    return null;
  }
  if (n !== launched) {
    throw new UserError(`--world ${n}, but mpirun started ${launched} processes`);
  }
  return n;
}
