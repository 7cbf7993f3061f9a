// Fused softmax + cross-entropy over logits [n, v] and i32 targets [n], mean over the rows whose
// target is not ignored (DESIGN.md §4's loss), with PyTorch's label smoothing ε:
//   loss_i = (1 - ε)·(lse_i - x_it) + ε·(lse_i - mean_c x_ic),  lse_i = log Σ_c exp(x_ic)
//   dx_ic  = dloss / count · (softmax_ic - (1 - ε)·[c = t_i] - ε / v)   (0 on ignored rows)
// row_losses gives each row one workgroup (max, then Σ exp and Σ x in workgroup memory); mean_loss
// sums the rows in one workgroup in a fixed order, so the loss and the count of counted rows stay on
// the GPU and are deterministic. A target outside [0, v) that is not ignore_index is counted as
// ignored: a shader cannot throw (the host checks targets it holds).
//
// Each entry point declares its own bindings, numbered from 1 in dispatch order; two variables may
// share a binding because no entry point uses both.

struct P { n: u32, v: u32, ignore_index: i32, smoothing: f32 }
@group(0) @binding(0) var<uniform> p: P;

// Per row: log-sum-exp, loss term (0 when ignored), and weight (1 counted, 0 ignored).
struct RowStats { lse: f32, loss: f32, weight: f32 }

// every entry point
@group(0) @binding(1) var<storage, read_write> rows: array<RowStats>;
// row_losses and backward
@group(0) @binding(2) var<storage, read> logits: array<f32>;
@group(0) @binding(3) var<storage, read> targets: array<i32>;
// mean_loss
@group(0) @binding(2) var<storage, read_write> loss: array<f32>;
@group(0) @binding(3) var<storage, read_write> count: array<f32>;
// backward: logits (2), targets (3), then
@group(0) @binding(4) var<storage, read> dloss: array<f32>;
@group(0) @binding(5) var<storage, read> count_saved: array<f32>;
@group(0) @binding(6) var<storage, read_write> dlogits: array<f32>;

const WG = 256u;
var<workgroup> scratch: array<vec2<f32>, 256>;

// Reduces over the workgroup (componentwise max when `is_max`, else sum); every invocation gets the
// result. Call from uniform control flow.
fn workgroup_reduce(v: vec2<f32>, lid: u32, is_max: bool) -> vec2<f32> {
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

fn counted(t: i32) -> bool {
  return t != p.ignore_index && t >= 0 && t < i32(p.v);
}

@compute @workgroup_size(256)
fn row_losses(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nw: vec3<u32>) {
  let row = wid.x + wid.y * nw.x;
  if (row >= p.n) { return; }
  let base = row * p.v;
  var m = -3.4028235e38;
  for (var c = lid.x; c < p.v; c += WG) { m = max(m, logits[base + c]); }
  m = workgroup_reduce(vec2(m, 0.0), lid.x, true).x;
  var acc = vec2(0.0); // (Σ exp(x - m), Σ x)
  for (var c = lid.x; c < p.v; c += WG) {
    let xc = logits[base + c];
    acc += vec2(exp(xc - m), xc);
  }
  let sums = workgroup_reduce(acc, lid.x, false);
  if (lid.x == 0u) {
    let lse = m + log(sums.x);
    let t = targets[row];
    var st = RowStats(lse, 0.0, 0.0);
    if (counted(t)) {
      let nll = lse - logits[base + u32(t)];
      let mean_nll = lse - sums.y / f32(p.v);
      st.loss = (1.0 - p.smoothing) * nll + p.smoothing * mean_nll;
      st.weight = 1.0;
    }
    rows[row] = st;
  }
}

// One workgroup: loss = Σ loss_i / Σ weight_i (0 when nothing is counted), count = Σ weight_i.
@compute @workgroup_size(256)
fn mean_loss(@builtin(local_invocation_id) lid: vec3<u32>) {
  var acc = vec2(0.0);
  for (var i = lid.x; i < p.n; i += WG) { acc += vec2(rows[i].loss, rows[i].weight); }
  let total = workgroup_reduce(acc, lid.x, false);
  if (lid.x == 0u) {
    count[0] = total.y;
    loss[0] = select(0.0, total.x / total.y, total.y > 0.0);
  }
}

@compute @workgroup_size(256)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let e = gid.x + gid.y * nw.x * WG;
  if (e >= p.n * p.v) { return; }
  let i = e / p.v;
  let c = e % p.v;
  let st = rows[i];
  if (st.weight == 0.0) {
    dlogits[e] = 0.0;
    return;
  }
  let prob = exp(logits[e] - st.lse);
  let onehot = select(0.0, 1.0, c == u32(targets[i]));
  let smoothed = (1.0 - p.smoothing) * onehot + p.smoothing / f32(p.v);
  dlogits[e] = dloss[0] / count_saved[0] * (prob - smoothed);
}
