// Generation's one-token Mamba block (DESIGN §4) in two dispatches, without a backward: a pass
// that carries one position per row through a block whose conv and SSM states are carried.
//
//   step_in:  x̂ = RMSNorm(u)·w_norm;  xz = W_in·x̂;  xs' = conv(state, xs) + b;  u' = silu(xs')
//             (the conv's next state is the last d_conv-1 inputs); z = xz's second half.
//   step_out: [δ_r; B; C] = W_x·u';  Δ = softplus(W_dt·δ_r + b_dt);  h = exp(Δ·A)·h₀ + Δ·B·u';
//             y = C·h;  out = h_res + W_out·((y + u'·D)·silu(z)).
//
// Each workgroup computes TILE output columns of one row: step_in's of W_in's 2·d_inner, step_out's
// of W_out's d. step_out's workgroups each redo the row's x_proj and scan (d_inner·(r + 2n) and
// d_inner·n, small next to W_out) so that no third dispatch is needed; the first tile writes the
// next SSM state. The weights come packed in one buffer (lib/tensor/mamba_step.ts lays it out),
// the three projections transposed so that a tile's threads read consecutive columns.
import { PRELUDE } from "./elementwise.ts";

/** Threads per workgroup; output columns per workgroup (WG / TILE threads share a column). */
export const STEP_WG = 256;
export const STEP_TILE = 64;
/** The widest d and d_inner the workgroup arrays hold. */
export const STEP_MAX_WIDTH = 1024;

/**
 * What the one-token kernels share (mamba_step, gsa_step): the sizes, workgroup arrays `vin`
 * (MAXIN floats) and `vout` (MAXOUT), and the reductions over a workgroup and over a tile's slices.
 */
export function stepPrelude(maxIn: number, maxOut: number): string {
  return `${PRELUDE}
const WG = ${STEP_WG}u;
const TILE = ${STEP_TILE}u;
const SLICES = ${STEP_WG / STEP_TILE}u;

var<workgroup> vin: array<f32, ${maxIn}>;
var<workgroup> vout: array<f32, ${maxOut}>;
var<workgroup> red: array<f32, WG>;

fn wg_sum(v: f32, lid: u32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  let total = red[0];
  workgroupBarrier();
  return total;
}

// The sum of the SLICES partial sums of column c, left in red by a tile's threads.
fn tile_sum(c: u32) -> f32 {
  var t = 0.0;
  for (var s = 0u; s < SLICES; s++) { t += red[s * TILE + c]; }
  return t;
}
`;
}

export function mambaStepWgsl(): string {
  return `struct P {
  R: u32, d: u32, di: u32, K: u32, n: u32, r: u32, eps: f32,
  o_norm: u32, o_in: u32, o_cw: u32, o_cb: u32, o_x: u32, o_dtw: u32, o_dtb: u32, o_a: u32,
  o_d: u32, o_out: u32,
}
@group(0) @binding(0) var<uniform> p: P;
${stepPrelude(STEP_MAX_WIDTH, STEP_MAX_WIDTH)}
var<workgroup> dbl: array<f32, WG>;

@group(0) @binding(1) var<storage, read> u_in: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> conv_in: array<f32>;
@group(0) @binding(4) var<storage, read_write> u_out: array<f32>;
@group(0) @binding(5) var<storage, read_write> z_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> conv_out: array<f32>;

@compute @workgroup_size(${STEP_WG})
fn step_in(@builtin(local_invocation_id) l: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let lid = l.x;
  let row = wid.y;
  let base = row * p.d;
  var ss = 0.0;
  for (var i = lid; i < p.d; i += WG) { let v = u_in[base + i]; ss += v * v; }
  let rstd = inverseSqrt(wg_sum(ss, lid) / f32(p.d) + p.eps);
  for (var i = lid; i < p.d; i += WG) { vin[i] = u_in[base + i] * rstd * w[p.o_norm + i]; }
  workgroupBarrier();
  let cols = 2u * p.di;
  let c = lid % TILE;
  let j = wid.x * TILE + c;
  var acc = 0.0;
  if (j < cols) {
    for (var i = lid / TILE; i < p.d; i += SLICES) { acc += w[p.o_in + i * cols + j] * vin[i]; }
  }
  red[lid] = acc;
  workgroupBarrier();
  if (lid >= TILE || j >= cols) { return; }
  let v = tile_sum(c);
  if (j >= p.di) {
    z_out[row * p.di + j - p.di] = v;
    return;
  }
  let km1 = p.K - 1u;
  var s = w[p.o_cb + j] + w[p.o_cw + j * p.K + km1] * v;
  for (var k = 0u; k < km1; k++) {
    let prev = conv_in[(row * km1 + k) * p.di + j];
    s += w[p.o_cw + j * p.K + k] * prev;
    if (k > 0u) { conv_out[(row * km1 + k - 1u) * p.di + j] = prev; }
  }
  conv_out[(row * km1 + km1 - 1u) * p.di + j] = v;
  u_out[row * p.di + j] = s * sigmoid_(s);
}

@group(0) @binding(1) var<storage, read> us: array<f32>;
@group(0) @binding(3) var<storage, read> zs: array<f32>;
@group(0) @binding(4) var<storage, read> h_res: array<f32>;
@group(0) @binding(5) var<storage, read> ssm_in: array<f32>;
@group(0) @binding(6) var<storage, read_write> h_out: array<f32>;
@group(0) @binding(7) var<storage, read_write> ssm_out: array<f32>;

@compute @workgroup_size(${STEP_WG})
fn step_out(@builtin(local_invocation_id) l: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let lid = l.x;
  let row = wid.y;
  for (var c = lid; c < p.di; c += WG) { vin[c] = us[row * p.di + c]; }
  workgroupBarrier();
  // x_proj: G threads per output, each a strided share of d_inner.
  let np = p.r + 2u * p.n;
  let groups = WG / np;
  let o = lid % np;
  let g = lid / np;
  var acc = 0.0;
  if (g < groups) {
    for (var c = g; c < p.di; c += groups) { acc += w[p.o_x + c * np + o] * vin[c]; }
  }
  red[lid] = acc;
  workgroupBarrier();
  if (lid < np) {
    var t = 0.0;
    for (var q = 0u; q < groups; q++) { t += red[q * np + lid]; }
    dbl[lid] = t;
  }
  workgroupBarrier();
  for (var c = lid; c < p.di; c += WG) {
    var pre = w[p.o_dtb + c];
    for (var q = 0u; q < p.r; q++) { pre += w[p.o_dtw + c * p.r + q] * dbl[q]; }
    let dt = softplus_(pre);
    let uc = vin[c];
    var y = 0.0;
    for (var s = 0u; s < p.n; s++) {
      let k = (row * p.di + c) * p.n + s;
      let h = exp(dt * w[p.o_a + c * p.n + s]) * ssm_in[k] + dt * dbl[p.r + s] * uc;
      y += dbl[p.r + p.n + s] * h;
      if (wid.x == 0u) { ssm_out[k] = h; }
    }
    let z = zs[row * p.di + c];
    vout[c] = (y + uc * w[p.o_d + c]) * (z * sigmoid_(z));
  }
  workgroupBarrier();
  let c = lid % TILE;
  let j = wid.x * TILE + c;
  var o_acc = 0.0;
  if (j < p.d) {
    for (var i = lid / TILE; i < p.di; i += SLICES) { o_acc += w[p.o_out + i * p.d + j] * vout[i]; }
  }
  red[lid] = o_acc;
  workgroupBarrier();
  if (lid < TILE && j < p.d) { h_out[row * p.d + j] = h_res[row * p.d + j] + tile_sum(c); }
}
`;
}
