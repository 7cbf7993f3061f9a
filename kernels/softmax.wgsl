// Softmax and log-softmax over the last dim of a [rows, d] view, forward and backward; one
// workgroup per row, reductions in workgroup memory (no subgroups, so llvmpipe runs it).
//   softmax:     y = exp(x - m) / Σ exp(x - m),  dx = y·(dy - Σ dy·y)
//   log-softmax: y = x - m - log Σ exp(x - m),   dx = dy - exp(y)·Σ dy
// m being the row's max, so exp never overflows.
//
// Each entry point declares its own bindings, numbered from 1 in dispatch order; two variables may
// share a binding because no entry point uses both.

struct P { rows: u32, d: u32, log_space: u32 }
@group(0) @binding(0) var<uniform> p: P;

// forward
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
// backward: dy (1), dx (2), and the forward's output
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;
@group(0) @binding(3) var<storage, read> y_saved: array<f32>;

const WG = 256u;
var<workgroup> scratch: array<f32, 256>;

// Reduces over the workgroup (max when `is_max`, else sum); every invocation gets the result.
// Call from uniform control flow.
fn workgroup_reduce(v: f32, lid: u32, is_max: bool) -> f32 {
  workgroupBarrier(); // the previous call's readers of scratch[0] are done
  scratch[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      let other = scratch[lid + s];
      scratch[lid] = select(scratch[lid] + other, max(scratch[lid], other), is_max);
    }
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
  var m = -3.4028235e38;
  for (var j = lid.x; j < p.d; j += WG) { m = max(m, x[base + j]); }
  m = workgroup_reduce(m, lid.x, true);
  var s = 0.0;
  for (var j = lid.x; j < p.d; j += WG) { s += exp(x[base + j] - m); }
  s = workgroup_reduce(s, lid.x, false);
  let log_s = log(s);
  for (var j = lid.x; j < p.d; j += WG) {
    let z = x[base + j] - m;
    y[base + j] = select(exp(z) / s, z - log_s, p.log_space == 1u);
  }
}

@compute @workgroup_size(256)
fn backward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nw: vec3<u32>) {
  let row = wid.x + wid.y * nw.x;
  if (row >= p.rows) { return; }
  let base = row * p.d;
  let log_space = p.log_space == 1u;
  var s = 0.0;
  for (var j = lid.x; j < p.d; j += WG) {
    s += select(dy[base + j] * y_saved[base + j], dy[base + j], log_space);
  }
  s = workgroup_reduce(s, lid.x, false);
  for (var j = lid.x; j < p.d; j += WG) {
    let yj = y_saved[base + j];
    let g = dy[base + j];
    dx[base + j] = select(yj * (g - s), g - exp(yj) * s, log_space);
  }
}
