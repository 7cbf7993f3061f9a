// Command batching: dispatches go into one compute pass of one encoder and are submitted together
// (a dispatch costs ~10 µs, a submit or readback far more). Each dispatch's parameters are packed
// into one uniform buffer per submit, at 256-byte slots.
import { gpu } from "./device.ts";

const SLOT = 256;
const SLOTS = 4096;

interface Batch {
  encoder: GPUCommandEncoder;
  pass: GPUComputePassEncoder;
  uniforms: Uint32Array<ArrayBuffer>;
  uniformBuffer: GPUBuffer;
  used: number;
}

let batch: Batch | null = null;

/** GPU time per dispatch, by pipeline label (startGpuProfile / gpuProfile). */
interface Profiler {
  active: boolean;
  querySet: GPUQuerySet;
  /** Labels of this batch's dispatches, in query-pair order. */
  labels: string[];
  pending: { read: GPUBuffer; labels: string[] }[];
}
const QUERY_PAIRS = 2048;
let profiler: Profiler | null = null;
const spareUniformBuffers: GPUBuffer[] = [];
export const recorderStats = {
  dispatches: 0,
  submits: 0,
  readbacks: 0,
  /** Bind groups found in the cache, and made anew. */
  bindGroupHits: 0,
  bindGroupMisses: 0,
  /** When set (profiling), dispatches are also counted by pipeline label (the entry point). */
  byLabel: null as Map<string, number> | null,
};

// Bind groups, cached by what they bind. Making one is most of a dispatch's host cost (~8 µs of
// ~10 in Deno 2.9). A training step dispatches the same pipelines on the same buffers at the same
// uniform slots every step: the pool hands out each class's oldest free buffer, the spare uniform
// buffer comes back LIFO, and a step that ends with flush() starts its batch at slot 0. So in
// steady state every group hits. A destroyed buffer's groups are never looked up again (new
// buffers get new ids); the cap bounds what they hold.
const objectIds = new WeakMap<object, number>();
let nextObjectId = 1;
function idOf(o: object): number {
  let id = objectIds.get(o);
  if (id === undefined) objectIds.set(o, id = nextObjectId++);
  return id;
}
const bindGroups = new Map<string, GPUBindGroup>();
const BIND_GROUP_CACHE_MAX = 1 << 16;

function open(): Batch {
  const { device } = gpu();
  const encoder = device.createCommandEncoder();
  const uniformBuffer = spareUniformBuffers.pop() ??
    device.createBuffer({
      size: SLOT * SLOTS,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    });
  return {
    encoder,
    pass: encoder.beginComputePass(),
    uniforms: new Uint32Array((SLOT * SLOTS) / 4),
    uniformBuffer,
    used: 0,
  };
}

/** Reinterprets a float as the u32 word that holds it, for packing uniforms. */
const f32view = new Float32Array(1);
const u32view = new Uint32Array(f32view.buffer);
export function f32bits(x: number): number {
  f32view[0] = x;
  return u32view[0];
}

/** Workgroup counts for `n` workgroups in a 1-D launch, folded into y past the 65535 limit. */
export function grid(n: number): [number, number, number] {
  const max = gpu().limits.maxComputeWorkgroupsPerDimension;
  if (n <= max) return [Math.max(1, n), 1, 1];
  const y = Math.ceil(n / max);
  return [Math.ceil(n / y), y, 1];
}

/**
 * Records one dispatch. Binding 0 is the uniform block `params` (when `uniforms` is given), then
 * the storage buffers in order from binding 1 (or 0 without uniforms).
 */
export function dispatch(
  pipe: GPUComputePipeline,
  buffers: GPUBuffer[],
  uniforms: ArrayLike<number> | null,
  workgroups: [number, number?, number?],
): void {
  if (batch && uniforms && batch.used >= SLOTS) flush();
  if (batch && profiler?.active && profiler.labels.length >= QUERY_PAIRS) flush();
  batch ??= open();
  let offset = -1;
  if (uniforms) {
    if (uniforms.length > SLOT / 4) throw new Error("uniform block over 256 bytes");
    offset = batch.used * SLOT;
    batch.uniforms.set(uniforms, offset / 4);
    batch.used++;
  }
  let key = `${idOf(pipe)}:${offset >= 0 ? `${idOf(batch.uniformBuffer)}@${offset}` : "-"}`;
  for (const b of buffers) key += `,${idOf(b)}`;
  let group = bindGroups.get(key);
  if (group) recorderStats.bindGroupHits++;
  else {
    recorderStats.bindGroupMisses++;
    const entries: GPUBindGroupEntry[] = [];
    let binding = 0;
    if (offset >= 0) {
      entries.push({
        binding: binding++,
        resource: { buffer: batch.uniformBuffer, offset, size: SLOT },
      });
    }
    for (const b of buffers) entries.push({ binding: binding++, resource: { buffer: b } });
    group = gpu().device.createBindGroup({ layout: pipe.getBindGroupLayout(0), entries });
    if (bindGroups.size >= BIND_GROUP_CACHE_MAX) bindGroups.clear();
    bindGroups.set(key, group);
  }
  if (profiler?.active) {
    // A pass of its own, with timestamps at its start and end.
    const k = profiler.labels.length;
    profiler.labels.push(pipe.label);
    batch.pass.end();
    batch.pass = batch.encoder.beginComputePass({
      timestampWrites: {
        querySet: profiler.querySet,
        beginningOfPassWriteIndex: 2 * k,
        endOfPassWriteIndex: 2 * k + 1,
      },
    });
  }
  batch.pass.setPipeline(pipe);
  batch.pass.setBindGroup(0, group);
  batch.pass.dispatchWorkgroups(workgroups[0], workgroups[1] ?? 1, workgroups[2] ?? 1);
  recorderStats.dispatches++;
  const by = recorderStats.byLabel;
  if (by) by.set(pipe.label, (by.get(pipe.label) ?? 0) + 1);
}

/** Submits everything recorded so far. */
export function flush(): void {
  if (!batch) return;
  const { device } = gpu();
  const b = batch;
  batch = null;
  b.pass.end();
  let resolve: GPUBuffer | null = null;
  if (profiler && profiler.labels.length > 0) {
    const bytes = profiler.labels.length * 16;
    resolve = device.createBuffer({
      size: bytes,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
    const read = device.createBuffer({
      size: bytes,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    b.encoder.resolveQuerySet(profiler.querySet, 0, 2 * profiler.labels.length, resolve, 0);
    b.encoder.copyBufferToBuffer(resolve, 0, read, 0, bytes);
    profiler.pending.push({ read, labels: profiler.labels });
    profiler.labels = [];
  }
  if (b.used > 0) device.queue.writeBuffer(b.uniformBuffer, 0, b.uniforms, 0, (b.used * SLOT) / 4);
  device.queue.submit([b.encoder.finish()]);
  resolve?.destroy(); // after the submit that uses it
  recorderStats.submits++;
  // The queue orders the next writeBuffer after this submit's commands, so the buffer is reusable.
  spareUniformBuffers.push(b.uniformBuffer);
}

export function hasPending(): boolean {
  return batch !== null;
}

/** Uploads bytes into a buffer, after whatever was recorded before (which may still read it). */
export function upload(buffer: GPUBuffer, data: ArrayBufferView, offset = 0): void {
  flush();
  gpu().device.queue.writeBuffer(
    buffer,
    offset,
    data.buffer as ArrayBuffer,
    data.byteOffset,
    data.byteLength,
  );
}

/** Copies `bytes` of a buffer back to the CPU. Flushes first; costs one round trip (~ms). */
export async function readBuffer(
  buffer: GPUBuffer,
  bytes: number,
  offset = 0,
): Promise<ArrayBuffer> {
  flush();
  const { device } = gpu();
  const size = Math.ceil(bytes / 4) * 4;
  const staging = device.createBuffer({
    size,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(buffer, offset, staging, 0, size);
  device.queue.submit([enc.finish()]);
  recorderStats.readbacks++;
  await staging.mapAsync(GPUMapMode.READ);
  const out = staging.getMappedRange().slice(0, bytes);
  staging.unmap();
  staging.destroy();
  return out;
}

/** Waits until the GPU has finished everything submitted (for timing). */
export async function sync(): Promise<void> {
  flush();
  await gpu().device.queue.onSubmittedWorkDone();
}

/**
 * Times every dispatch from now on, each in a compute pass of its own with timestamps (slower:
 * for profiling only). Needs the timestamp-query feature; returns false where it is missing.
 */
export function startGpuProfile(): boolean {
  if (!gpu().timestamps) return false;
  flush();
  profiler ??= {
    active: true,
    querySet: gpu().device.createQuerySet({ type: "timestamp", count: 2 * QUERY_PAIRS }),
    labels: [],
    pending: [],
  };
  profiler.active = true;
  return true;
}

/** GPU milliseconds and dispatch counts by pipeline label since the last call (one readback). */
export async function gpuProfile(): Promise<Map<string, { ms: number; count: number }>> {
  const totals = new Map<string, { ms: number; count: number }>();
  if (!profiler) return totals;
  flush();
  const pending = profiler.pending;
  profiler.pending = [];
  for (const { read, labels } of pending) {
    await read.mapAsync(GPUMapMode.READ);
    const t = new BigUint64Array(read.getMappedRange());
    labels.forEach((label, k) => {
      const ns = Number(t[2 * k + 1] - t[2 * k]);
      const e = totals.get(label) ?? { ms: 0, count: 0 };
      e.ms += Math.max(0, ns) / 1e6;
      e.count++;
      totals.set(label, e);
    });
    read.unmap();
    read.destroy();
  }
  if (!profiler.active) {
    profiler.querySet.destroy();
    profiler = null;
  }
  return totals;
}

/** Stops timing dispatches; what was timed stays readable with gpuProfile(). */
export function stopGpuProfile(): void {
  flush();
  if (profiler) profiler.active = false;
}
