// Token sampling for generation (DESIGN.md §4): one workgroup per row of logits [n, v] draws one id
// with no readback. Per row:
//   g_c = (1 + t)·cond_c − t·uncond_c           (cond alone when guided = 0)
//   temperature 0: the lowest c with the largest g (greedy)
//   w_c = exp((g_c − max g) / temperature)      (the softmax's weights, unnormalised)
//   top-k: keep g_c ≥ the k-th largest g; top-p: keep g_c ≥ the largest τ whose kept mass
//   Σ_{g ≥ τ} w is ≥ p·(mass kept by top-k). Ties at a threshold are all kept, so a kept set can
//   exceed k, and top-p's set always lies inside top-k's.
//   draw: the first kept c, in index order, whose cumulative weight exceeds u·(total kept weight),
//   u from a counter-based hash of (seed, stream, row) (sample.ts's sampleUniform is the same).
// Thresholds are exact: a 4-way search over the order-preserving u32 keys of g (threshold()).
// Rows are re-read from global memory on every pass (any v works; a row is in cache).

struct P {
  n: u32,
  v: u32,
  guided: u32,
  top_k: u32,
  guidance: f32,
  temperature: f32,
  top_p: f32,
  seed: u32,
  stream: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> cond: array<f32>;
@group(0) @binding(2) var<storage, read> uncond: array<f32>; // cond again when not guided
@group(0) @binding(3) var<storage, read_write> ids: array<i32>;

const WG = 256u;
var<workgroup> scratch: array<Measures, 256>;
var<workgroup> chunk_mass: array<f32, 256>;
var<workgroup> group_mass: array<f32, 16>;
var<workgroup> top_key: atomic<u32>;
var<workgroup> first_top: atomic<u32>;
var<workgroup> owner: u32; // the invocation whose chunk holds the draw
var<workgroup> owner_rest: f32; // u·total less the kept weight before the owner's chunk

// lowbias32 (Chris Wellons): a bijective 32-bit integer hash with good avalanche.
fn mix32(x: u32) -> u32 {
  var h = x;
  h ^= h >> 16u;
  h *= 0x7feb352du;
  h ^= h >> 15u;
  h *= 0x846ca68bu;
  h ^= h >> 16u;
  return h;
}

// The row's uniform in [0, 1): 24 hashed bits, exact in f32.
fn uniform01(row: u32) -> f32 {
  let h = mix32(mix32(mix32(p.seed ^ 0x9e3779b9u) + p.stream) + row);
  return f32(h >> 8u) * (1.0 / 16777216.0);
}

fn guided(base: u32, c: u32) -> f32 {
  let x = cond[base + c];
  if (p.guided == 0u) { return x; }
  return (1.0 + p.guidance) * x - p.guidance * uncond[base + c];
}

// Order-preserving map of a float to u32 (a larger float gets a larger key), and back.
fn key_of(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}
fn value_of(k: u32) -> f32 {
  return bitcast<f32>(select(~k, k & 0x7fffffffu, (k & 0x80000000u) != 0u));
}

// For four keys k_j: M(k_j), and the least entry key ≥ k_j (entries there and at k_j are the same).
struct Measures {
  m: vec4<f32>,
  least: vec4<u32>,
}

// Sums m and takes the min of least over the workgroup in a fixed tree order; every invocation
// gets the result, uniform (it can steer a loop with barriers). Call from uniform control flow.
fn workgroup_reduce(x: Measures, lid: u32) -> Measures {
  workgroupBarrier(); // the previous call's readers of scratch[0] are done
  scratch[lid] = x;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      let other = scratch[lid + s];
      scratch[lid].m += other.m;
      scratch[lid].least = min(scratch[lid].least, other.least);
    }
    if (s > 1u) { workgroupBarrier(); } // the last is workgroupUniformLoad's
  }
  return workgroupUniformLoad(&scratch[0]);
}

fn weight(g: f32, g_max: f32) -> f32 {
  return exp((g - g_max) / p.temperature);
}

// M(k) = Σ over entries with key ≥ k of 1 (counting) or w. Counts are exact in f32 (sample.ts
// refuses v > 2^24 with top-k).
fn measures_at_least(base: u32, ks: vec4<u32>, g_max: f32, counting: bool, lid: u32) -> Measures {
  var r = Measures(vec4(0.0), vec4(0xffffffffu));
  for (var c = lid; c < p.v; c += WG) {
    let g = guided(base, c);
    let k = vec4(key_of(g));
    let w = select(weight(g, g_max), 1.0, counting);
    let above = k >= ks;
    r.m += select(vec4(0.0), vec4(w), above);
    r.least = min(r.least, select(vec4(0xffffffffu), k, above));
  }
  return workgroup_reduce(r, lid);
}

// The largest key tau with M(tau) ≥ need, found among the entries' keys in [0, hi), hi failing.
// Each pass measures three keys splitting (tau, hi) in four, and tau + 1: when that fails, tau is
// final. A passing key moves tau up to the least entry key at or above it (same M), so tau lands
// on the answer once the spacing is below its gap to the next lower entry, not after 32 bits. M
// is monotone in the key (a sum of fewer non-negative terms in the same order is no larger), so
// the search is exact.
fn threshold(base: u32, g_max: f32, counting: bool, need: f32, hi_key: u32, lid: u32) -> u32 {
  var tau = 0u; // M(0) is everything, ≥ need
  var hi = hi_key;
  for (var i = 0u; i < 20u; i++) { // ⌈log4 2^32⌉ passes and a few more bound it
    let q = max((hi - tau) / 4u, 1u);
    let ks = min(vec4(tau + q, tau + 2u * q, tau + 3u * q, tau + 1u), vec4(hi));
    let r = measures_at_least(base, ks, g_max, counting, lid);
    if (r.m.w < need) { break; }
    for (var j = 0u; j < 3u; j++) {
      if (r.m[j] >= need) { tau = max(tau, r.least[j]); } else { hi = min(hi, ks[j]); }
    }
  }
  return tau;
}

@compute @workgroup_size(256)
fn sample(@builtin(local_invocation_id) lid3: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) nw: vec3<u32>) {
  let lid = lid3.x;
  let row = wid.x + wid.y * nw.x;
  if (row >= p.n) { return; }
  let base = row * p.v;

  if (lid == 0u) {
    atomicStore(&top_key, 0u);
    atomicStore(&first_top, 0xffffffffu);
  }
  workgroupBarrier();
  var k = 0u;
  for (var c = lid; c < p.v; c += WG) { k = max(k, key_of(guided(base, c))); }
  atomicMax(&top_key, k);
  workgroupBarrier();
  let k_max = atomicLoad(&top_key);

  if (p.temperature == 0.0) {
    // The first c of this invocation's stride holding k_max is its lowest; atomicMin picks the
    // lowest over the workgroup.
    for (var c = lid; c < p.v; c += WG) {
      if (key_of(guided(base, c)) == k_max) {
        atomicMin(&first_top, c);
        break;
      }
    }
    workgroupBarrier();
    if (lid == 0u) { ids[row] = i32(atomicLoad(&first_top)); }
    return;
  }
  let g_max = value_of(k_max);

  // Keep key ≥ tau; tau 0 keeps everything. Keys past k_max fail every search.
  var tau = 0u;
  let past_max = k_max + 1u;
  if (p.top_k > 0u && p.top_k < p.v) {
    tau = threshold(base, g_max, true, f32(p.top_k), past_max, lid);
  }
  if (p.top_p < 1.0) {
    // The same sum as the search's at tau_k, so tau_k passes and tau_p ≥ tau_k (max() regardless).
    let kept = measures_at_least(base, vec4(tau), g_max, false, lid).m.x;
    tau = max(tau, threshold(base, g_max, false, p.top_p * kept, past_max, lid));
  }

  // Inverse CDF in index order: each invocation sums a contiguous chunk, 16 invocations sum 16
  // chunks each, and one finds the group, then the chunk, whose running sum passes u·total, and
  // the owner of that chunk walks it. Serial sums in index order: a tree scan's float sums need not
  // be monotone, and the draw must find exactly one owner.
  let chunk = (p.v + WG - 1u) / WG;
  let lo = min(lid * chunk, p.v);
  let hi = min(lo + chunk, p.v);
  var part = 0.0;
  for (var c = lo; c < hi; c++) {
    let g = guided(base, c);
    if (key_of(g) >= tau) { part += weight(g, g_max); }
  }
  chunk_mass[lid] = part;
  workgroupBarrier();
  if (lid < 16u) {
    var s = 0.0;
    for (var i = 16u * lid; i < 16u * lid + 16u; i++) { s += chunk_mass[i]; }
    group_mass[lid] = s;
  }
  workgroupBarrier();
  if (lid == 0u) {
    var total = 0.0;
    for (var i = 0u; i < 16u; i++) { total += group_mass[i]; }
    // total ≥ 1 (the largest entry is kept with weight 1), so some group and chunk are positive.
    // Rounding can leave goal unpassed at the end of a level: the last positive one draws.
    var rest = uniform01(row) * total;
    var group = 0u;
    var before = 0.0;
    var skipped = 0.0;
    for (var i = 0u; i < 16u; i++) {
      if (group_mass[i] > 0.0) {
        group = i;
        skipped = before;
        if (before + group_mass[i] > rest) { break; }
      }
      before += group_mass[i];
    }
    rest -= skipped;
    owner = 16u * group;
    before = 0.0;
    skipped = 0.0;
    for (var i = 16u * group; i < 16u * group + 16u; i++) {
      if (chunk_mass[i] > 0.0) {
        owner = i;
        skipped = before;
        if (before + chunk_mass[i] > rest) { break; }
      }
      before += chunk_mass[i];
    }
    owner_rest = rest - skipped;
  }
  workgroupBarrier();
  if (lid == owner) {
    let rest = owner_rest;
    var s = 0.0;
    var pick = lo;
    for (var c = lo; c < hi; c++) {
      let g = guided(base, c);
      if (key_of(g) < tau) { continue; }
      let w = weight(g, g_max);
      if (w > 0.0) { pick = c; } // the last positive entry, if rounding leaves rest unreached
      s += w;
      if (s > rest) { break; }
    }
    ids[row] = i32(pick);
  }
}
