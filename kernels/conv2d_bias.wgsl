// A convolution's bias gradient db[c] = Σ_{b, p} gy[b, c, p] (lib/tensor/conv2d_implicit.ts's
// convBiasGrad) in two dispatches: `tp` threads per (image, channel) plane sum it into
// partial[b, c] (256 / tp planes a workgroup, tp a power of two sized to the plane), then a
// thread per channel sums its B partials in image order. Every plane is a contiguous run of P
// floats, so loads are coalesced, and B·C planes spread over the GPU instead of C workgroups
// each walking every image (kernels/conv2d.wgsl's bias_grad). Each entry point declares exactly
// the bindings it uses, from 1 up.

struct P { B: u32, C: u32, P: u32, tp: u32 }
@group(0) @binding(0) var<uniform> p: P;

const WG = 256u;
var<workgroup> red: array<f32, 256>;

/** The sum of v over each run of p.tp threads (a plane's), returned to all of them. */
fn segment_sum(lid: u32, v: f32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  let j = lid % p.tp;
  for (var s = p.tp / 2u; s > 0u; s >>= 1u) {
    if (j < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  return red[lid - j];
}

/** The plane of this thread (possibly past the last: its sum is 0 and not written). */
fn plane_of(lid: u32, wid: vec3<u32>, nw: vec3<u32>) -> u32 {
  return (wid.x + wid.y * nw.x) * (WG / p.tp) + lid / p.tp;
}

@group(0) @binding(1) var<storage, read> gy: array<f32>;
@group(0) @binding(2) var<storage, read_write> partial: array<f32>;

// partial[b·C + c] = Σ_p gy[(b·C + c)·P + p].
@compute @workgroup_size(256)
fn plane_sums(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nw: vec3<u32>) {
  let bc = plane_of(lid.x, wid, nw);
  var s = 0.0;
  if (bc < p.B * p.C) {
    let base = bc * p.P;
    for (var i = lid.x % p.tp; i < p.P; i += p.tp) { s += gy[base + i]; }
  }
  let total = segment_sum(lid.x, s);
  if (bc < p.B * p.C && lid.x % p.tp == 0u) { partial[bc] = total; }
}

@group(0) @binding(1) var<storage, read> gy4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> partial4: array<f32>;

// plane_sums for P % 4 == 0: vec4 loads (a quarter of the load instructions).
@compute @workgroup_size(256)
fn plane_sums4(@builtin(local_invocation_id) lid: vec3<u32>,
               @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let bc = plane_of(lid.x, wid, nw);
  var s = vec4<f32>(0.0);
  if (bc < p.B * p.C) {
    let n = p.P / 4u;
    let base = bc * n;
    for (var i = lid.x % p.tp; i < n; i += p.tp) { s += gy4[base + i]; }
  }
  let total = segment_sum(lid.x, (s.x + s.y) + (s.z + s.w));
  if (bc < p.B * p.C && lid.x % p.tp == 0u) { partial4[bc] = total; }
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
