// safetensors: an 8-byte little-endian header length, a JSON header (tensor dtypes, shapes and
// byte ranges, plus `__metadata__` strings), then the raw little-endian data. Writes go to a
// temporary file that is flushed and renamed into place, so a crash never leaves half a checkpoint.
import { basename, dirname, join } from "node:path";
import { UserError } from "../errors.ts";
import { halfToFloat } from "../tensor/tensor.ts";
import { killPoint } from "./kill_points.ts";

export type StDtype =
  | "F32"
  | "F16"
  | "BF16"
  | "F64"
  | "I64"
  | "I32"
  | "U32"
  | "I16"
  | "U16"
  | "I8"
  | "U8"
  | "BOOL";

export const ST_BYTES: Record<StDtype, number> = {
  F64: 8,
  I64: 8,
  F32: 4,
  I32: 4,
  U32: 4,
  F16: 2,
  BF16: 2,
  I16: 2,
  U16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

export interface StTensor {
  dtype: StDtype;
  shape: number[];
  /** Little-endian bytes, exactly size × element bytes. */
  data: Uint8Array;
}

export interface SafetensorsFile {
  metadata: Record<string, string>;
  tensors: Map<string, StTensor>;
}

function bytesOf(v: ArrayBufferView): Uint8Array {
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

/** A tensor entry from a typed array. */
export function stTensor(
  data: Float32Array | Int32Array | Uint32Array | Uint16Array | Uint8Array,
  shape: number[],
  dtype?: StDtype,
): StTensor {
  const d: StDtype = dtype ??
    (data instanceof Float32Array
      ? "F32"
      : data instanceof Int32Array
      ? "I32"
      : data instanceof Uint32Array
      ? "U32"
      : data instanceof Uint16Array
      ? "F16"
      : "U8");
  return { dtype: d, shape, data: bytesOf(data) };
}

/** The file's bytes (header padded with spaces to 8-byte alignment, as the reference writer). */
export function encodeSafetensors(
  tensors: Map<string, StTensor> | Record<string, StTensor>,
  metadata: Record<string, string> = {},
): Uint8Array {
  const entries = tensors instanceof Map ? [...tensors] : Object.entries(tensors);
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of entries) {
    const size = t.shape.reduce((a, b) => a * b, 1) * ST_BYTES[t.dtype];
    if (size !== t.data.byteLength) {
      throw new Error(
        `safetensors: ${name} has ${t.data.byteLength} bytes for [${t.shape}] ${t.dtype}`,
      );
    }
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + size] };
    offset += size;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - ((8 + json.length) % 8)) % 8);
  const head = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + head.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  let at = 8 + head.length;
  for (const [, t] of entries) {
    out.set(t.data, at);
    at += t.data.byteLength;
  }
  return out;
}

/** Parses safetensors bytes; anything malformed is a one-line UserError naming `source`. */
export function decodeSafetensors(bytes: Uint8Array, source = "safetensors file"): SafetensorsFile {
  const bad = (why: string) => new UserError(`${source} is not a valid safetensors file: ${why}`);
  if (bytes.byteLength < 8) throw bad("shorter than its 8-byte header length");
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  if (n > bytes.byteLength - 8) throw bad(`header of ${n} bytes, file has ${bytes.byteLength}`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + n)));
  } catch {
    throw bad("its header is not JSON");
  }
  if (!header || typeof header !== "object" || Array.isArray(header)) {
    throw bad("header is not an object");
  }
  const data = bytes.subarray(8 + n);
  const metadata: Record<string, string> = {};
  const tensors = new Map<string, StTensor>();
  for (const [name, v] of Object.entries(header)) {
    if (name === "__metadata__") {
      for (const [k, s] of Object.entries(v as Record<string, unknown>)) {
        if (typeof s !== "string") throw bad(`metadata ${k} is not a string`);
        metadata[k] = s;
      }
      continue;
    }
    const e = v as { dtype?: StDtype; shape?: number[]; data_offsets?: [number, number] };
    if (!e.dtype || !(e.dtype in ST_BYTES)) throw bad(`${name} has unknown dtype ${e.dtype}`);
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isInteger(d) && d >= 0)) {
      throw bad(`${name} has a bad shape`);
    }
    const [s, end] = e.data_offsets ?? [-1, -1];
    const size = e.shape.reduce((a, b) => a * b, 1) * ST_BYTES[e.dtype];
    if (!(Number.isInteger(s) && Number.isInteger(end) && s >= 0 && end - s === size)) {
      throw bad(`${name} has byte range [${s}, ${end}) for ${size} bytes`);
    }
    if (end > data.byteLength) {
      throw bad(`${name} ends at ${end}, past the data (${data.byteLength}): truncated?`);
    }
    tensors.set(name, { dtype: e.dtype, shape: e.shape, data: data.subarray(s, end) });
  }
  return { metadata, tensors };
}

/**
 * Writes atomically: a temporary file beside `path`, flushed to disk (fsync) and renamed into
 * place, then the folder flushed, so that after a crash `path` holds the old file or the new
 * one, whole. Temporaries left by dead processes are removed first.
 */
export async function writeSafetensors(
  path: string,
  tensors: Map<string, StTensor> | Record<string, StTensor>,
  metadata: Record<string, string> = {},
): Promise<void> {
  removeStaleTemporaries(path);
  const bytes = encodeSafetensors(tensors, metadata);
  const tmp = `${path}.tmp-${Deno.pid}`;
  try {
    const file = await Deno.open(tmp, { write: true, create: true, truncate: true });
    try {
      killPoint(`${tmp} created`);
      const half = bytes.length >> 1;
      await writeAll(file, bytes.subarray(0, half));
      killPoint(`${tmp} half written`);
      await writeAll(file, bytes.subarray(half));
      await file.sync();
    } finally {
      file.close();
    }
    killPoint(`${tmp} written`);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
  killPoint(`${path} renamed`);
  syncFolder(dirname(path));
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await file.write(bytes.subarray(at));
}

/** Makes a rename durable (POSIX); where a folder cannot be opened, there is nothing to do. */
function syncFolder(dir: string): void {
  try {
    const d = Deno.openSync(dir, { read: true });
    try {
      d.syncSync();
    } finally {
      d.close();
    }
  } catch {
    // Windows cannot open a folder as a file.
  }
}

/** Removes `path.tmp-PID` files whose process is gone (known on Linux through /proc). */
function removeStaleTemporaries(path: string): void {
  if (Deno.build.os !== "linux") return;
  const dir = dirname(path), prefix = `${basename(path)}.tmp-`;
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(dir)];
  } catch {
    return;
  }
  for (const e of entries) {
    if (!e.name.startsWith(prefix)) continue;
    const pid = e.name.slice(prefix.length);
    if (!/^\d+$/.test(pid) || Number(pid) === Deno.pid) continue;
    try {
      Deno.statSync(`/proc/${pid}`);
    } catch {
      try {
        Deno.removeSync(join(dir, e.name));
      } catch {
        // Another process may have removed it already.
      }
    }
  }
}

export async function readSafetensors(path: string): Promise<SafetensorsFile> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new UserError(`${path}: no such file`);
    throw new UserError(`${path}: cannot read (${(e as Error).message})`);
  }
  return decodeSafetensors(bytes, path);
}

/** The f32 values of an entry (F32, F16 or BF16 converted). */
export function toFloat32(t: StTensor): Float32Array {
  const aligned = t.data.byteOffset % 4 === 0 ? t.data : t.data.slice();
  if (t.dtype === "F32") {
    return new Float32Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 4).slice();
  }
  const u16 = new Uint16Array(t.data.slice().buffer);
  if (t.dtype === "BF16") {
    const out = new Uint32Array(u16.length);
    for (let i = 0; i < u16.length; i++) out[i] = u16[i] << 16;
    return new Float32Array(out.buffer);
  }
  if (t.dtype === "F16") return Float32Array.from(u16, halfToFloat);
  throw new UserError(`cannot read a ${t.dtype} tensor as floats`);
}
