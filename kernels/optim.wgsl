// Optimizer kernels. Global gradient-norm clipping stays on the GPU: per-tensor partial sums of
// squares, one pass that turns them into (norm, scale), and AdamW reading that scale, so a step
// never waits on a readback.

struct SumSq { n: u32, out_offset: u32 }
@group(0) @binding(0) var<uniform> sq: SumSq;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> partials: array<f32>;

var<workgroup> acc: array<f32, 256>;

// Workgroup w sums the squares of grad[w*256 + lid], stepping by the whole grid.
@compute @workgroup_size(256)
fn sum_squares(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nw: vec3<u32>) {
  var s = 0.0;
  for (var i = wid.x * 256u + lid.x; i < sq.n; i += nw.x * 256u) {
    let g = grad[i];
    s += g * g;
  }
  acc[lid.x] = s;
  workgroupBarrier();
  for (var k = 128u; k > 0u; k >>= 1u) {
    if (lid.x < k) { acc[lid.x] += acc[lid.x + k]; }
    workgroupBarrier();
  }
  if (lid.x == 0u) { partials[sq.out_offset + wid.x] = acc[0]; }
}

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

// AdamW with decoupled weight decay (Loshchilov & Hutter), as torch.optim.AdamW:
//   p ← p·(1 − lr·wd);  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²
//   p ← p − lr/bc1 · m / (√v / √bc2 + eps),  with g already multiplied by the clip scale.
struct Adam { n: u32, lr: f32, beta1: f32, beta2: f32, eps: f32, wd: f32, bc1: f32, bc2: f32 }
@group(0) @binding(0) var<uniform> h: Adam;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> g_in: array<f32>;
@group(0) @binding(3) var<storage, read_write> m1: array<f32>;
@group(0) @binding(4) var<storage, read_write> m2: array<f32>;
@group(0) @binding(5) var<storage, read> clip: array<f32>;

@compute @workgroup_size(256)
fn adamw(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let i = gid.x + gid.y * nw.x * 256u;
  if (i >= h.n) { return; }
  let g = g_in[i] * clip[1];
  let m = h.beta1 * m1[i] + (1.0 - h.beta1) * g;
  let v = h.beta2 * m2[i] + (1.0 - h.beta2) * g * g;
  m1[i] = m;
  m2[i] = v;
  let p = param[i] * (1.0 - h.lr * h.wd);
  param[i] = p - (h.lr / h.bc1) * m / (sqrt(v) / sqrt(h.bc2) + h.eps);
}
