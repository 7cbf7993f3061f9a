// Elementwise ops as one table of forward and backward expressions, from which the WGSL is
// generated (webgpu-torch's way): a new op is a row here, not a shader file.
//
// Expressions are WGSL over f32 values: unary ops see `x` (input), `y` (output, in backward),
// `g` (output gradient) and `alpha` (a scalar parameter); binary ops see `a`, `b`, `g`.

export interface UnaryOp {
  forward: string;
  /** d(loss)/dx given x, y = forward(x) and g = d(loss)/dy. */
  backward: string;
}

export interface BinaryOp {
  forward: string;
  /** Gradients of a and b at full (broadcast) shape; reduced to each input's shape afterwards. */
  da: string;
  db: string;
}

// Helpers shared by the expressions (and by kernels that must agree with them, e.g. mamba_step.ts).
// erfc follows Numerical Recipes' Chebyshev fit (relative error < 1.2e-7 everywhere, so the GELU
// tails stay accurate).
export const PRELUDE = /* wgsl */ `
fn sigmoid_(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }
// log1p for u in [0, 1] as 2·atanh(u / (2 + u)) by its series: GPU log() is only accurate to an
// absolute 2^-21 near 1, which would ruin softplus for x ≪ 0.
fn log1p_(u: f32) -> f32 {
  let s = u / (2.0 + u);
  let q = s * s;
  return 2.0 * s * (1.0 + q * (1.0 / 3.0 + q * (0.2 + q * (1.0 / 7.0 + q * (1.0 / 9.0 + q * (1.0 / 11.0 +
    q * (1.0 / 13.0 + q * (1.0 / 15.0 + q * (1.0 / 17.0 + q / 19.0)))))))));
}
// log: log1p_(x − 1) on [0.5, 2] (x − 1 is exact there), where the builtin's absolute error
// becomes a large relative one as log x → 0 (Mesa's: 73% at 1 − 6e-8).
fn log_(x: f32) -> f32 { return select(log(x), log1p_(x - 1.0), x > 0.5 && x < 2.0); }
fn softplus_(x: f32) -> f32 { if (x > 20.0) { return x; } return max(x, 0.0) + log1p_(exp(-abs(x))); }
fn erfc_(x: f32) -> f32 {
  let z = abs(x);
  let t = 1.0 / (1.0 + 0.5 * z);
  let r = t * exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
    t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
    t * (-0.82215223 + t * 0.17087277)))))))));
  return select(2.0 - r, r, x >= 0.0);
}
fn phi_(x: f32) -> f32 { return 0.5 * erfc_(-x * 0.7071067811865476); }
// tanh: its Taylor series below |x| = 0.4 (next term < 4e-9 relative), where a builtin computed
// from exp(2x) − 1 cancels (Mesa's: 6e-5 relative at 0.05, 2% at 1e-6); the builtin above.
fn tanh_(x: f32) -> f32 {
  let x2 = x * x;
  let series = x * (1.0 + x2 * (-0.33333333333 + x2 * (0.13333333333 + x2 * (-0.05396825397 +
    x2 * (0.02186948854 + x2 * (-0.00886323553 + x2 * 0.00359212804))))));
  return select(tanh(clamp(x, -15.0, 15.0)), series, abs(x) < 0.4);
}
// 1 - tanh² without the cancellation of 1 - y² when |x| is large.
fn sech2_(x: f32) -> f32 { let e = exp(-2.0 * abs(x)); return 4.0 * e / ((1.0 + e) * (1.0 + e)); }
`;

export const UNARY: Record<string, UnaryOp> = {
  neg: { forward: "-x", backward: "-g" },
  scale: { forward: "alpha * x", backward: "alpha * g" },
  addScalar: { forward: "x + alpha", backward: "g" },
  exp: { forward: "exp(x)", backward: "g * y" },
  log: { forward: "log_(x)", backward: "g / x" },
  sqrt: { forward: "sqrt(x)", backward: "g * 0.5 / y" },
  rsqrt: { forward: "inverseSqrt(x)", backward: "-0.5 * g * y * y * y" },
  square: { forward: "x * x", backward: "2.0 * g * x" },
  relu: { forward: "max(x, 0.0)", backward: "select(0.0, g, x > 0.0)" },
  abs: { forward: "abs(x)", backward: "g * sign(x)" },
  // σ(x)·σ(−x), not y·(1 − y): 1 − y cancels for large x (5e-4 relative off at x = 9).
  sigmoid: { forward: "sigmoid_(x)", backward: "g * sigmoid_(x) * sigmoid_(-x)" },
  tanh: { forward: "tanh_(x)", backward: "g * sech2_(x)" },
  silu: {
    forward: "x * sigmoid_(x)",
    backward: "g * (sigmoid_(x) * (1.0 + x * (1.0 - sigmoid_(x))))",
  },
  gelu: {
    forward: "x * phi_(x)",
    backward: "g * (phi_(x) + x * 0.3989422804014327 * exp(-0.5 * x * x))",
  },
  softplus: { forward: "softplus_(x)", backward: "select(g * sigmoid_(x), g, x > 20.0)" },
};

export const BINARY: Record<string, BinaryOp> = {
  add: { forward: "a + b", da: "g", db: "g" },
  sub: { forward: "a - b", da: "g", db: "-g" },
  mul: { forward: "a * b", da: "g * b", db: "g * a" },
  div: { forward: "a / b", da: "g / b", db: "-g * a / (b * b)" },
};

/** WGSL storage type of a dtype, and the `enable` line it needs. */
function storage(dtype: "f32" | "f16") {
  return { t: dtype, enable: dtype === "f16" ? "enable f16;\n" : "" };
}

// Broadcast indexing: shapes are collapsed to rank ≤ 6 on the host; each input has its own
// strides (0 on broadcast dims). Dim 0's size is implied by n.
export const MAX_RANK = 6;
const INDEX = /* wgsl */ `
struct P { n: u32, d1: u32, d2: u32, d3: u32, d4: u32, d5: u32,
  sa0: u32, sa1: u32, sa2: u32, sa3: u32, sa4: u32, sa5: u32,
  sb0: u32, sb1: u32, sb2: u32, sb3: u32, sb4: u32, sb5: u32, alpha: f32 }
@group(0) @binding(0) var<uniform> p: P;
struct Offsets { a: u32, b: u32 }
fn offsets(i: u32) -> Offsets {
  var r = i;
  let c5 = r % p.d5; r /= p.d5;
  let c4 = r % p.d4; r /= p.d4;
  let c3 = r % p.d3; r /= p.d3;
  let c2 = r % p.d2; r /= p.d2;
  let c1 = r % p.d1; let c0 = r / p.d1;
  return Offsets(
    c0 * p.sa0 + c1 * p.sa1 + c2 * p.sa2 + c3 * p.sa3 + c4 * p.sa4 + c5 * p.sa5,
    c0 * p.sb0 + c1 * p.sb1 + c2 * p.sb2 + c3 * p.sb3 + c4 * p.sb4 + c5 * p.sb5);
}
`;

const MAIN = `@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let i = gid.x + gid.y * nw.x * 256u;
  if (i >= p.n) { return; }`;

/** Forward of a unary op: out[i] = f(x[i]) (uniform layout as INDEX; only n and alpha are used). */
export function unaryForwardWgsl(op: string, dtype: "f32" | "f16"): string {
  const { t, enable } = storage(dtype);
  return `${enable}${INDEX}${PRELUDE}
@group(0) @binding(1) var<storage, read> xs: array<${t}>;
@group(0) @binding(2) var<storage, read_write> out: array<${t}>;
${MAIN}
  let x = f32(xs[i]); let alpha = p.alpha;
  out[i] = ${t}(${UNARY[op].forward});
}`;
}

export function unaryBackwardWgsl(op: string, dtype: "f32" | "f16"): string {
  const { t, enable } = storage(dtype);
  return `${enable}${INDEX}${PRELUDE}
@group(0) @binding(1) var<storage, read> xs: array<${t}>;
@group(0) @binding(2) var<storage, read> ys: array<${t}>;
@group(0) @binding(3) var<storage, read> gs: array<${t}>;
@group(0) @binding(4) var<storage, read_write> out: array<${t}>;
${MAIN}
  let x = f32(xs[i]); let y = f32(ys[i]); let g = f32(gs[i]); let alpha = p.alpha;
  _ = x; _ = y;
  out[i] = ${t}(${UNARY[op].backward});
}`;
}

/** Forward of a binary op with broadcasting. */
export function binaryForwardWgsl(op: string, dtype: "f32" | "f16"): string {
  const { t, enable } = storage(dtype);
  return `${enable}${INDEX}
@group(0) @binding(1) var<storage, read> as_: array<${t}>;
@group(0) @binding(2) var<storage, read> bs: array<${t}>;
@group(0) @binding(3) var<storage, read_write> out: array<${t}>;
${MAIN}
  let o = offsets(i);
  let a = f32(as_[o.a]);
  let b = f32(bs[o.b]);
  out[i] = ${t}(${BINARY[op].forward});
}`;
}

/** One input's gradient of a binary op at the broadcast shape (`which` is "da" or "db"). */
export function binaryBackwardWgsl(op: string, which: "da" | "db", dtype: "f32" | "f16"): string {
  const { t, enable } = storage(dtype);
  return `${enable}${INDEX}
@group(0) @binding(1) var<storage, read> as_: array<${t}>;
@group(0) @binding(2) var<storage, read> bs: array<${t}>;
@group(0) @binding(3) var<storage, read> gs: array<${t}>;
@group(0) @binding(4) var<storage, read_write> out: array<${t}>;
${MAIN}
  let o = offsets(i);
  let a = f32(as_[o.a]);
  let b = f32(bs[o.b]);
  let g = f32(gs[i]);
  _ = a; _ = b;
  out[i] = ${t}(${BINARY[op][which]});
}`;
}

/**
 * Mamba's output gate in one pass (generation's, without a backward): out[r, c] = (y[r, c] +
 * u[r, c]·D[c])·silu(z) over rows r of width di, z = xz[r, di + c] read in place from the in_proj
 * output [rows, 2·di]. Silu is the table's expression, so the result is the composed ops' own.
 */
export function mambaGateWgsl(): string {
  return `struct P { n: u32, di: u32 }
@group(0) @binding(0) var<uniform> p: P;
${PRELUDE}
@group(0) @binding(1) var<storage, read> ys: array<f32>;
@group(0) @binding(2) var<storage, read> us: array<f32>;
@group(0) @binding(3) var<storage, read> ds: array<f32>;
@group(0) @binding(4) var<storage, read> xz: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
${MAIN}
  let c = i % p.di;
  let x = xz[(i / p.di) * 2u * p.di + p.di + c];
  out[i] = (ys[i] + us[i] * ds[c]) * (${UNARY.silu.forward});
}`;
}

/** out[i] = x[strided offset of i]: permutes and other strided copies (any 32-bit dtype, or f16). */
export function stridedCopyWgsl(word: "u32" | "f16"): string {
  return `${word === "f16" ? "enable f16;\n" : ""}${INDEX}
@group(0) @binding(1) var<storage, read> xs: array<${word}>;
@group(0) @binding(2) var<storage, read_write> out: array<${word}>;
${MAIN}
  out[i] = xs[offsets(i).a];
}`;
}
