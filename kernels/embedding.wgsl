// Embedding lookup out[i, :] = weight[ids[i], :] over weight [v, d] and i32 ids [n], and its
// backward dweight[r, :] = Σ_{i : ids[i] = r} dy[i, :]. A shader cannot throw, so an id outside
// [0, v) reads a zero row and its gradient is dropped (the host checks ids it holds).
//
// The backward is deterministic without float atomics: each workgroup owns 256 columns of one
// vocabulary row, scans the ids in chunks staged in workgroup memory and adds the matching rows of
// dy in index order.
//
// Each entry point declares its own bindings, numbered from 1 in dispatch order; two variables may
// share a binding because no entry point uses both.

struct P { n: u32, v: u32, d: u32 }
@group(0) @binding(0) var<uniform> p: P;

// forward
@group(0) @binding(1) var<storage, read> weight: array<f32>;
@group(0) @binding(2) var<storage, read> ids: array<i32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
// backward: ids (2), and
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dweight: array<f32>;

const WG = 256u;
var<workgroup> chunk_ids: array<i32, 256>;

@compute @workgroup_size(256)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let e = gid.x + gid.y * nw.x * WG;
  if (e >= p.n * p.d) { return; }
  let id = ids[e / p.d];
  var value = 0.0;
  if (id >= 0 && id < i32(p.v)) { value = weight[u32(id) * p.d + e % p.d]; }
  out[e] = value;
}

@compute @workgroup_size(256)
fn backward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nw: vec3<u32>) {
  let blocks = (p.d + WG - 1u) / WG;
  let w = wid.x + wid.y * nw.x;
  if (w >= p.v * blocks) { return; }
  let row = i32(w / blocks);
  let j = (w % blocks) * WG + lid.x;
  var acc = 0.0;
  for (var start = 0u; start < p.n; start += WG) {
    workgroupBarrier(); // everyone is done with the previous chunk
    let i = start + lid.x;
    chunk_ids[lid.x] = select(-1, ids[min(i, p.n - 1u)], i < p.n);
    workgroupBarrier();
    if (j < p.d) {
      let len = min(WG, p.n - start);
      for (var k = 0u; k < len; k++) {
        if (chunk_ids[k] == row) { acc += dy[(start + k) * p.d + j]; }
      }
    }
  }
  if (j < p.d) { dweight[u32(row) * p.d + j] = acc; }
}
