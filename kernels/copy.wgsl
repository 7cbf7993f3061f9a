// Data movement on 32-bit words (f32, i32, u32; f16 tensors move as pairs when aligned):
// fill, contiguous copy, accumulate, and block copies for slice/concat over a
// [outer, n, inner] view.

struct P { n: u32, value: u32, outer: u32, inner: u32, n_src: u32, n_dst: u32, src_off: u32,
  dst_off: u32, count: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

fn index(gid: vec3<u32>, nw: vec3<u32>) -> u32 { return gid.x + gid.y * nw.x * 256u; }

@compute @workgroup_size(256)
fn copy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let i = index(gid, nw);
  if (i < p.n) { dst[i] = src[i]; }
}

// dst[o, dst_off + j, i] = src[o, src_off + j, i] for j < count
@compute @workgroup_size(256)
fn block(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let t = index(gid, nw);
  if (t >= p.outer * p.count * p.inner) { return; }
  let i = t % p.inner;
  let j = (t / p.inner) % p.count;
  let o = t / (p.inner * p.count);
  dst[(o * p.n_dst + p.dst_off + j) * p.inner + i] = src[(o * p.n_src + p.src_off + j) * p.inner + i];
}
