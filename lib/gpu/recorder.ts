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
const spareUniformBuffers: GPUBuffer[] = [];
export const recorderStats = {
  dispatches: 0,
  submits: 0,
  readbacks: 0,
  /** When set (profiling), dispatches are also counted by pipeline label (the entry point). */
  byLabel: null as Map<string, number> | null,
};

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
  batch ??= open();
  const entries: GPUBindGroupEntry[] = [];
  let binding = 0;
  if (uniforms) {
    if (uniforms.length > SLOT / 4) throw new Error("uniform block over 256 bytes");
    const offset = batch.used * SLOT;
    batch.uniforms.set(uniforms, offset / 4);
    batch.used++;
    entries.push({
      binding: binding++,
      resource: { buffer: batch.uniformBuffer, offset, size: SLOT },
    });
  }
  for (const b of buffers) entries.push({ binding: binding++, resource: { buffer: b } });
  const group = gpu().device.createBindGroup({ layout: pipe.getBindGroupLayout(0), entries });
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
  if (b.used > 0) device.queue.writeBuffer(b.uniformBuffer, 0, b.uniforms, 0, (b.used * SLOT) / 4);
  device.queue.submit([b.encoder.finish()]);
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
