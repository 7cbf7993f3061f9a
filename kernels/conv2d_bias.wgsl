// A convolution's bias gradient db[c] = Σ_{b, p} gy[b, c, p] (lib/tensor/conv2d_implicit.ts's
// convBiasGrad) in two dispatches: a workgroup per (image, channel) plane sums it into
// partial[b, c], then a thread per channel sums its B partials in image order. Every plane is a
// contiguous run of P floats, so a workgroup's loads are coalesced, and there are B·C
// workgroups instead of C (kernels/conv2d.wgsl's bias_grad walks every image in one workgroup
// per channel). Each entry point declares exactly the bindings it uses, from 1 up.

struct P { B: u32, C: u32, P: u32 }
@group(0) @binding(0) var<uniform> p: P;

const WG = 256u;
var<workgroup> red: array<f32, 256>;

fn reduce(lid: u32, v: f32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  return red[0];
}

@group(0) @binding(1) var<storage, read> gy: array<f32>;
@group(0) @binding(2) var<storage, read_write> partial: array<f32>;

// partial[b·C + c] = Σ_p gy[(b·C + c)·P + p]; workgroup id = b·C + c.
@compute @workgroup_size(256)
fn plane_sums(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nw: vec3<u32>) {
  let bc = wid.x + wid.y * nw.x;
  if (bc >= p.B * p.C) { return; }
  let base = bc * p.P;
  var s = 0.0;
  for (var i = lid.x; i < p.P; i += WG) { s += gy[base + i]; }
  let total = reduce(lid.x, s);
  if (lid.x == 0u) { partial[bc] = total; }
}

@group(0) @binding(1) var<storage, read> gy4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> partial4: array<f32>;

// plane_sums for P % 4 == 0: vec4 loads (a quarter of the load instructions).
@compute @workgroup_size(256)
fn plane_sums4(@builtin(local_invocation_id) lid: vec3<u32>,
               @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let bc = wid.x + wid.y * nw.x;
  if (bc >= p.B * p.C) { return; }
  let n = p.P / 4u;
  let base = bc * n;
  var s = vec4<f32>(0.0);
  for (var i = lid.x; i < n; i += WG) { s += gy4[base + i]; }
  let total = reduce(lid.x, (s.x + s.y) + (s.z + s.w));
  if (lid.x == 0u) { partial4[bc] = total; }
}

@group(0) @binding(1) var<storage, read> tpartial: array<f32>;
@group(0) @binding(2) var<storage, read_write> db: array<f32>;

// db[c] = Σ_b partial[b·C + c].
@compute @workgroup_size(64)
fn channel_sums(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  if (c >= p.C) { return; }
  var s = 0.0;
  for (var b = 0u; b < p.B; b++) { s += tpartial[b * p.C + c]; }
  db[c] = s;
}
