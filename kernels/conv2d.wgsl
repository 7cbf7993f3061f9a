// conv2d as im2col + the tiled matmul (lib/tensor/conv2d.ts). These kernels move data between
// NCHW tensors and "column" matrices; the matmul does the arithmetic.
//
// A unit of work covers images [b0, b0 + nb) and output rows [oy0, oy0 + rows). Its columns are
// numbered q = b·rows·Wo + (oy − oy0)·Wo + ox (b relative to b0), and a column matrix of R rows
// is stored split along q into S blocks of KS columns: element (r, q) lives at
//   (q / KS)·R·KS + r·KS + q % KS,
// so each block is a contiguous [R, KS] matrix. The split gives the weight-gradient matmul
// (M = Cout, N = Cin·kh·kw, K = columns) S independent blocks to spread over the GPU. Columns
// q ≥ total (the last block's padding) are zeros.
//
// Each entry point declares exactly the bindings it uses, from 1 up: derived ("auto") layouts
// hold only those, in binding order.

struct P {
  Cin: u32, H: u32, W: u32, C: u32,          // C: the channels of the matrix rows (place/take)
  kh: u32, kw: u32, stride: u32, pt: u32, pl: u32,
  Ho: u32, Wo: u32,
  b0: u32, nb: u32, oy0: u32, rows: u32,
  S: u32, KS: u32, total: u32,
  iy0: u32, iy_rows: u32, has_bias: u32,
  fresh: u32,                                 // col2im: write dx instead of adding into it
}
@group(0) @binding(0) var<uniform> p: P;

fn flat(gid: vec3<u32>, nw: vec3<u32>) -> u32 { return gid.x + gid.y * nw.x * 256u; }

/** Offset of (r, q) in a split column matrix of R rows. */
fn col_at(r: u32, q: u32, R: u32) -> u32 { return (q / p.KS) * R * p.KS + r * p.KS + q % p.KS; }

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> cols: array<f32>;

// cols[(ci, ky, kx), q] = x[b0 + b, ci, oy·stride − pt + ky, ox·stride − pl + kx], 0 outside,
// with rows in the order of a weight [Cout, Cin, kh, kw] flattened to [Cout, Cin·kh·kw].
@compute @workgroup_size(256)
fn im2col(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let i = flat(gid, nw);
  let kk = p.kh * p.kw;
  let R = p.Cin * kk;
  if (i >= p.S * R * p.KS) { return; }
  let j = i % p.KS;
  let r = (i / p.KS) % R;
  let q = (i / (p.KS * R)) * p.KS + j;
  var v = 0.0;
  if (q < p.total) {
    let per = p.rows * p.Wo;
    let b = p.b0 + q / per;
    let oy = p.oy0 + (q % per) / p.Wo;
    let ox = q % p.Wo;
    let ci = r / kk;
    let ky = (r / p.kw) % p.kh;
    let kx = r % p.kw;
    let iy = i32(oy * p.stride + ky) - i32(p.pt);
    let ix = i32(ox * p.stride + kx) - i32(p.pl);
    if (iy >= 0 && iy < i32(p.H) && ix >= 0 && ix < i32(p.W)) {
      v = x[((b * p.Cin + ci) * p.H + u32(iy)) * p.W + u32(ix)];
    }
  }
  cols[i] = v;
}

@group(0) @binding(1) var<storage, read> dcols: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;

// The transpose of im2col, as a gather so it is deterministic: each input element of the unit's
// images, in rows [iy0, iy0 + iy_rows), adds the column entries that read it (or, with `fresh`,
// when one unit covers every row, writes their sum, so dx needs no zeroing first).
@compute @workgroup_size(256)
fn col2im(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let i = flat(gid, nw);
  if (i >= p.nb * p.Cin * p.iy_rows * p.W) { return; }
  let ix = i % p.W;
  let iy = p.iy0 + (i / p.W) % p.iy_rows;
  let ci = (i / (p.W * p.iy_rows)) % p.Cin;
  let b = i / (p.W * p.iy_rows * p.Cin);
  let R = p.Cin * p.kh * p.kw;
  var s = 0.0;
  for (var ky = 0u; ky < p.kh; ky++) {
    let ty = i32(iy + p.pt) - i32(ky);
    if (ty < 0 || u32(ty) % p.stride != 0u) { continue; }
    let oy = u32(ty) / p.stride;
    if (oy < p.oy0 || oy >= p.oy0 + p.rows) { continue; }
    for (var kx = 0u; kx < p.kw; kx++) {
      let tx = i32(ix + p.pl) - i32(kx);
      if (tx < 0 || u32(tx) % p.stride != 0u) { continue; }
      let ox = u32(tx) / p.stride;
      if (ox >= p.Wo) { continue; }
      let q = (b * p.rows + oy - p.oy0) * p.Wo + ox;
      s += dcols[col_at((ci * p.kh + ky) * p.kw + kx, q, R)];
    }
  }
  let o = (((p.b0 + b) * p.Cin + ci) * p.H + iy) * p.W + ix;
  if (p.fresh == 1u) { dx[o] = s; } else { dx[o] += s; }
}

@group(0) @binding(1) var<storage, read> ycols: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

// The matmul's [Cout, columns] result into the unit's place in y [B, Cout, Ho, Wo], plus bias.
@compute @workgroup_size(256)
fn place(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let i = flat(gid, nw);
  let per = p.rows * p.Wo;
  if (i >= p.nb * p.C * per) { return; }
  let j = i % per;
  let c = (i / per) % p.C;
  let b = i / (per * p.C);
  var v = ycols[col_at(c, b * per + j, p.C)];
  if (p.has_bias == 1u) { v += bias[c]; }
  y[((p.b0 + b) * p.C + c) * p.Ho * p.Wo + p.oy0 * p.Wo + j] = v;
}

@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> gcols: array<f32>;

// The unit's part of the output gradient g [B, Cout, Ho, Wo] as a split [Cout, columns] matrix.
@compute @workgroup_size(256)
fn take(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let i = flat(gid, nw);
  if (i >= p.S * p.C * p.KS) { return; }
  let j = i % p.KS;
  let c = (i / p.KS) % p.C;
  let q = (i / (p.KS * p.C)) * p.KS + j;
  var v = 0.0;
  if (q < p.total) {
    let per = p.rows * p.Wo;
    let b = q / per;
    v = g[((p.b0 + b) * p.C + c) * p.Ho * p.Wo + p.oy0 * p.Wo + q % per];
  }
  gcols[i] = v;
}

@group(0) @binding(1) var<storage, read> gy: array<f32>;
@group(0) @binding(2) var<storage, read_write> db: array<f32>;
var<workgroup> partial: array<f32, 256>;

// db[c] = Σ over images and pixels of gy [nb, C, Ho, Wo]: a workgroup per channel.
@compute @workgroup_size(256)
fn bias_grad(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let c = wid.x;
  let per = p.Ho * p.Wo;
  var s = 0.0;
  for (var b = 0u; b < p.nb; b++) {
    let base = (b * p.C + c) * per;
    for (var j = lid.x; j < per; j += 256u) { s += gy[base + j]; }
  }
  partial[lid.x] = s;
  workgroupBarrier();
  for (var h = 128u; h > 0u; h >>= 1u) {
    if (lid.x < h) { partial[lid.x] += partial[lid.x + h]; }
    workgroupBarrier();
  }
  if (lid.x == 0u) { db[c] = partial[0]; }
}
