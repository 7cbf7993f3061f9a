// Global gradient-norm clipping stays on the GPU: per-tensor partial sums of squares (optim.ts),
// this pass that turns them into (norm, scale), and AdamW (optim.ts) reading that scale, so a
// step never waits on a readback.

var<workgroup> acc: array<f32, 256>;

struct Finish { count: u32, max_norm: f32 }
@group(0) @binding(0) var<uniform> fin: Finish;
@group(0) @binding(1) var<storage, read> parts: array<f32>;
@group(0) @binding(2) var<storage, read_write> stats: array<f32>;

// stats = [global norm, clip scale = min(1, max_norm / (norm + 1e-6))] (max_norm ≤ 0: no clipping).
@compute @workgroup_size(256)
fn clip_scale(@builtin(local_invocation_id) lid: vec3<u32>) {
  var s = 0.0;
  for (var i = lid.x; i < fin.count; i += 256u) { s += parts[i]; }
  acc[lid.x] = s;
  workgroupBarrier();
  for (var k = 128u; k > 0u; k >>= 1u) {
    if (lid.x < k) { acc[lid.x] += acc[lid.x + k]; }
    workgroupBarrier();
  }
  if (lid.x == 0u) {
    let norm = sqrt(acc[0]);
    stats[0] = norm;
    stats[1] = select(1.0, min(1.0, fin.max_norm / (norm + 1e-6)), fin.max_norm > 0.0);
  }
}
