// Reductions over the middle axis of a [outer, n, inner] view: sum (times `scale`, so mean is
// scale = 1/n) or max with its first index. Rows (inner = 1) get a workgroup each; otherwise one
// thread per (outer, chunk, inner) walks its chunk of n (chunk_len rows) with coalesced reads and
// writes out[(outer, chunk, inner)]: with one chunk that is the result, with several (sums whose
// outer·inner is too few threads to fill a GPU) a second pass sums the chunks.

struct P { outer: u32, n: u32, inner: u32, scale: f32, is_max: u32, chunk_len: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read_write> arg: array<u32>;

var<workgroup> vals: array<f32, 256>;
var<workgroup> idxs: array<u32, 256>;

fn better(v: f32, j: u32, bv: f32, bj: u32) -> bool {
  // NaN wins (as PyTorch), then larger values, then the earlier index.
  return (v != v && bv == bv) || v > bv || (v == bv && j < bj);
}

@compute @workgroup_size(256)
fn rows(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nw: vec3<u32>) {
  let row = wid.x + wid.y * nw.x;
  if (row >= p.outer) { return; }
  let base = row * p.n;
  var acc = 0.0;
  var best = -3.4028235e38;
  var bj = 0xffffffffu;
  for (var j = lid.x; j < p.n; j += 256u) {
    let v = x[base + j];
    if (p.is_max == 1u) {
      if (better(v, j, best, bj)) { best = v; bj = j; }
    } else {
      acc += v;
    }
  }
  vals[lid.x] = select(acc, best, p.is_max == 1u);
  idxs[lid.x] = bj;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s >>= 1u) {
    if (lid.x < s) {
      if (p.is_max == 1u) {
        if (better(vals[lid.x + s], idxs[lid.x + s], vals[lid.x], idxs[lid.x])) {
          vals[lid.x] = vals[lid.x + s];
          idxs[lid.x] = idxs[lid.x + s];
        }
      } else {
        vals[lid.x] += vals[lid.x + s];
      }
    }
    workgroupBarrier();
  }
  if (lid.x == 0u) {
    if (p.is_max == 1u) {
      out[row] = vals[0];
      arg[row] = idxs[0];
    } else {
      out[row] = vals[0] * p.scale;
    }
  }
}

@compute @workgroup_size(256)
fn columns(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let t = gid.x + gid.y * nw.x * 256u;
  let chunks = (p.n + p.chunk_len - 1u) / p.chunk_len;
  if (t >= p.outer * chunks * p.inner) { return; }
  let i = t % p.inner;
  let c = (t / p.inner) % chunks;
  let o = t / (p.inner * chunks);
  var acc = 0.0;
  var best = -3.4028235e38;
  var bj = 0xffffffffu;
  for (var j = c * p.chunk_len; j < min(p.n, (c + 1u) * p.chunk_len); j++) {
    let v = x[(o * p.n + j) * p.inner + i];
    if (p.is_max == 1u) {
      if (better(v, j, best, bj)) { best = v; bj = j; }
    } else {
      acc += v;
    }
  }
  if (p.is_max == 1u) {
    out[t] = best;
    arg[t] = bj;
  } else {
    out[t] = acc * p.scale;
  }
}

// Gradient of max: dx[o, j, i] = g[o, i] where j is the winning index, else 0.
@compute @workgroup_size(256)
fn max_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let t = gid.x + gid.y * nw.x * 256u;
  if (t >= p.outer * p.n * p.inner) { return; }
  let i = t % p.inner;
  let j = (t / p.inner) % p.n;
  let o = t / (p.inner * p.n);
  let k = o * p.inner + i;
  out[t] = select(0.0, x[k], arg[k] == j);
}
