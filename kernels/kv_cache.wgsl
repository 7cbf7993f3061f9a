// Appends new keys or values to a preallocated KV cache (generation, DESIGN.md §4): rows
// [start, start + sq) of each batch of a [B, cap, H, Dh] cache := the [B, sq, H, Dh] input. The
// rows already cached are not touched, so each scale costs only its own tokens.

struct P { heads: u32, dh4: u32, sq: u32, rows: u32, cap: u32, start: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> cache: array<vec4<f32>>;

fn index(gid: vec3<u32>, nw: vec3<u32>) -> u32 { return gid.x + gid.y * nw.x * 256u; }

// One thread per vec4 of the input; p.rows = B·sq·H·Dh/4.
@compute @workgroup_size(256)
fn kv_append(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let i = index(gid, nw);
  if (i >= p.rows) { return; }
  let row4 = p.heads * p.dh4;
  let x = i % row4;
  let s = (i / row4) % p.sq;
  let bt = i / (row4 * p.sq);
  cache[(bt * p.cap + p.start + s) * row4 + x] = src[i];
}
