// Buffer pool: freed storage buffers are kept by size class and handed out again, so a training
// step allocates nothing after the first few steps. Each class hands out its oldest free buffer
// (lowest serial), not the last freed: then a step that makes the same requests as the one before
// gets the same buffers whatever order the last one freed them in, which lets the recorder reuse
// its bind groups.
import { gpu } from "./device.ts";

const USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/** Rounds a byte count up to its class: powers of two below 64 KiB, then eighths of a power of two. */
export function sizeClass(bytes: number): number {
  const b = Math.max(16, Math.ceil(bytes / 16) * 16);
  if (b <= 65536) return 2 ** Math.ceil(Math.log2(b));
  const step = 2 ** (Math.ceil(Math.log2(b)) - 3);
  return Math.ceil(b / step) * step;
}

interface Pooled {
  serial: number;
  buffer: GPUBuffer;
}
const serials = new WeakMap<GPUBuffer, number>();
let nextSerial = 0;

/** A binary min-heap by serial. */
class FreeList {
  readonly items: Pooled[] = [];
  push(p: Pooled): void {
    const h = this.items;
    h.push(p);
    for (let i = h.length - 1; i > 0;) {
      const up = (i - 1) >> 1;
      if (h[up].serial <= h[i].serial) break;
      [h[up], h[i]] = [h[i], h[up]];
      i = up;
    }
  }
  pop(): Pooled | undefined {
    const h = this.items;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0 && last) {
      h[0] = last;
      for (let i = 0;;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < h.length && h[l].serial < h[m].serial) m = l;
        if (r < h.length && h[r].serial < h[m].serial) m = r;
        if (m === i) break;
        [h[m], h[i]] = [h[i], h[m]];
        i = m;
      }
    }
    return top;
  }
}

const free = new Map<number, FreeList>();
export const poolStats = { allocatedBytes: 0, inUseBytes: 0, buffers: 0 };

export function acquireBuffer(bytes: number): GPUBuffer {
  const size = sizeClass(bytes);
  const list = free.get(size);
  poolStats.inUseBytes += size;
  const reused = list?.pop();
  if (reused) return reused.buffer;
  const { device, limits } = gpu();
  if (size > limits.maxStorageBufferBindingSize) {
    poolStats.inUseBytes -= size;
    throw new RangeError(
      `buffer of ${bytes} bytes exceeds this device's storage binding limit (${limits.maxStorageBufferBindingSize})`,
    );
  }
  poolStats.allocatedBytes += size;
  poolStats.buffers++;
  const buffer = device.createBuffer({ size, usage: USAGE });
  serials.set(buffer, nextSerial++);
  return buffer;
}

export function releaseBuffer(buffer: GPUBuffer): void {
  const size = buffer.size;
  poolStats.inUseBytes -= size;
  let list = free.get(size);
  if (!list) free.set(size, list = new FreeList());
  list.push({ serial: serials.get(buffer) ?? nextSerial++, buffer });
}

/** Destroys every pooled buffer that is not in use (e.g. between benchmark sizes). */
export function trimPool(): void {
  for (const list of free.values()) {
    for (const { buffer } of list.items) {
      poolStats.allocatedBytes -= buffer.size;
      poolStats.buffers--;
      buffer.destroy();
    }
  }
  free.clear();
}
