// Causal depthwise conv1d over [B, L, D] (Mamba's conv1d: kernel K, padding K-1, truncated to L):
//   y[b,t,d] = bias[d] + Σ_k w[d,k] · x[b, t-(K-1)+k, d]
// where positions before the chunk come from a carried state [B, K-1, D] (zeros when absent).
// Generation's forward may read x as the first D channels of rows of x_stride (> D), and apply
// silu to y; the backward entries see x_stride = D and act = 0.

struct P { B: u32, L: u32, D: u32, K: u32, has_state: u32, rows_per_part: u32, x_stride: u32, act: u32 }
@group(0) @binding(0) var<uniform> p: P;

fn flat(gid: vec3<u32>, nw: vec3<u32>) -> u32 { return gid.x + gid.y * nw.x * 256u; }

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> state: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

// Inputs at t < 0 come from the carried state, or are 0. Each entry point declares exactly the
// bindings it uses: derived ("auto") layouts hold only those, in binding order.
fn state_row(b: u32, t: i32) -> u32 { return b * (p.K - 1u) + u32(i32(p.K) - 1 + t); }
// As kernels/elementwise.ts's sigmoid_, so that act = 1 gives the silu op's own values.
fn sigmoid_(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }

@group(0) @binding(6) var<storage, read_write> next_out: array<f32>;

// One pass writes both outputs: thread i computes y[i] (i < B·L·D) and the next chunk's state
// element i (i < B·(K-1)·D), the last K-1 inputs of [state; x].
@compute @workgroup_size(256)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let i = flat(gid, nw);
  if (i < p.B * p.L * p.D) {
    let d = i % p.D;
    let t = (i / p.D) % p.L;
    let b = i / (p.D * p.L);
    var s = bias[d];
    for (var k = 0u; k < p.K; k++) {
      let tk = i32(t) - i32(p.K - 1u) + i32(k);
      var v = 0.0;
      if (tk >= 0) { v = x[(b * p.L + u32(tk)) * p.x_stride + d]; }
      else if (p.has_state == 1u) { v = state[state_row(b, tk) * p.D + d]; }
      s += w[d * p.K + k] * v;
    }
    y[i] = select(s, s * sigmoid_(s), p.act == 1u);
  }
  let km1 = p.K - 1u;
  if (i < p.B * km1 * p.D) {
    let d = i % p.D;
    let j = (i / p.D) % km1;
    let b = i / (p.D * km1);
    let tk = i32(p.L) - i32(km1) + i32(j);
    var v = 0.0;
    if (tk >= 0) { v = x[(b * p.L + u32(tk)) * p.x_stride + d]; }
    else if (p.has_state == 1u) { v = state[state_row(b, tk) * p.D + d]; }
    next_out[i] = v;
  }
}

@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> wb: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

// dx[b,t,d] = Σ_k w[d,k] · g[b, t+(K-1)-k, d] over outputs inside the chunk.
@compute @workgroup_size(256)
fn backward_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let i = flat(gid, nw);
  if (i >= p.B * p.L * p.D) { return; }
  let d = i % p.D;
  let t = (i / p.D) % p.L;
  let b = i / (p.D * p.L);
  var s = 0.0;
  for (var k = 0u; k < p.K; k++) {
    let to = t + p.K - 1u - k;
    if (to < p.L) { s += wb[d * p.K + k] * g[(b * p.L + to) * p.D + d]; }
  }
  dx[i] = s;
}

@group(0) @binding(1) var<storage, read> gw: array<f32>;
@group(0) @binding(2) var<storage, read> xw: array<f32>;
@group(0) @binding(3) var<storage, read> sw: array<f32>;
@group(0) @binding(4) var<storage, read_write> dw_part: array<f32>;

// Partial dw (and dbias as tap K) over a slab of rows (b, t): dw_part[part, d, k], k ≤ K.
@compute @workgroup_size(256)
fn backward_weight(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let i = flat(gid, nw);
  let taps = p.K + 1u;
  if (i >= p.D * taps * ((p.B * p.L + p.rows_per_part - 1u) / p.rows_per_part)) { return; }
  let k = i % taps;
  let d = (i / taps) % p.D;
  let part = i / (p.D * taps);
  var s = 0.0;
  let r0 = part * p.rows_per_part;
  let r1 = min(r0 + p.rows_per_part, p.B * p.L);
  for (var r = r0; r < r1; r++) {
    let b = r / p.L;
    let t = r % p.L;
    let gv = gw[r * p.D + d];
    if (k == p.K) {
      s += gv;
    } else {
      let tk = i32(t) - i32(p.K - 1u) + i32(k);
      if (tk >= 0) { s += gv * xw[(b * p.L + u32(tk)) * p.D + d]; }
      else if (p.has_state == 1u) { s += gv * sw[state_row(b, tk) * p.D + d]; }
    }
  }
  dw_part[i] = s;
}
