// Argument parsing shared by every subcommand: node:util parseArgs plus a generated --help.
import { parseArgs } from "node:util";
import { UserError } from "../errors.ts";

export interface OptionSpec {
  type: "string" | "boolean";
  short?: string;
  default?: string | boolean;
  multiple?: boolean;
  /** One line for --help; a value placeholder may follow the flag, e.g. "N". */
  help: string;
  value?: string;
}

export interface CommandSpec {
  name: string;
  usage: string;
  summary: string;
  options: Record<string, OptionSpec>;
  /** Extra lines after the option table (examples, notes). */
  more?: string;
  allowPositionals?: boolean;
}

export function helpText(spec: CommandSpec): string {
  const rows = Object.entries(spec.options).map(([name, o]) => {
    const flag = `${o.short ? `-${o.short}, ` : "    "}--${name}${
      o.type === "string" ? ` ${o.value ?? "VALUE"}` : ""
    }`;
    const def = o.default !== undefined && o.default !== false ? ` (default: ${o.default})` : "";
    return [flag, o.help + def];
  });
  rows.push(["-h, --help", "show this help"]);
  const w = Math.max(...rows.map((r) => r[0].length)) + 2;
  return [
    `usage: vmambar ${spec.usage}`,
    "",
    spec.summary,
    "",
    "options:",
    ...rows.map(([f, h]) => `  ${f.padEnd(w)}${h}`),
    ...(spec.more ? ["", spec.more] : []),
  ].join("\n");
}

export type Values = Record<string, string | boolean | string[] | undefined>;

/** Parses argv for a subcommand; prints help and returns null on --help. Bad flags are UserErrors. */
export function parseCommand(
  spec: CommandSpec,
  argv: string[],
): { values: Values; positionals: string[] } | null {
  const options: Record<
    string,
    { type: "string" | "boolean"; short?: string; multiple?: boolean }
  > = { help: { type: "boolean", short: "h" } };
  for (const [k, o] of Object.entries(spec.options)) {
    options[k] = {
      type: o.type,
      ...(o.short ? { short: o.short } : {}),
      ...(o.multiple ? { multiple: true } : {}),
    };
  }
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options,
      allowPositionals: spec.allowPositionals ?? false,
      strict: true,
    });
  } catch (e) {
    throw new UserError(
      `${spec.name}: ${(e as Error).message.split("\n")[0]} (see vmambar ${spec.name} --help)`,
    );
  }
  if (parsed.values.help) {
    console.log(helpText(spec));
    return null;
  }
  const values: Values = {};
  for (const [k, o] of Object.entries(spec.options)) {
    values[k] = (parsed.values as Values)[k] ?? o.default;
  }
  return { values, positionals: parsed.positionals };
}

/** Reads an integer flag, refusing anything else with a one-line error. */
export function intFlag(values: Values, name: string, min = -Infinity): number {
  const raw = values[name];
  const n = Number(raw);
  if (typeof raw !== "string" || !Number.isInteger(n) || n < min) {
    throw new UserError(
      `--${name} must be an integer${min > -Infinity ? ` ≥ ${min}` : ""}, got ${raw}`,
    );
  }
  return n;
}

/** Reads a number flag, refusing anything else with a one-line error. */
export function numberFlag(values: Values, name: string): number {
  const raw = values[name];
  const n = Number(raw);
  if (typeof raw !== "string" || !Number.isFinite(n)) {
    throw new UserError(`--${name} must be a number, got ${raw}`);
  }
  return n;
}
