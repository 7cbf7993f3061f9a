// Compute pipelines, compiled once per (source, entry point, override constants).
import { gpu } from "./device.ts";

const cache = new Map<string, GPUComputePipeline>();

export function pipeline(
  code: string,
  entryPoint = "main",
  constants: Record<string, number> = {},
): GPUComputePipeline {
  const key = `${entryPoint}\u0000${JSON.stringify(constants)}\u0000${code}`;
  let p = cache.get(key);
  if (!p) {
    const { device } = gpu();
    const module = device.createShaderModule({ code });
    p = device.createComputePipeline({
      layout: "auto",
      compute: { module, entryPoint, constants },
    });
    cache.set(key, p);
  }
  return p;
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
  return cache.size;
}
