// GroupNorm over NCHW (DESIGN §3): x viewed as [B, G, n] with n = (C/G)·HW contiguous per group;
//   y = (x − mean_bg) · rstd_bg · w[c] + bias[c],   rstd = 1/√(var + eps), var biased (PyTorch).
// Group statistics take a workgroup per (b, g) and two passes over the group (mean, then squared
// deviations), which stays accurate where E[x²] − E[x]² would cancel. Backward:
//   dx = rstd · (dy·w − mean(dy·w) − x̂ · mean(dy·w · x̂))   over the group
//   dw[c] = Σ_{b,hw} dy · x̂,  dbias[c] = Σ_{b,hw} dy         a workgroup per channel
// With `silu` the op is SiLU(GroupNorm(x)) (VQGAN's norm → nonlinearity pairs): apply writes
// silu(y), and backward first turns dy into dy·silu'(y), recomputing y from x and the statistics
// rather than keeping it. Every sum has a fixed order, so results are deterministic. Each entry
// point declares exactly the bindings it uses, from 1 up (derived layouts hold only those).

// tp: backward_planes' threads per plane (a power of two; 256 / tp planes share a workgroup).
struct P { B: u32, C: u32, HW: u32, G: u32, eps: f32, silu: u32, tp: u32 }
@group(0) @binding(0) var<uniform> p: P;

const WG = 256u;
var<workgroup> red: array<f32, 256>;
var<workgroup> red2: array<f32, 256>;

fn flat(gid: vec3<u32>, nw: vec3<u32>) -> u32 { return gid.x + gid.y * nw.x * WG; }
fn group_size() -> u32 { return (p.C / p.G) * p.HW; }

/** The gradient reaching y = x̂·w + b: dy itself, or dy·silu'(y) when SiLU follows. */
fn grad_y(dy: f32, xhat: f32, w: f32, b: f32) -> f32 {
  if (p.silu == 0u) { return dy; }
  let y = xhat * w + b;
  let s = 1.0 / (1.0 + exp(-y));
  return dy * s * (1.0 + y * (1.0 - s));
}

/** Workgroup sum of each thread's a and b; every thread gets the totals. */
fn reduce2(lid: u32, a: f32, b: f32) -> vec2<f32> {
  red[lid] = a;
  red2[lid] = b;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      red[lid] += red[lid + s];
      red2[lid] += red2[lid + s];
    }
    workgroupBarrier();
  }
  let r = vec2(red[0], red2[0]);
  workgroupBarrier();
  return r;
}

@group(0) @binding(1) var<storage, read> sx: array<f32>;
@group(0) @binding(2) var<storage, read_write> stats: array<f32>;

// stats[2·(b·G + g)] = mean, [+1] = rstd; workgroup id = b·G + g.
@compute @workgroup_size(256)
fn group_stats(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nw: vec3<u32>) {
  let bg = wid.x + wid.y * nw.x;
  if (bg >= p.B * p.G) { return; }
  let n = group_size();
  let base = bg * n;
  var s = 0.0;
  for (var i = lid.x; i < n; i += WG) { s += sx[base + i]; }
  let mean = reduce2(lid.x, s, 0.0).x / f32(n);
  var q = 0.0;
  for (var i = lid.x; i < n; i += WG) {
    let d = sx[base + i] - mean;
    q += d * d;
  }
  let v = reduce2(lid.x, q, 0.0).x / f32(n);
  if (lid.x == 0u) {
    stats[2u * bg] = mean;
    stats[2u * bg + 1u] = inverseSqrt(v + p.eps);
  }
}

@group(0) @binding(1) var<storage, read> ax: array<f32>;
@group(0) @binding(2) var<storage, read> astats: array<f32>;
@group(0) @binding(3) var<storage, read> aw: array<f32>;
@group(0) @binding(4) var<storage, read> abias: array<f32>;
@group(0) @binding(5) var<storage, read_write> ay: array<f32>;

@compute @workgroup_size(256)
fn apply(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let i = flat(gid, nw);
  if (i >= p.B * p.C * p.HW) { return; }
  let c = (i / p.HW) % p.C;
  let bg = i / group_size();
  let y = (ax[i] - astats[2u * bg]) * astats[2u * bg + 1u] * aw[c] + abias[c];
  ay[i] = select(y, y / (1.0 + exp(-y)), p.silu == 1u);
}

@group(0) @binding(1) var<storage, read> bx: array<f32>;
@group(0) @binding(2) var<storage, read> bdy: array<f32>;
@group(0) @binding(3) var<storage, read> bstats: array<f32>;
@group(0) @binding(4) var<storage, read> bw: array<f32>;
@group(0) @binding(5) var<storage, read> bb: array<f32>;
@group(0) @binding(6) var<storage, read_write> sums: array<f32>;

// sums[2·bg] = mean(dy·w), [+1] = mean(dy·w·x̂) over the group.
@compute @workgroup_size(256)
fn backward_sums(@builtin(local_invocation_id) lid: vec3<u32>,
                 @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let bg = wid.x + wid.y * nw.x;
  if (bg >= p.B * p.G) { return; }
  let n = group_size();
  let base = bg * n;
  let mean = bstats[2u * bg];
  let rstd = bstats[2u * bg + 1u];
  let c0 = (bg % p.G) * (p.C / p.G);
  var s1 = 0.0;
  var s2 = 0.0;
  for (var i = lid.x; i < n; i += WG) {
    let c = c0 + i / p.HW;
    let xhat = (bx[base + i] - mean) * rstd;
    let dyw = grad_y(bdy[base + i], xhat, bw[c], bb[c]) * bw[c];
    s1 += dyw;
    s2 += dyw * xhat;
  }
  let r = reduce2(lid.x, s1, s2);
  if (lid.x == 0u) {
    sums[2u * bg] = r.x / f32(n);
    sums[2u * bg + 1u] = r.y / f32(n);
  }
}

@group(0) @binding(1) var<storage, read> dx_x: array<f32>;
@group(0) @binding(2) var<storage, read> dx_dy: array<f32>;
@group(0) @binding(3) var<storage, read> dx_stats: array<f32>;
@group(0) @binding(4) var<storage, read> dx_w: array<f32>;
@group(0) @binding(5) var<storage, read> dx_b: array<f32>;
@group(0) @binding(6) var<storage, read> dx_sums: array<f32>;
@group(0) @binding(7) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(256)
fn backward_input(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nw: vec3<u32>) {
  let i = flat(gid, nw);
  if (i >= p.B * p.C * p.HW) { return; }
  let c = (i / p.HW) % p.C;
  let bg = i / group_size();
  let rstd = dx_stats[2u * bg + 1u];
  let xhat = (dx_x[i] - dx_stats[2u * bg]) * rstd;
  let dyw = grad_y(dx_dy[i], xhat, dx_w[c], dx_b[c]) * dx_w[c];
  dx[i] = rstd * (dyw - dx_sums[2u * bg] - xhat * dx_sums[2u * bg + 1u]);
}

@group(0) @binding(1) var<storage, read> px: array<f32>;
@group(0) @binding(2) var<storage, read> pdy: array<f32>;
@group(0) @binding(3) var<storage, read> pstats: array<f32>;
@group(0) @binding(4) var<storage, read> pw: array<f32>;
@group(0) @binding(5) var<storage, read> pb: array<f32>;
@group(0) @binding(6) var<storage, read_write> dweight: array<f32>;
@group(0) @binding(7) var<storage, read_write> dbias: array<f32>;

// dweight[c] and dbias[c]; workgroup id = c.
@compute @workgroup_size(256)
fn backward_params(@builtin(local_invocation_id) lid: vec3<u32>,
                   @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let c = wid.x + wid.y * nw.x;
  if (c >= p.C) { return; }
  let g = c / (p.C / p.G);
  var sw = 0.0;
  var sb = 0.0;
  for (var b = 0u; b < p.B; b++) {
    let base = (b * p.C + c) * p.HW;
    let bg = b * p.G + g;
    let mean = pstats[2u * bg];
    let rstd = pstats[2u * bg + 1u];
    for (var i = lid.x; i < p.HW; i += WG) {
      let xhat = (px[base + i] - mean) * rstd;
      let dy = grad_y(pdy[base + i], xhat, pw[c], pb[c]);
      sw += dy * xhat;
      sb += dy;
    }
  }
  let r = reduce2(lid.x, sw, sb);
  if (lid.x == 0u) {
    dweight[c] = r.x;
    dbias[c] = r.y;
  }
}

// --- Backward, second version (setGroupNormBackward(2), the default): one pass over x and dy
// for every sum. The group sums are weighted sums of per-channel ones,
//   Σ_group dy·w = Σ_c w[c]·Σ_plane dy,   Σ_group dy·w·x̂ = Σ_c w[c]·Σ_plane dy·x̂,
// and the parameter gradients are those plane sums added over the batch, so p.tp threads per
// (b, c) plane sum dy·x̂ and dy once (B·C planes, each one contiguous run), and a small kernel
// turns the [B, C, 2] plane sums into the group means and dweight, dbias.

/** The sums of (a, b) over each run of p.tp threads (a plane's), returned to all of them. */
fn segment_sum2(lid: u32, a: f32, b: f32) -> vec2<f32> {
  red[lid] = a;
  red2[lid] = b;
  workgroupBarrier();
  let j = lid % p.tp;
  for (var s = p.tp / 2u; s > 0u; s >>= 1u) {
    if (j < s) {
      red[lid] += red[lid + s];
      red2[lid] += red2[lid + s];
    }
    workgroupBarrier();
  }
  return vec2(red[lid - j], red2[lid - j]);
}

@group(0) @binding(1) var<storage, read> cx: array<f32>;
@group(0) @binding(2) var<storage, read> cdy: array<f32>;
@group(0) @binding(3) var<storage, read> cstats: array<f32>;
@group(0) @binding(4) var<storage, read> cw: array<f32>;
@group(0) @binding(5) var<storage, read> cb: array<f32>;
@group(0) @binding(6) var<storage, read_write> planes: array<f32>;

// planes[2·(b·C + c)] = Σ dy·x̂, [+1] = Σ dy over the plane (dy after SiLU's derivative).
@compute @workgroup_size(256)
fn backward_planes(@builtin(local_invocation_id) lid: vec3<u32>,
                   @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let bc = (wid.x + wid.y * nw.x) * (WG / p.tp) + lid.x / p.tp;
  let live = bc < p.B * p.C;
  let first = min(bc, p.B * p.C - 1u); // a plane past the last reads the last one's parameters
  let c = first % p.C;
  let bg = (first / p.C) * p.G + c / (p.C / p.G);
  let mean = cstats[2u * bg];
  let rstd = cstats[2u * bg + 1u];
  let w = cw[c];
  let b = cb[c];
  let base = first * p.HW;
  var s1 = 0.0;
  var s2 = 0.0;
  let end = select(0u, p.HW, live);
  for (var i = lid.x % p.tp; i < end; i += p.tp) {
    let xhat = (cx[base + i] - mean) * rstd;
    let dy = grad_y(cdy[base + i], xhat, w, b);
    s1 += dy * xhat;
    s2 += dy;
  }
  let r = segment_sum2(lid.x, s1, s2);
  if (live && lid.x % p.tp == 0u) {
    planes[2u * bc] = r.x;
    planes[2u * bc + 1u] = r.y;
  }
}

@group(0) @binding(1) var<storage, read> cx4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> cdy4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> cstats4: array<f32>;
@group(0) @binding(4) var<storage, read> cw4: array<f32>;
@group(0) @binding(5) var<storage, read> cb4: array<f32>;
@group(0) @binding(6) var<storage, read_write> planes4: array<f32>;

fn grad_y4(dy: vec4<f32>, xhat: vec4<f32>, w: f32, b: f32) -> vec4<f32> {
  if (p.silu == 0u) { return dy; }
  let y = xhat * w + b;
  let s = 1.0 / (1.0 + exp(-y));
  return dy * s * (1.0 + y * (1.0 - s));
}

// backward_planes for HW % 4 == 0: vec4 loads.
@compute @workgroup_size(256)
fn backward_planes4(@builtin(local_invocation_id) lid: vec3<u32>,
                    @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let bc = (wid.x + wid.y * nw.x) * (WG / p.tp) + lid.x / p.tp;
  let live = bc < p.B * p.C;
  let first = min(bc, p.B * p.C - 1u); // a plane past the last reads the last one's parameters
  let c = first % p.C;
  let bg = (first / p.C) * p.G + c / (p.C / p.G);
  let mean = cstats4[2u * bg];
  let rstd = cstats4[2u * bg + 1u];
  let w = cw4[c];
  let b = cb4[c];
  let n = p.HW / 4u;
  let base = first * n;
  var s1 = vec4<f32>(0.0);
  var s2 = vec4<f32>(0.0);
  let end = select(0u, n, live);
  for (var i = lid.x % p.tp; i < end; i += p.tp) {
    let xhat = (cx4[base + i] - mean) * rstd;
    let dy = grad_y4(cdy4[base + i], xhat, w, b);
    s1 += dy * xhat;
    s2 += dy;
  }
  let r = segment_sum2(lid.x, (s1.x + s1.y) + (s1.z + s1.w), (s2.x + s2.y) + (s2.z + s2.w));
  if (live && lid.x % p.tp == 0u) {
    planes4[2u * bc] = r.x;
    planes4[2u * bc + 1u] = r.y;
  }
}

@group(0) @binding(1) var<storage, read> fplanes: array<f32>;
@group(0) @binding(2) var<storage, read> fw: array<f32>;
@group(0) @binding(3) var<storage, read_write> fsums: array<f32>;
@group(0) @binding(4) var<storage, read_write> fdweight: array<f32>;
@group(0) @binding(5) var<storage, read_write> fdbias: array<f32>;

// Thread i < B·G: fsums[2i] = mean(dy·w), [+1] = mean(dy·w·x̂) over group i (as backward_sums);
// thread c < C: fdweight[c] = Σ_b planes[b, c, 0], fdbias[c] = Σ_b planes[b, c, 1].
@compute @workgroup_size(64)
fn backward_finish(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  let cg = p.C / p.G;
  if (i < p.B * p.G) {
    let c0 = (i % p.G) * cg;
    let first = (i / p.G) * p.C + c0;
    var s1 = 0.0;
    var s2 = 0.0;
    for (var j = 0u; j < cg; j++) {
      let w = fw[c0 + j];
      s1 += w * fplanes[2u * (first + j) + 1u];
      s2 += w * fplanes[2u * (first + j)];
    }
    let n = f32(group_size());
    fsums[2u * i] = s1 / n;
    fsums[2u * i + 1u] = s2 / n;
  }
  if (i < p.C) {
    var sw = 0.0;
    var sb = 0.0;
    for (var b = 0u; b < p.B; b++) {
      sw += fplanes[2u * (b * p.C + i)];
      sb += fplanes[2u * (b * p.C + i) + 1u];
    }
    fdweight[i] = sw;
    fdbias[i] = sb;
  }
}

// --- Statistics, second version (setGroupNormStats(2), the default): one read of x. p.tp threads
// per (b, c) plane each sum their elements shifted by the first one they read (Σ(x − k) and
// Σ(x − k)², whose cancellation is bounded by the thread's own count: (mean − k)² ≤ M2 when k
// is one of the values), then merge (count, mean, M2) triples pairwise (Chan et al.) over the
// plane; stats_finish merges a group's planes the same way. As accurate as the two passes of
// group_stats, from one.

var<workgroup> red3: array<vec3<f32>, 256>;

/** (count, mean, M2) of the union of two disjoint sets. */
fn merge(a: vec3<f32>, b: vec3<f32>) -> vec3<f32> {
  let n = a.x + b.x;
  if (n == 0.0) { return vec3(0.0); }
  let d = b.y - a.y;
  let f = b.x / n;
  return vec3(n, a.y + d * f, a.z + b.z + d * d * a.x * f);
}

@group(0) @binding(1) var<storage, read> mx: array<f32>;
@group(0) @binding(2) var<storage, read_write> moments: array<f32>;

// moments[2·(b·C + c)] = the plane's mean, [+1] = its Σ(x − mean)².
@compute @workgroup_size(256)
fn stats_planes(@builtin(local_invocation_id) lid: vec3<u32>,
                @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let bc = (wid.x + wid.y * nw.x) * (WG / p.tp) + lid.x / p.tp;
  let live = bc < p.B * p.C;
  let base = bc * p.HW;
  let end = select(0u, p.HW, live);
  let first = lid.x % p.tp;
  var k = 0.0;
  if (first < end) { k = mx[base + first]; }
  var s1 = 0.0;
  var s2 = 0.0;
  var count = 0u;
  for (var i = first; i < end; i += p.tp) {
    let d = mx[base + i] - k;
    s1 += d;
    s2 += d * d;
    count++;
  }
  let n = f32(count);
  let m = select(0.0, s1 / n, count > 0u);
  red3[lid.x] = vec3(n, k + m, s2 - s1 * m);
  workgroupBarrier();
  let j = lid.x % p.tp;
  for (var s = p.tp / 2u; s > 0u; s >>= 1u) {
    if (j < s) { red3[lid.x] = merge(red3[lid.x], red3[lid.x + s]); }
    workgroupBarrier();
  }
  if (live && j == 0u) {
    moments[2u * bc] = red3[lid.x].y;
    moments[2u * bc + 1u] = red3[lid.x].z;
  }
}

@group(0) @binding(1) var<storage, read> fmoments: array<f32>;
@group(0) @binding(2) var<storage, read_write> fstats: array<f32>;

// fstats[2·bg] = mean, [+1] = rstd over group bg's C/G planes (group_stats' output).
@compute @workgroup_size(64)
fn stats_finish(@builtin(global_invocation_id) gid: vec3<u32>) {
  let bg = gid.x;
  if (bg >= p.B * p.G) { return; }
  let cg = p.C / p.G;
  let first = (bg / p.G) * p.C + (bg % p.G) * cg;
  var acc = vec3(0.0);
  for (var j = 0u; j < cg; j++) {
    acc = merge(acc, vec3(f32(p.HW), fmoments[2u * (first + j)], fmoments[2u * (first + j) + 1u]));
  }
  fstats[2u * bg] = acc.y;
  fstats[2u * bg + 1u] = inverseSqrt(acc.z / f32(group_size()) + p.eps);
}
