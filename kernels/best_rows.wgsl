// Best of n candidates, on the GPU (sample.ts's bestRows): rows [g·n, width] hold g groups of n
// candidates each; out [g, width] gets each group's best row, with no readback. A candidate's
// score is −c + λ·(u − c), c and u its summed −log p under its caption and under the null caption
// (u unused when guided = 0: the score is −c). The first of equal scores wins, as an argmax.
struct P { groups: u32, n: u32, width: u32, guided: u32, lambda: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> cond: array<f32>;
@group(0) @binding(2) var<storage, read> uncond: array<f32>; // cond again when not guided
@group(0) @binding(3) var<storage, read> rows: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

fn score(r: u32) -> f32 {
  let c = cond[r];
  if (p.guided == 0u) { return -c; }
  return -c + p.lambda * (uncond[r] - c);
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let i = gid.x + gid.y * nw.x * 256u;
  if (i >= p.groups * p.width) { return; }
  let g = i / p.width;
  let first = g * p.n;
  var best = first;
  var top = score(first);
  for (var r = first + 1u; r < first + p.n; r++) {
    let s = score(r);
    if (s > top) {
      top = s;
      best = r;
    }
  }
  out[i] = rows[best * p.width + i % p.width];
}
