// Tensor: a shape, a dtype and a pooled GPU buffer. Memory is released deterministically: every
// tensor made inside tidy() is freed when it returns, except what it returns or keep()s.
import { ShapeError } from "../errors.ts";
import { acquireBuffer, gpu, readBuffer, releaseBuffer, upload } from "../gpu/mod.ts";

export type DType = "f32" | "f16" | "i32" | "u32";
export const BYTES: Record<DType, number> = { f32: 4, f16: 2, i32: 4, u32: 4 };

/** Backward of one recorded op: maps the output's gradient to one gradient per input (or null). */
export interface Node {
  op: string;
  inputs: Tensor[];
  backward: (grad: Tensor) => (Tensor | null)[];
}

interface Storage {
  buffer: GPUBuffer;
  refs: number;
}

const scopes: Set<Tensor>[] = [];
let gradEnabled = true;
let nextId = 1;

export class Tensor {
  readonly id = nextId++;
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly size: number;
  #storage: Storage | null;
  requiresGrad = false;
  grad: Tensor | null = null;
  node: Node | null = null;

  /** `op` names the op making this tensor, for errors. */
  constructor(shape: readonly number[], dtype: DType, storage?: Storage, op = "tensor") {
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 0) throw new ShapeError(`${op}: bad shape [${shape}]`);
    }
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
    this.size = shape.reduce((a, b) => a * b, 1);
    if (storage) {
      storage.refs++;
      this.#storage = storage;
    } else {
      const bytes = this.size * BYTES[dtype];
      const limit = gpu().limits.maxStorageBufferBindingSize;
      if (bytes > limit) {
        throw new ShapeError(
          `${op}: output [${shape}] ${dtype} needs ${bytes} bytes, over this device's ` +
            `storage-buffer limit of ${limit}`,
        );
      }
      // An empty tensor still gets a small buffer so every binding is valid.
      this.#storage = { buffer: acquireBuffer(Math.max(4, bytes)), refs: 1 };
    }
    scopes.at(-1)?.add(this);
  }

  get buffer(): GPUBuffer {
    if (!this.#storage) throw new Error(`tensor #${this.id} [${this.shape}] used after dispose`);
    return this.#storage.buffer;
  }

  /** True when another tensor views the same buffer (a reshape), so it cannot be handed over. */
  get shared(): boolean {
    return (this.#storage?.refs ?? 0) > 1;
  }

  get disposed(): boolean {
    return this.#storage === null;
  }

  get bytes(): number {
    return this.size * BYTES[this.dtype];
  }

  /** A view with another shape over the same buffer (tensors are always contiguous). */
  reshape(shape: readonly number[]): Tensor {
    const resolved = resolveShape(shape, this.size, this.shape);
    const view = new Tensor(resolved, this.dtype, this.#storage ?? undefined);
    if (this.#storage === null) throw new Error("reshape of a disposed tensor");
    if (this.requiresGrad && gradEnabled) {
      view.requiresGrad = true;
      view.node = { op: "reshape", inputs: [this], backward: (g) => [g.reshape(this.shape)] };
    }
    return view;
  }

  dispose(): void {
    const s = this.#storage;
    if (!s) return;
    this.#storage = null;
    if (--s.refs === 0) releaseBuffer(s.buffer);
    scopes.at(-1)?.delete(this);
  }

  async read(): Promise<Float32Array | Int32Array | Uint32Array | Uint16Array> {
    const raw = await readBuffer(this.buffer, this.bytes);
    switch (this.dtype) {
      case "f32":
        return new Float32Array(raw);
      case "i32":
        return new Int32Array(raw);
      case "u32":
        return new Uint32Array(raw);
      case "f16":
        return new Uint16Array(raw);
    }
  }

  /** Reads the values back as numbers (f16 converted); one GPU round trip. */
  async toArray(): Promise<number[]> {
    const data = await this.read();
    if (this.dtype === "f16") return Array.from(data as Uint16Array, halfToFloat);
    return Array.from(data);
  }

  /** Reads a one-element tensor as a number. */
  async item(): Promise<number> {
    if (this.size !== 1) throw new ShapeError(`item() needs one element, got [${this.shape}]`);
    return (await this.toArray())[0];
  }

  toString(): string {
    return `Tensor#${this.id}<${this.dtype}>[${this.shape}]`;
  }
}

function resolveShape(shape: readonly number[], size: number, from: readonly number[]): number[] {
  const s = [...shape];
  const free = s.indexOf(-1);
  const known = s.reduce((a, b, i) => (i === free ? a : a * b), 1);
  if (free >= 0) s[free] = known === 0 ? 0 : size / known;
  if (s.reduce((a, b) => a * b, 1) !== size || !s.every(Number.isInteger)) {
    throw new ShapeError(`reshape: cannot view [${from}] as [${shape}]`);
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// Creation from host data

export type HostData = ArrayLike<number> | Float32Array | Int32Array | Uint32Array;

export function tensor(data: HostData, shape: readonly number[], dtype: DType = "f32"): Tensor {
  const t = new Tensor(shape, dtype);
  if (data.length !== t.size) {
    t.dispose();
    throw new ShapeError(`tensor: ${data.length} values for shape [${shape}]`);
  }
  let bytes: ArrayBufferView;
  switch (dtype) {
    case "f32":
      bytes = data instanceof Float32Array ? data : Float32Array.from(data);
      break;
    case "i32":
      bytes = data instanceof Int32Array ? data : Int32Array.from(data);
      break;
    case "u32":
      bytes = data instanceof Uint32Array ? data : Uint32Array.from(data);
      break;
    case "f16": {
      const h = new Uint16Array(Math.ceil(t.size / 2) * 2);
      for (let i = 0; i < t.size; i++) h[i] = floatToHalf(data[i]);
      bytes = h;
      break;
    }
  }
  if (t.size > 0) upload(t.buffer, padTo4(bytes));
  return t;
}

function padTo4(v: ArrayBufferView): ArrayBufferView {
  if (v.byteLength % 4 === 0) return v;
  const out = new Uint8Array(Math.ceil(v.byteLength / 4) * 4);
  out.set(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
  return out;
}

/** A trainable leaf: kept outside every scope, gradients accumulate into `.grad`. */
export function parameter(data: HostData, shape: readonly number[]): Tensor {
  const t = keep(tensor(data, shape, "f32"));
  t.requiresGrad = true;
  return t;
}

// ---------------------------------------------------------------------------------------------
// Scopes and grad mode

/** Runs fn; frees every tensor it created except those in its result and those keep()-ed. */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Tensor>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } finally {
    scopes.pop();
  }
  return closeScope(scope, result);
}

/** Frees a finished scope's tensors except those in `result`, which move to the parent scope. */
function closeScope<T>(scope: Set<Tensor>, result: T): T {
  const survivors = new Set<Tensor>();
  collectTensors(result, survivors);
  const parent = scopes.at(-1);
  for (const t of scope) {
    if (survivors.has(t)) parent?.add(t);
    else t.dispose();
  }
  return result;
}

/** The async form of tidy(), for code that awaits (readbacks) inside the scope. */
export async function tidyAsync<T>(fn: () => Promise<T>): Promise<T> {
  const scope = new Set<Tensor>();
  scopes.push(scope);
  let result: T;
  try {
    result = await fn();
  } finally {
    const i = scopes.lastIndexOf(scope);
    if (i >= 0) scopes.splice(i, 1);
  }
  return closeScope(scope, result);
}

function collectTensors(x: unknown, into: Set<Tensor>): void {
  if (x instanceof Tensor) into.add(x);
  else if (Array.isArray(x)) { for (const v of x) collectTensors(v, into); }
  else if (x && typeof x === "object" && Object.getPrototypeOf(x) === Object.prototype) {
    for (const v of Object.values(x)) collectTensors(v, into);
  }
}

/** Takes a tensor out of scope tracking: the caller now owns it and must dispose() it. */
export function keep<T extends Tensor>(t: T): T {
  for (const s of scopes) s.delete(t);
  return t;
}

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Runs fn without recording anything for backward (inference, optimizer updates). */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/** Records an op for backward when any input needs a gradient. */
export function record(
  out: Tensor,
  op: string,
  inputs: Tensor[],
  backward: (grad: Tensor) => (Tensor | null)[],
): Tensor {
  if (gradEnabled && inputs.some((t) => t.requiresGrad)) {
    out.requiresGrad = true;
    out.node = { op, inputs, backward };
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// IEEE half conversion (host side)

export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

export function floatToHalf(x: number): number {
  return f16round(x);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
function f16round(val: number): number {
  f32[0] = val;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
  return sign | h;
}
