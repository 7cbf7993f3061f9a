// Vector quantisation (DESIGN §3): nearest code, codebook lookup and its gradient, code usage.
// Vectors z are rows of [N, C] (HW = 0) or the pixels of an NCHW map [B, C, H, W] (HW = H·W,
// N = B·HW); the codebook is [V, C]. Each entry point declares exactly the bindings it uses.

struct P { N: u32, C: u32, V: u32, HW: u32 }
@group(0) @binding(0) var<uniform> p: P;

/** Offset of element (n, c) of a vector set in either layout. */
fn vec_at(n: u32, c: u32) -> u32 {
  if (p.HW == 0u) { return n * p.C + c; }
  return ((n / p.HW) * p.C + c) * p.HW + n % p.HW;
}

// ---------------------------------------------------------------------------------------------
// idx[n] = argmin_v ||z_n − e_v||², ties to the lowest v, without an N×V distance matrix: a
// workgroup takes 64 vectors and walks the codebook in tiles of 64 codes, staging 16 channels
// of both through workgroup memory at a time. Thread (tr, tc) of 16×16 owns vectors tr + 16i and
// codes tc + 16j (i, j < 4): a 4×4 block of squared distances Σ(z − e)², exact differences
// rather than ||z||² − 2z·e + ||e||², which cancels when codes are close. Each thread keeps its
// best code per vector (visiting codes in increasing order, replacing only on a strictly smaller
// distance); the 16 threads of a vector then pick the smallest distance, then the lowest index.

const RB = 64u;
const CB = 64u;
const KC = 16u;
var<workgroup> zs: array<f32, 1024>; // [KC][RB]
var<workgroup> es: array<f32, 1024>; // [KC][CB]
var<workgroup> cand_d: array<f32, 1024>; // [RB][16]
var<workgroup> cand_i: array<u32, 1024>;

@group(0) @binding(1) var<storage, read> z: array<f32>;
@group(0) @binding(2) var<storage, read> codebook: array<f32>;
@group(0) @binding(3) var<storage, read_write> idx: array<i32>;

fn keep_best(a: vec4<f32>, v0: u32, tc: u32, bd: ptr<function, f32>, bi: ptr<function, u32>) {
  for (var j = 0u; j < 4u; j++) {
    let v = v0 + tc + 16u * j;
    if (v < p.V && a[j] < *bd) {
      *bd = a[j];
      *bi = v;
    }
  }
}

@compute @workgroup_size(256)
fn nearest_code(@builtin(local_invocation_id) lid: vec3<u32>,
                @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let row0 = (wid.x + wid.y * nw.x) * RB;
  let tr = lid.x / 16u;
  let tc = lid.x % 16u;
  var bd0 = 3.4028235e38;
  var bd1 = 3.4028235e38;
  var bd2 = 3.4028235e38;
  var bd3 = 3.4028235e38;
  var bi0 = 0u;
  var bi1 = 0u;
  var bi2 = 0u;
  var bi3 = 0u;
  for (var v0 = 0u; v0 < p.V; v0 += CB) {
    var a0 = vec4(0.0);
    var a1 = vec4(0.0);
    var a2 = vec4(0.0);
    var a3 = vec4(0.0);
    for (var c0 = 0u; c0 < p.C; c0 += KC) {
      for (var t = 0u; t < 4u; t++) {
        let e = lid.x + 256u * t;
        let c = c0 + e / RB;
        let r = e % RB;
        var zv = 0.0;
        if (row0 + r < p.N && c < p.C) { zv = z[vec_at(row0 + r, c)]; }
        zs[e] = zv;
        var ev = 0.0;
        if (v0 + r < p.V && c < p.C) { ev = codebook[(v0 + r) * p.C + c]; }
        es[e] = ev;
      }
      workgroupBarrier();
      for (var k = 0u; k < KC; k++) {
        let zr = vec4(zs[k * RB + tr], zs[k * RB + tr + 16u], zs[k * RB + tr + 32u],
                      zs[k * RB + tr + 48u]);
        let ec = vec4(es[k * CB + tc], es[k * CB + tc + 16u], es[k * CB + tc + 32u],
                      es[k * CB + tc + 48u]);
        let d0 = zr.x - ec;
        let d1 = zr.y - ec;
        let d2 = zr.z - ec;
        let d3 = zr.w - ec;
        a0 += d0 * d0;
        a1 += d1 * d1;
        a2 += d2 * d2;
        a3 += d3 * d3;
      }
      workgroupBarrier();
    }
    keep_best(a0, v0, tc, &bd0, &bi0);
    keep_best(a1, v0, tc, &bd1, &bi1);
    keep_best(a2, v0, tc, &bd2, &bi2);
    keep_best(a3, v0, tc, &bd3, &bi3);
  }
  cand_d[tr * 16u + tc] = bd0;
  cand_i[tr * 16u + tc] = bi0;
  cand_d[(tr + 16u) * 16u + tc] = bd1;
  cand_i[(tr + 16u) * 16u + tc] = bi1;
  cand_d[(tr + 32u) * 16u + tc] = bd2;
  cand_i[(tr + 32u) * 16u + tc] = bi2;
  cand_d[(tr + 48u) * 16u + tc] = bd3;
  cand_i[(tr + 48u) * 16u + tc] = bi3;
  workgroupBarrier();
  if (lid.x < RB && row0 + lid.x < p.N) {
    var d = cand_d[lid.x * 16u];
    var best = cand_i[lid.x * 16u];
    for (var j = 1u; j < 16u; j++) {
      let dj = cand_d[lid.x * 16u + j];
      let ij = cand_i[lid.x * 16u + j];
      if (dj < d || (dj == d && ij < best)) {
        d = dj;
        best = ij;
      }
    }
    idx[row0 + lid.x] = i32(best);
  }
}

// ---------------------------------------------------------------------------------------------
// out(n, c) = codebook[idx[n], c] in the vector layout; indices outside [0, V) give zeros.

@group(0) @binding(1) var<storage, read> lcodebook: array<f32>;
@group(0) @binding(2) var<storage, read> lidx: array<i32>;
@group(0) @binding(3) var<storage, read_write> lout: array<f32>;

@compute @workgroup_size(256)
fn lookup(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let i = gid.x + gid.y * nw.x * 256u;
  if (i >= p.N * p.C) { return; }
  var n: u32;
  var c: u32;
  if (p.HW == 0u) {
    n = i / p.C;
    c = i % p.C;
  } else {
    n = (i / (p.C * p.HW)) * p.HW + i % p.HW;
    c = (i / p.HW) % p.C;
  }
  let v = lidx[n];
  var x = 0.0;
  if (v >= 0 && u32(v) < p.V) { x = lcodebook[u32(v) * p.C + c]; }
  lout[i] = x;
}

// ---------------------------------------------------------------------------------------------
// dcodebook[v, c] = Σ_{n: idx[n] = v} g(n, c), deterministic without float atomics: a workgroup
// owns ⌊256/C⌋ codes (a thread per code and channel) and streams all indices through workgroup
// memory in order, so every sum runs in increasing n.

var<workgroup> tile_idx: array<i32, 256>;

@group(0) @binding(1) var<storage, read> bg: array<f32>;
@group(0) @binding(2) var<storage, read> bidx: array<i32>;
@group(0) @binding(3) var<storage, read_write> dcodebook: array<f32>;

@compute @workgroup_size(256)
fn lookup_backward(@builtin(local_invocation_id) lid: vec3<u32>,
                   @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let per = 256u / p.C;
  let code = (wid.x + wid.y * nw.x) * per + lid.x / p.C;
  let c = lid.x % p.C;
  let owns_pair = lid.x < per * p.C && code < p.V;
  var s = 0.0;
  for (var n0 = 0u; n0 < p.N; n0 += 256u) {
    var v = -1;
    if (n0 + lid.x < p.N) { v = bidx[n0 + lid.x]; }
    tile_idx[lid.x] = v;
    workgroupBarrier();
    if (owns_pair) {
      let m = min(256u, p.N - n0);
      for (var k = 0u; k < m; k++) {
        if (tile_idx[k] == i32(code)) { s += bg[vec_at(n0 + k, c)]; }
      }
    }
    workgroupBarrier();
  }
  if (owns_pair) { dcodebook[code * p.C + c] = s; }
}

// ---------------------------------------------------------------------------------------------
// counts[v] = #{n: idx[n] = v}; integer atomics, so the result is exact and order-free.

@group(0) @binding(1) var<storage, read> cidx: array<i32>;
@group(0) @binding(2) var<storage, read_write> counts: array<atomic<u32>>;

@compute @workgroup_size(256)
fn code_usage(@builtin(global_invocation_id) gid: vec3<u32>,
               @builtin(num_workgroups) nw: vec3<u32>) {
  let i = gid.x + gid.y * nw.x * 256u;
  if (i >= p.N) { return; }
  let v = cidx[i];
  if (v >= 0 && u32(v) < p.V) { atomicAdd(&counts[u32(v)], 1u); }
}
