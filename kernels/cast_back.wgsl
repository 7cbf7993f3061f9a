enable f16;
struct P { n: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> src16: array<f16>;
@group(0) @binding(2) var<storage, read_write> dst32: array<f32>;

@compute @workgroup_size(256)
fn to_f32(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let i = gid.x + gid.y * nw.x * 256u;
  if (i < p.n) { dst32[i] = f32(src16[i]); }
}
