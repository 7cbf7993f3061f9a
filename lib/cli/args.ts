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

/** A string option for a spec: its help, value placeholder and default. */
export const stringOption = (help: string, value: string, dflt?: string) =>
  ({ type: "string", help, value, ...(dflt !== undefined ? { default: dflt } : {}) }) as const;

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

/**
 * Joins `--flag -3` into `--flag=-3` for string options, so a negative number is read as the
 * flag's value (parseArgs would call it ambiguous) and then refused or accepted by its bounds.
 */
function attachNegativeNumbers(
  argv: string[],
  options: Record<string, { type: "string" | "boolean" }>,
): string[] {
  const takesValue = (arg: string) =>
    arg.startsWith("--") && options[arg.slice(2)]?.type === "string";
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i], next = argv[i + 1];
    if (arg === "--") {
      out.push(...argv.slice(i));
      break;
    }
    if (next !== undefined && takesValue(arg) && /^-(\d|\.\d|Infinity)/.test(next)) {
      out.push(`${arg}=${next}`);
      i++;
    } else out.push(arg);
  }
  return out;
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
      args: attachNegativeNumbers(argv, options),
      options,
      allowPositionals: spec.allowPositionals ?? false,
      strict: true,
    });
  } catch (e) {
    throw new UserError(
      `${(e as Error).message.split("\n")[0]} (see vmambar ${spec.name} --help)`,
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

/** Bounds of a numeric flag: min ≤ x ≤ max, and x > above. */
export interface FlagRange {
  min?: number;
  max?: number;
  above?: number;
}

function checkRange(name: string, raw: string, n: number, kind: string, r: FlagRange): number {
  const bounds = [
    r.above !== undefined ? `> ${r.above}` : "",
    r.min !== undefined && r.max === undefined ? `≥ ${r.min}` : "",
    r.max !== undefined && r.min === undefined ? `≤ ${r.max}` : "",
    r.min !== undefined && r.max !== undefined ? `in [${r.min}, ${r.max}]` : "",
  ].filter(Boolean).join(" and ");
  const ok = (r.min === undefined || n >= r.min) && (r.max === undefined || n <= r.max) &&
    (r.above === undefined || n > r.above);
  if (!ok) {
    throw new UserError(`--${name} must be ${kind}${bounds ? ` ${bounds}` : ""}, got ${raw}`);
  }
  return n;
}

/** Reads an integer flag within bounds, refusing anything else with one line naming it. */
export function intFlag(values: Values, name: string, min = -Infinity, max = Infinity): number {
  const raw = values[name];
  const n = Number(raw);
  if (typeof raw !== "string" || raw.trim() === "" || !Number.isSafeInteger(n)) {
    throw new UserError(`--${name} must be an integer, got ${raw}`);
  }
  return checkRange(name, raw, n, "an integer", {
    ...(min > -Infinity ? { min } : {}),
    ...(max < Infinity ? { max } : {}),
  });
}

/** A flag's comma-separated numbers ≥ 0 (one or more), refusing anything else with one line. */
export function numberListFlag(values: Values, name: string, min = 0): number[] {
  return String(values[name]).split(",").map((t) => t.trim()).map((t) => {
    const x = t === "" ? NaN : Number(t);
    if (!(x >= min && x < Infinity)) {
      throw new UserError(`--${name}: ${JSON.stringify(t)} is not a number ≥ ${min}`);
    }
    return x;
  });
}

/** Reads a number flag within bounds, refusing anything else with one line naming it. */
export function numberFlag(values: Values, name: string, range: FlagRange = {}): number {
  const raw = values[name];
  const n = Number(raw);
  if (typeof raw !== "string" || raw.trim() === "" || !Number.isFinite(n)) {
    throw new UserError(`--${name} must be a number, got ${raw}`);
  }
  return checkRange(name, raw, n, "a number", range);
}
