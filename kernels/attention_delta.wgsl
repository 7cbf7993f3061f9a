// The row statistic of flash attention's backward (kernels/attention.ts): delta = rowsum(dO ∘ O).

struct P { heads: u32, dh4: u32, sq: u32, rows: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn index(gid: vec3<u32>, nw: vec3<u32>) -> u32 { return gid.x + gid.y * nw.x * 256u; }

// One thread per (batch, query, head) row of [B, Sq, H, Dh] (p.rows of them); writes
// delta[(b·H + h)·Sq + q], the lse layout.
@compute @workgroup_size(256)
fn delta(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let r = index(gid, nw);
  if (r >= p.rows) { return; }
  var acc = vec4<f32>(0.0);
  for (var d = 0u; d < p.dh4; d++) { acc = fma(a[r * p.dh4 + d], b[r * p.dh4 + d], acc); }
  let h = r % p.heads;
  let q = (r / p.heads) % p.sq;
  let bt = r / (p.heads * p.sq);
  out[(bt * p.heads + h) * p.sq + q] = (acc.x + acc.y) + (acc.z + acc.w);
}
