// Collectives over GPU tensors: WebGPU buffers are not memory an MPI (or NCCL) library can reach,
// so tensors are staged through mapped host buffers in buckets: one submission copies every
// bucket into its staging buffer, then each bucket is mapped, exchanged and written back while
// the later buckets' maps complete.
import { flush, gpu, upload } from "../gpu/mod.ts";
import type { Tensor } from "../tensor/tensor.ts";
import type { Collective } from "./collective.ts";

/** Bytes of one staging bucket (a tensor larger than this gets a bucket of its own). */
export const BUCKET_BYTES = 64 << 20;

export interface ExchangeStats {
  buckets: number;
  bytes: number;
}

/** Consecutive runs of tensors of at most `limit` bytes each (a bigger tensor alone). */
export function buckets(sizes: readonly number[], limit: number): number[][] {
  const out: number[][] = [];
  let cur: number[] = [], bytes = 0;
  sizes.forEach((size, i) => {
    if (cur.length > 0 && bytes + size * 4 > limit) out.push(cur), cur = [], bytes = 0;
    cur.push(i);
    bytes += size * 4;
  });
  if (cur.length > 0) out.push(cur);
  return out;
}

async function exchange(
  tensors: readonly Tensor[],
  op: (data: Float32Array) => Promise<void>,
  bucketBytes: number,
): Promise<ExchangeStats> {
  for (const t of tensors) {
    if (t.dtype !== "f32") throw new TypeError(`collective: ${t} is not f32`);
  }
  flush();
  const { device } = gpu();
  const limit = Math.max(4, Math.min(bucketBytes, device.limits.maxBufferSize));
  const groups = buckets(tensors.map((t) => t.size), limit).filter((g) =>
    g.some((i) => tensors[i].size > 0)
  );
  const enc = device.createCommandEncoder();
  const staged = groups.map((group) => {
    const bytes = group.reduce((a, i) => a + tensors[i].size * 4, 0);
    const buffer = device.createBuffer({
      size: bytes,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    let offset = 0;
    for (const i of group) {
      const n = tensors[i].size * 4;
      if (n > 0) enc.copyBufferToBuffer(tensors[i].buffer, 0, buffer, offset, n);
      offset += n;
    }
    return { group, buffer, bytes };
  });
  device.queue.submit([enc.finish()]);
  const maps = staged.map(({ buffer }) => buffer.mapAsync(GPUMapMode.READ));
  let total = 0;
  try {
    for (let k = 0; k < staged.length; k++) {
      const { group, buffer, bytes } = staged[k];
      await maps[k];
      const data = new Float32Array(buffer.getMappedRange().slice(0));
      buffer.unmap();
      await op(data);
      let offset = 0;
      for (const i of group) {
        const n = tensors[i].size;
        if (n > 0) upload(tensors[i].buffer, data.subarray(offset, offset + n));
        offset += n;
      }
      total += bytes;
    }
  } finally {
    await Promise.allSettled(maps);
    for (const { buffer } of staged) buffer.destroy();
  }
  return { buckets: staged.length, bytes: total };
}

/** Sums each tensor over the ranks, in place (nothing happens in a world of one). */
export function allReduceTensors(
  tensors: readonly Tensor[],
  comm: Collective,
  bucketBytes = BUCKET_BYTES,
): Promise<ExchangeStats> {
  if (comm.size === 1) return Promise.resolve({ buckets: 0, bytes: 0 });
  return exchange(tensors, (d) => comm.allReduceSum(d), bucketBytes);
}

/** Gives every rank `root`'s values of the tensors (nothing happens in a world of one). */
export function broadcastTensors(
  tensors: readonly Tensor[],
  comm: Collective,
  root = 0,
  bucketBytes = BUCKET_BYTES,
): Promise<ExchangeStats> {
  if (comm.size === 1) return Promise.resolve({ buckets: 0, bytes: 0 });
  return exchange(tensors, (d) => comm.broadcast(d, root), bucketBytes);
}
