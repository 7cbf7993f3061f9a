// RMSNorm and LayerNorm over the last dim of a [rows, d] view (DESIGN.md §4: eps 1e-6), forward and
// backward. With x̂ = (x - mean)·rstd (mean = 0 for RMSNorm) and gw = dy·weight:
//   y  = x̂·weight (+ bias)
//   dx = rstd·(gw - mean(gw) - x̂·mean(gw·x̂))       (the mean(gw) term only for LayerNorm)
//   dweight = Σ_rows dy·x̂,  dbias = Σ_rows dy
// add_forward and add_forward_rows (passes without gradients, RMSNorm only): s = x + addend and
// y = RMSNorm(s)·weight in one dispatch, with forward's arithmetic, so y matches add then forward
// bit for bit; no stats.
//
// forward and input_grad give each row one workgroup and reduce in workgroup memory (no subgroups,
// so llvmpipe runs it); on CPU adapters forward_rows and input_grad_rows give it one invocation. The forward saves (mean, rstd) per row for the backward. weight_grad sums
// columns over chunks of rows into partials [chunks, d] that the host sums in a fixed order, so the
// result is deterministic without float atomics.
//
// Each entry point declares its own bindings, numbered from 1 in dispatch order; two variables may
// share a binding because no entry point uses both.

struct P { rows: u32, d: u32, eps: f32, centered: u32, rows_per_chunk: u32, bias_sum: u32 }
@group(0) @binding(0) var<uniform> p: P;

// every entry point
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> stats: array<vec2<f32>>; // (mean, rstd) per row
// forward (RMSNorm binds weight in bias's place: it is never read there)
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;
// input_grad: weight (3), then
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
// weight_grad: dy (4), and
@group(0) @binding(3) var<storage, read_write> partial: array<f32>;
// add_forward: x (1), then the addend, weight (3), the sum and y (5)
@group(0) @binding(2) var<storage, read> addend: array<f32>;
@group(0) @binding(4) var<storage, read_write> sum: array<f32>;

const WG = 256u;
var<workgroup> scratch: array<vec2<f32>, 256>;

// Sums two values over the workgroup; every invocation gets the totals. Call from uniform control.
fn workgroup_sum(v: vec2<f32>, lid: u32) -> vec2<f32> {
  workgroupBarrier(); // the previous call's readers of scratch[0] are done
  scratch[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { scratch[lid] += scratch[lid + s]; }
    workgroupBarrier();
  }
  return scratch[0];
}

@compute @workgroup_size(256)
fn forward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nw: vec3<u32>) {
  let row = wid.x + wid.y * nw.x;
  if (row >= p.rows) { return; }
  let base = row * p.d;
  let n = f32(p.d);
  var mean = 0.0;
  if (p.centered == 1u) {
    var s = 0.0;
    for (var j = lid.x; j < p.d; j += WG) { s += x[base + j]; }
    mean = workgroup_sum(vec2(s, 0.0), lid.x).x / n;
  }
  // Variance from centred values (a second pass over a row the cache holds): no cancellation.
  var ss = 0.0;
  for (var j = lid.x; j < p.d; j += WG) {
    let c = x[base + j] - mean;
    ss += c * c;
  }
  let rstd = inverseSqrt(workgroup_sum(vec2(ss, 0.0), lid.x).x / n + p.eps);
  if (lid.x == 0u) { stats[row] = vec2(mean, rstd); }
  for (var j = lid.x; j < p.d; j += WG) {
    var v = (x[base + j] - mean) * rstd * weight[j];
    if (p.centered == 1u) { v += bias[j]; }
    y[base + j] = v;
  }
}

@compute @workgroup_size(256)
fn input_grad(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nw: vec3<u32>) {
  let row = wid.x + wid.y * nw.x;
  if (row >= p.rows) { return; }
  let base = row * p.d;
  let st = stats[row];
  var acc = vec2(0.0);
  for (var j = lid.x; j < p.d; j += WG) {
    let gw = dy[base + j] * weight[j];
    acc += vec2(gw, gw * (x[base + j] - st.x) * st.y);
  }
  let means = workgroup_sum(acc, lid.x) / f32(p.d);
  let mean_gw = select(0.0, means.x, p.centered == 1u);
  for (var j = lid.x; j < p.d; j += WG) {
    let xhat = (x[base + j] - st.x) * st.y;
    dx[base + j] = st.y * (dy[base + j] * weight[j] - mean_gw - xhat * means.y);
  }
}

// forward_rows and input_grad_rows: the same results with one invocation per row, walking it
// alone (no workgroup memory, no barriers), for CPU adapters, where a workgroup's barriers cost far
// more than a short row's loop. Row r = workgroup · 64 + local id.
const RWG = 64u;

@compute @workgroup_size(64)
fn forward_rows(@builtin(local_invocation_id) lid: vec3<u32>,
                @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let row = (wid.x + wid.y * nw.x) * RWG + lid.x;
  if (row >= p.rows) { return; }
  let base = row * p.d;
  let n = f32(p.d);
  var mean = 0.0;
  if (p.centered == 1u) {
    var s = 0.0;
    for (var j = 0u; j < p.d; j++) { s += x[base + j]; }
    mean = s / n;
  }
  var ss = 0.0;
  for (var j = 0u; j < p.d; j++) {
    let c = x[base + j] - mean;
    ss += c * c;
  }
  let rstd = inverseSqrt(ss / n + p.eps);
  stats[row] = vec2(mean, rstd);
  for (var j = 0u; j < p.d; j++) {
    var v = (x[base + j] - mean) * rstd * weight[j];
    if (p.centered == 1u) { v += bias[j]; }
    y[base + j] = v;
  }
}

@compute @workgroup_size(64)
fn input_grad_rows(@builtin(local_invocation_id) lid: vec3<u32>,
                   @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let row = (wid.x + wid.y * nw.x) * RWG + lid.x;
  if (row >= p.rows) { return; }
  let base = row * p.d;
  let st = stats[row];
  var acc = vec2(0.0);
  for (var j = 0u; j < p.d; j++) {
    let gw = dy[base + j] * weight[j];
    acc += vec2(gw, gw * (x[base + j] - st.x) * st.y);
  }
  let means = acc / f32(p.d);
  let mean_gw = select(0.0, means.x, p.centered == 1u);
  for (var j = 0u; j < p.d; j++) {
    let xhat = (x[base + j] - st.x) * st.y;
    dx[base + j] = st.y * (dy[base + j] * weight[j] - mean_gw - xhat * means.y);
  }
}

@compute @workgroup_size(256)
fn add_forward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nw: vec3<u32>) {
  let row = wid.x + wid.y * nw.x;
  if (row >= p.rows) { return; }
  let base = row * p.d;
  var ss = 0.0;
  for (var j = lid.x; j < p.d; j += WG) {
    let v = x[base + j] + addend[base + j];
    sum[base + j] = v;
    ss += v * v;
  }
  let rstd = inverseSqrt(workgroup_sum(vec2(ss, 0.0), lid.x).x / f32(p.d) + p.eps);
  for (var j = lid.x; j < p.d; j += WG) {
    y[base + j] = (x[base + j] + addend[base + j]) * rstd * weight[j];
  }
}

@compute @workgroup_size(64)
fn add_forward_rows(@builtin(local_invocation_id) lid: vec3<u32>,
                    @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let row = (wid.x + wid.y * nw.x) * RWG + lid.x;
  if (row >= p.rows) { return; }
  let base = row * p.d;
  var ss = 0.0;
  for (var j = 0u; j < p.d; j++) {
    let v = x[base + j] + addend[base + j];
    sum[base + j] = v;
    ss += v * v;
  }
  let rstd = inverseSqrt(ss / f32(p.d) + p.eps);
  for (var j = 0u; j < p.d; j++) {
    y[base + j] = (x[base + j] + addend[base + j]) * rstd * weight[j];
  }
}

// partial[c, j] = Σ over rows r of chunk c of dy[r, j]·x̂[r, j] (or of dy[r, j] when bias_sum).
// Workgroup w covers columns [256·(w mod blocks), +256) of chunk w / blocks.
@compute @workgroup_size(256)
fn weight_grad(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nw: vec3<u32>) {
  let blocks = (p.d + WG - 1u) / WG;
  let w = wid.x + wid.y * nw.x;
  let chunk = w / blocks;
  let j = (w % blocks) * WG + lid.x;
  let first = chunk * p.rows_per_chunk;
  if (first >= p.rows || j >= p.d) { return; }
  let last = min(first + p.rows_per_chunk, p.rows);
  var acc = 0.0;
  for (var r = first; r < last; r++) {
    let g = dy[r * p.d + j];
    if (p.bias_sum == 1u) {
      acc += g;
    } else {
      let st = stats[r];
      acc += g * (x[r * p.d + j] - st.x) * st.y;
    }
  }
  partial[chunk * p.d + j] = acc;
}
