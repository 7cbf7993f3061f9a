// Checkpoints (DESIGN §5): a module's parameters as safetensors with `__metadata__` holding
// format "vmambar", the kind (tokenizer | model | train-state) and the config as JSON.
import { UserError } from "../errors.ts";
import { upload } from "../gpu/mod.ts";
import type { Module } from "../nn/module.ts";
import type { Tensor } from "../tensor/tensor.ts";
import {
  readSafetensors,
  type StTensor,
  stTensor,
  toFloat32,
  writeSafetensors,
} from "./safetensors.ts";

export type CheckpointKind = "tokenizer" | "model" | "train-state";

/** Reads tensors back from the GPU (all copies queued before the first wait). */
export async function tensorsToHost(named: [string, Tensor][]): Promise<Map<string, StTensor>> {
  const datas = await Promise.all(named.map(([, t]) => t.read()));
  const out = new Map<string, StTensor>();
  named.forEach(([name, t], i) => {
    const d = datas[i];
    out.set(name, stTensor(d, [...t.shape], t.dtype === "f16" ? "F16" : undefined));
  });
  return out;
}

export async function saveCheckpoint(
  path: string,
  named: [string, Tensor][],
  kind: CheckpointKind,
  config: unknown,
  extra: Record<string, string> = {},
): Promise<void> {
  const tensors = await tensorsToHost(named);
  await writeSafetensors(path, tensors, {
    format: "vmambar",
    kind,
    config: JSON.stringify(config),
    ...extra,
  });
}

export interface LoadedCheckpoint {
  config: unknown;
  metadata: Record<string, string>;
  tensors: Map<string, StTensor>;
}

/** Reads a vmambar checkpoint, refusing other formats and kinds with a one-line error. */
export async function readCheckpoint(
  path: string,
  kind: CheckpointKind,
): Promise<LoadedCheckpoint> {
  const file = await readSafetensors(path);
  const m = file.metadata;
  if (m.format !== "vmambar") {
    throw new UserError(
      `${path} is not a vmambar checkpoint (metadata format is ${m.format ?? "missing"})`,
    );
  }
  if (m.kind !== kind) throw new UserError(`${path} is a ${m.kind} checkpoint, expected a ${kind}`);
  let config: unknown;
  try {
    config = JSON.parse(m.config ?? "null");
  } catch {
    throw new UserError(`${path}: its config metadata is not JSON`);
  }
  return { config, metadata: m, tensors: file.tensors };
}

/**
 * Copies a checkpoint's tensors into a module's parameters; names and shapes must match exactly,
 * except that the parameters named in `keepMissing` keep their values where the file lacks them.
 */
export function loadParameters(
  module: Module,
  tensors: Map<string, StTensor>,
  source: string,
  keepMissing: readonly string[] = [],
): void {
  const params = module.namedParameters().filter(([n]) =>
    tensors.has(n) || !keepMissing.includes(n)
  );
  const want = new Set(module.namedParameters().map(([n]) => n));
  const missing = params.filter(([n]) => !tensors.has(n)).map(([n]) => n);
  const unexpected = [...tensors.keys()].filter((n) => !want.has(n));
  if (missing.length || unexpected.length) {
    throw new UserError(
      `${source} does not match the model: ` +
        [
          missing.length
            ? `missing ${missing.slice(0, 3).join(", ")}${missing.length > 3 ? "…" : ""}`
            : "",
          unexpected.length
            ? `unexpected ${unexpected.slice(0, 3).join(", ")}${unexpected.length > 3 ? "…" : ""}`
            : "",
        ].filter(Boolean).join("; "),
    );
  }
  for (const [name, p] of params) {
    const t = tensors.get(name)!;
    if (t.shape.join() !== p.shape.join()) {
      throw new UserError(`${source}: ${name} is [${t.shape}], the model needs [${p.shape}]`);
    }
    upload(p.buffer, toFloat32(t));
  }
}
