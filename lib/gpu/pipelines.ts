// Compute pipelines, compiled once per (source, entry point, override constants).
import { gpu } from "./device.ts";

// Keyed by the source string itself (V8 keeps a string's hash, and sources come from imports or
// from `generated`, so the same object comes back each call), then by entry point and constants.
const cache = new Map<string, Map<string, GPUComputePipeline>>();
let compiled = 0;

export function pipeline(
  code: string,
  entryPoint = "main",
  constants: Record<string, number> = {},
): GPUComputePipeline {
  let byEntry = cache.get(code);
  if (!byEntry) cache.set(code, byEntry = new Map());
  const key = Object.keys(constants).length
    ? `${entryPoint}:${JSON.stringify(constants)}`
    : entryPoint;
  let p = byEntry.get(key);
  if (!p) {
    const { device } = gpu();
    const module = device.createShaderModule({ code });
    p = device.createComputePipeline({
      label: `${labels.get(code) ?? code.match(/^\/\/ *(.{0,40})/)?.[1] ?? "wgsl"}:${entryPoint}`,
      layout: "auto",
      compute: { module, entryPoint, constants },
    });
    byEntry.set(key, p);
    compiled++;
  }
  return p;
}

const sources = new Map<string, string>();
const labels = new Map<string, string>(); // generated code → its key, to name its pipelines

/** Generated WGSL, built once per key: generators are too slow to run on every dispatch. */
export function generated(key: string, make: () => string): string {
  let code = sources.get(key);
  if (code === undefined) {
    sources.set(key, code = make());
    labels.set(code, key.length > 60 ? key.slice(0, 60) : key);
  }
  return code;
}

/** Compiles `code` and returns its compiler errors, or [] (for tests and kernel development). */
export async function compileErrors(code: string): Promise<string[]> {
  const { device } = gpu();
  const m = device.createShaderModule({ code });
  const info = await m.getCompilationInfo();
  return info.messages.filter((x) => x.type === "error").map((x) =>
    `${x.lineNum}:${x.linePos} ${x.message}`
  );
}

export function pipelineCount(): number {
  return compiled;
}
