// Buffer pool: freed storage buffers are kept by size class and handed out again, so a training
// step allocates nothing after the first few steps.
import { gpu } from "./device.ts";

const USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/** Rounds a byte count up to its class: powers of two below 64 KiB, then eighths of a power of two. */
export function sizeClass(bytes: number): number {
  const b = Math.max(16, Math.ceil(bytes / 16) * 16);
  if (b <= 65536) return 2 ** Math.ceil(Math.log2(b));
  const step = 2 ** (Math.ceil(Math.log2(b)) - 3);
  return Math.ceil(b / step) * step;
}

const free = new Map<number, GPUBuffer[]>();
export const poolStats = { allocatedBytes: 0, inUseBytes: 0, buffers: 0 };

export function acquireBuffer(bytes: number): GPUBuffer {
  const size = sizeClass(bytes);
  const list = free.get(size);
  poolStats.inUseBytes += size;
  const reused = list?.pop();
  if (reused) return reused;
  const { device, limits } = gpu();
  if (size > limits.maxStorageBufferBindingSize) {
    poolStats.inUseBytes -= size;
    throw new RangeError(
      `buffer of ${bytes} bytes exceeds this device's storage binding limit (${limits.maxStorageBufferBindingSize})`,
    );
  }
  poolStats.allocatedBytes += size;
  poolStats.buffers++;
  return device.createBuffer({ size, usage: USAGE });
}

export function releaseBuffer(buffer: GPUBuffer): void {
  const size = buffer.size;
  poolStats.inUseBytes -= size;
  let list = free.get(size);
  if (!list) free.set(size, list = []);
  list.push(buffer);
}

/** Destroys every pooled buffer that is not in use (e.g. between benchmark sizes). */
export function trimPool(): void {
  for (const list of free.values()) {
    for (const b of list) {
      poolStats.allocatedBytes -= b.size;
      poolStats.buffers--;
      b.destroy();
    }
  }
  free.clear();
}
