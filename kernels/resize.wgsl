// Resizing of NCHW maps viewed as planes [P = B·C, H, W] → [P, oH, oW] (DESIGN §3's
// area_resize and bicubic_resize, and VQGAN's nearest ×2 upsampling). Every backward is a gather
// over the outputs that read an input element, so sums have a fixed order (no atomics).
// Each entry point declares exactly the bindings it uses, from 1 up.

struct P { planes: u32, H: u32, W: u32, oH: u32, oW: u32 }
@group(0) @binding(0) var<uniform> p: P;

fn flat(gid: vec3<u32>, nw: vec3<u32>) -> u32 { return gid.x + gid.y * nw.x * 256u; }

@group(0) @binding(1) var<storage, read> nx: array<f32>;
@group(0) @binding(2) var<storage, read_write> ny: array<f32>;

// F.interpolate(scale_factor=2, mode="nearest"): oH = 2H, oW = 2W.
@compute @workgroup_size(256)
fn nearest2x(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let i = flat(gid, nw);
  if (i >= p.planes * p.oH * p.oW) { return; }
  let ox = i % p.oW;
  let oy = (i / p.oW) % p.oH;
  let pl = i / (p.oW * p.oH);
  ny[i] = nx[(pl * p.H + oy / 2u) * p.W + ox / 2u];
}

@group(0) @binding(1) var<storage, read> ng: array<f32>;
@group(0) @binding(2) var<storage, read_write> ndx: array<f32>;

@compute @workgroup_size(256)
fn nearest2x_backward(@builtin(global_invocation_id) gid: vec3<u32>,
                      @builtin(num_workgroups) nw: vec3<u32>) {
  let i = flat(gid, nw);
  if (i >= p.planes * p.H * p.W) { return; }
  let ix = i % p.W;
  let iy = (i / p.W) % p.H;
  let pl = i / (p.W * p.H);
  let o = (pl * p.oH + 2u * iy) * p.oW + 2u * ix;
  ndx[i] = (ng[o] + ng[o + 1u]) + (ng[o + p.oW] + ng[o + p.oW + 1u]);
}

// Adaptive average pooling windows, as PyTorch: [⌊o·n/m⌋, ⌈(o+1)·n/m⌉) of n inputs for output o
// of m. Windows of neighbouring outputs may overlap when m does not divide n.
fn win_start(o: u32, n: u32, m: u32) -> u32 { return (o * n) / m; }
fn win_end(o: u32, n: u32, m: u32) -> u32 { return ((o + 1u) * n + m - 1u) / m; }

@group(0) @binding(1) var<storage, read> ax: array<f32>;
@group(0) @binding(2) var<storage, read_write> ay: array<f32>;

@compute @workgroup_size(256)
fn area(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let i = flat(gid, nw);
  if (i >= p.planes * p.oH * p.oW) { return; }
  let ox = i % p.oW;
  let oy = (i / p.oW) % p.oH;
  let pl = i / (p.oW * p.oH);
  let y0 = win_start(oy, p.H, p.oH);
  let y1 = win_end(oy, p.H, p.oH);
  let x0 = win_start(ox, p.W, p.oW);
  let x1 = win_end(ox, p.W, p.oW);
  var s = 0.0;
  for (var y = y0; y < y1; y++) {
    for (var x = x0; x < x1; x++) { s += ax[(pl * p.H + y) * p.W + x]; }
  }
  ay[i] = s / f32((y1 - y0) * (x1 - x0));
}

@group(0) @binding(1) var<storage, read> ag: array<f32>;
@group(0) @binding(2) var<storage, read_write> adx: array<f32>;

// Input y is read by outputs o with ⌊y·m/n⌋ ≤ o < ⌈(y+1)·m/n⌉ (the inverse of the windows).
@compute @workgroup_size(256)
fn area_backward(@builtin(global_invocation_id) gid: vec3<u32>,
                 @builtin(num_workgroups) nw: vec3<u32>) {
  let i = flat(gid, nw);
  if (i >= p.planes * p.H * p.W) { return; }
  let ix = i % p.W;
  let iy = (i / p.W) % p.H;
  let pl = i / (p.W * p.H);
  var s = 0.0;
  for (var oy = (iy * p.oH) / p.H; oy < min(p.oH, ((iy + 1u) * p.oH + p.H - 1u) / p.H); oy++) {
    let y0 = win_start(oy, p.H, p.oH);
    let y1 = win_end(oy, p.H, p.oH);
    for (var ox = (ix * p.oW) / p.W; ox < min(p.oW, ((ix + 1u) * p.oW + p.W - 1u) / p.W); ox++) {
      let x0 = win_start(ox, p.W, p.oW);
      let x1 = win_end(ox, p.W, p.oW);
      s += ag[(pl * p.oH + oy) * p.oW + ox] / f32((y1 - y0) * (x1 - x0));
    }
  }
  adx[i] = s;
}

// PyTorch's bicubic (upsample_bicubic2d, align_corners = False, a = −0.75): output o of m reads
// inputs ⌊s⌋ − 1 … ⌊s⌋ + 2 of n, s = (n/m)·(o + 0.5) − 0.5 (not clamped for cubic), with
// weights from t = s − ⌊s⌋ and each input index clamped to [0, n − 1].
const A = -0.75;
fn cubic_near(x: f32) -> f32 { return ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0; }
fn cubic_far(x: f32) -> f32 { return ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A; }

struct Taps { first: i32, w: vec4<f32> }

// s = (n·(2o + 1) − m) / 2m exactly, so ⌊s⌋ and t = s − ⌊s⌋ come from integers with one rounding
// (PyTorch's float32 path rounds n/m first; float64 PyTorch agrees with this to ~1e-7).
fn taps(o: u32, n: u32, m: u32) -> Taps {
  let num = i32(n * (2u * o + 1u)) - i32(m);
  let den = i32(2u * m);
  let f = select(num / den, -((-num + den - 1) / den), num < 0);
  let t = f32(num - f * den) / f32(den);
  return Taps(f - 1, vec4(cubic_far(t + 1.0), cubic_near(t), cubic_near(1.0 - t),
                          cubic_far(2.0 - t)));
}

fn clamp_index(i: i32, n: u32) -> u32 { return u32(clamp(i, 0, i32(n) - 1)); }

/** The weight with which output o reads input i (clamped taps landing on i add up). */
fn tap_weight(o: u32, i: u32, n: u32, m: u32) -> f32 {
  let t = taps(o, n, m);
  var w = 0.0;
  for (var k = 0; k < 4; k++) {
    if (clamp_index(t.first + k, n) == i) { w += t.w[k]; }
  }
  return w;
}

/** Outputs of m that may read input i of n: taps span ⌊s⌋ − 1 … ⌊s⌋ + 2; one spare each side. */
fn first_reader(i: u32, n: u32, m: u32) -> u32 {
  let scale = f32(n) / f32(m);
  return u32(max(0.0, floor((f32(i) - 1.5) / scale - 0.5) - 1.0));
}
fn last_reader(i: u32, n: u32, m: u32) -> u32 {
  let scale = f32(n) / f32(m);
  return u32(min(f32(m - 1u), ceil((f32(i) + 2.5) / scale - 0.5) + 1.0));
}

@group(0) @binding(1) var<storage, read> cx: array<f32>;
@group(0) @binding(2) var<storage, read_write> cy: array<f32>;

@compute @workgroup_size(256)
fn bicubic(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let i = flat(gid, nw);
  if (i >= p.planes * p.oH * p.oW) { return; }
  let ox = i % p.oW;
  let oy = (i / p.oW) % p.oH;
  let pl = i / (p.oW * p.oH);
  let ty = taps(oy, p.H, p.oH);
  let tx = taps(ox, p.W, p.oW);
  var s = 0.0;
  for (var r = 0; r < 4; r++) {
    let row = (pl * p.H + clamp_index(ty.first + r, p.H)) * p.W;
    var v = 0.0;
    for (var c = 0; c < 4; c++) { v += tx.w[c] * cx[row + clamp_index(tx.first + c, p.W)]; }
    s += ty.w[r] * v;
  }
  cy[i] = s;
}

@group(0) @binding(1) var<storage, read> cg: array<f32>;
@group(0) @binding(2) var<storage, read_write> cdx: array<f32>;

@compute @workgroup_size(256)
fn bicubic_backward(@builtin(global_invocation_id) gid: vec3<u32>,
                    @builtin(num_workgroups) nw: vec3<u32>) {
  let i = flat(gid, nw);
  if (i >= p.planes * p.H * p.W) { return; }
  let ix = i % p.W;
  let iy = (i / p.W) % p.H;
  let pl = i / (p.W * p.H);
  let ox0 = first_reader(ix, p.W, p.oW);
  let ox1 = last_reader(ix, p.W, p.oW);
  var s = 0.0;
  for (var oy = first_reader(iy, p.H, p.oH); oy <= last_reader(iy, p.H, p.oH); oy++) {
    let wy = tap_weight(oy, iy, p.H, p.oH);
    if (wy == 0.0) { continue; }
    var v = 0.0;
    for (var ox = ox0; ox <= ox1; ox++) {
      v += tap_weight(ox, ix, p.W, p.oW) * cg[(pl * p.oH + oy) * p.oW + ox];
    }
    s += wy * v;
  }
  cdx[i] = s;
}
