// Rotary position embedding (DESIGN.md §4) over x [B, S, H, Dh]: pair j = dims (2j, 2j+1) of
// row s is turned by the angle whose (cos, sin) is table[start + s][j]. The table holds every
// axis's pairs in order (1D: one axis; 2D: row axis then column axis), so one kernel serves both.
// sign = -1 turns the other way: the backward (the rotation is orthogonal).

struct P { pairs: u32, heads: u32, rows: u32, start: u32, total: u32, sign: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> table: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> out: array<vec2<f32>>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let i = gid.x + gid.y * nw.x * 256u;
  if (i >= p.total) { return; }
  let j = i % p.pairs;
  let s = (i / (p.pairs * p.heads)) % p.rows;
  let cs = table[(p.start + s) * p.pairs + j];
  let sn = cs.y * p.sign;
  let v = x[i];
  out[i] = vec2<f32>(v.x * cs.x - v.y * sn, v.x * sn + v.y * cs.x);
}
