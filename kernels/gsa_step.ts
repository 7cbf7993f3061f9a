// Generation's one-token call of the shared attention block (GSA, DESIGN §4) in three kernels
// around the cached attention, without a backward. Over rows of one position each, width W = 2d,
// H heads of Dh, SwiGLU hidden F = 4d:
//
//   gsa_in:  ẑ = RMSNorm([h; x0])·w_in;  q, k, v = W_qkv·ẑ;  q, k turned by RoPE at `rpos`;
//            q out, k and v written into the KV caches at row `pos`.
//            (The table's row `rpos` is the sequence position; `pos` the cache's length.)
//   gsa_mid: a' = RMSNorm(W_o·a)·w_mlp (a: the attention's output);  m = silu(W_g·a') ⊙ (W_u·a').
//   gsa_out: u = h + W_f·m, W_f = gsa_out_j·W_down folded (once per generation, per call site).
//
// Tiles of TILE output columns per workgroup as in mamba_step.ts; gsa_mid's workgroups each redo
// the row's W_o (W·d, small next to their share of W_g and W_u) so that no fourth kernel is
// needed. The projections come transposed ([in, out]) in packed buffers (lib/tensor/gsa_step.ts).
import { STEP_WG, stepPrelude } from "./mamba_step.ts";

/** The widest d these kernels hold (W = 2d and F = 4d in the workgroup arrays). */
export const GSA_STEP_MAX_D = 512;

export function gsaStepWgsl(): string {
  return `struct P {
  R: u32, d: u32, H: u32, dh: u32, F: u32, pos: u32, cap: u32, eps: f32, rpos: u32,
  o_nin: u32, o_qkv: u32, o_o: u32, o_nmlp: u32, o_gu: u32,
}
@group(0) @binding(0) var<uniform> p: P;
${stepPrelude(4 * GSA_STEP_MAX_D, GSA_STEP_MAX_D)}
var<workgroup> res: array<f32, TILE>;

@group(0) @binding(1) var<storage, read> h_in: array<f32>;
@group(0) @binding(2) var<storage, read> x0: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<f32>;
@group(0) @binding(4) var<storage, read> rope: array<vec2<f32>>;
@group(0) @binding(5) var<storage, read_write> q_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> k_cache: array<f32>;
@group(0) @binding(7) var<storage, read_write> v_cache: array<f32>;

@compute @workgroup_size(${STEP_WG})
fn gsa_in(@builtin(local_invocation_id) l: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let lid = l.x;
  let row = wid.y;
  let W = 2u * p.d;
  var ss = 0.0;
  for (var i = lid; i < W; i += WG) {
    let v = select(x0[row * p.d + i - p.d], h_in[row * p.d + i], i < p.d);
    vin[i] = v;
    ss += v * v;
  }
  let rstd = inverseSqrt(wg_sum(ss, lid) / f32(W) + p.eps);
  for (var i = lid; i < W; i += WG) { vin[i] = vin[i] * rstd * w[p.o_nin + i]; }
  workgroupBarrier();
  let cols = 3u * W;
  let c = lid % TILE;
  let j = wid.x * TILE + c;
  var acc = 0.0;
  if (j < cols) {
    for (var i = lid / TILE; i < W; i += SLICES) { acc += w[p.o_qkv + i * cols + j] * vin[i]; }
  }
  red[lid] = acc;
  workgroupBarrier();
  if (lid < TILE) { res[c] = tile_sum(c); }
  workgroupBarrier();
  if (lid >= TILE || j >= cols) { return; }
  let part = j / W;
  let col = j % W;
  var v = res[c];
  if (part < 2u) {
    // Pairs (2i, 2i+1) of each head turn by the table's angle for this position.
    let cs = rope[p.rpos * (p.dh / 2u) + (col % p.dh) / 2u];
    let other = res[c ^ 1u];
    v = select(other * cs.y + v * cs.x, v * cs.x - other * cs.y, (col & 1u) == 0u);
  }
  if (part == 0u) {
    q_out[row * W + col] = v;
  } else if (part == 1u) {
    k_cache[(row * p.cap + p.pos) * W + col] = v;
  } else {
    v_cache[(row * p.cap + p.pos) * W + col] = v;
  }
}

@group(0) @binding(1) var<storage, read> att: array<f32>;
@group(0) @binding(2) var<storage, read> w_mid: array<f32>;
@group(0) @binding(3) var<storage, read_write> m_out: array<f32>;

@compute @workgroup_size(${STEP_WG})
fn gsa_mid(@builtin(local_invocation_id) l: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let lid = l.x;
  let row = wid.y;
  let W = 2u * p.d;
  for (var i = lid; i < W; i += WG) { vin[i] = att[row * W + i]; }
  workgroupBarrier();
  let c = lid % TILE;
  // W_o: all d outputs, a tile at a time.
  for (var c0 = 0u; c0 < p.d; c0 += TILE) {
    let j = c0 + c;
    var acc = 0.0;
    if (j < p.d) {
      for (var i = lid / TILE; i < W; i += SLICES) { acc += w_mid[p.o_o + i * p.d + j] * vin[i]; }
    }
    red[lid] = acc;
    workgroupBarrier();
    if (lid < TILE && j < p.d) { vout[j] = tile_sum(c); }
    workgroupBarrier();
  }
  var ss = 0.0;
  for (var i = lid; i < p.d; i += WG) { ss += vout[i] * vout[i]; }
  let rstd = inverseSqrt(wg_sum(ss, lid) / f32(p.d) + p.eps);
  for (var i = lid; i < p.d; i += WG) { vout[i] = vout[i] * rstd * w_mid[p.o_nmlp + i]; }
  workgroupBarrier();
  let j = wid.x * TILE + c;
  let cols = 2u * p.F;
  var g = 0.0;
  var u = 0.0;
  if (j < p.F) {
    for (var i = lid / TILE; i < p.d; i += SLICES) {
      g += w_mid[p.o_gu + i * cols + j] * vout[i];
      u += w_mid[p.o_gu + i * cols + p.F + j] * vout[i];
    }
  }
  red[lid] = g;
  workgroupBarrier();
  let gate = tile_sum(c);
  workgroupBarrier();
  red[lid] = u;
  workgroupBarrier();
  if (lid < TILE && j < p.F) { m_out[row * p.F + j] = gate * sigmoid_(gate) * tile_sum(c); }
}

@group(0) @binding(1) var<storage, read> m_in: array<f32>;
@group(0) @binding(2) var<storage, read> w_f: array<f32>;
@group(0) @binding(3) var<storage, read> h_res: array<f32>;
@group(0) @binding(4) var<storage, read_write> u_out: array<f32>;

@compute @workgroup_size(${STEP_WG})
fn gsa_out(@builtin(local_invocation_id) l: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let lid = l.x;
  let row = wid.y;
  for (var i = lid; i < p.F; i += WG) { vin[i] = m_in[row * p.F + i]; }
  workgroupBarrier();
  let c = lid % TILE;
  let j = wid.x * TILE + c;
  var acc = 0.0;
  if (j < p.d) {
    for (var i = lid / TILE; i < p.F; i += SLICES) { acc += w_f[i * p.d + j] * vin[i]; }
  }
  red[lid] = acc;
  workgroupBarrier();
  if (lid < TILE && j < p.d) { u_out[row * p.d + j] = h_res[row * p.d + j] + tile_sum(c); }
}
`;
}
