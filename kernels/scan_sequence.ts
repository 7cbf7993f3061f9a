// Mamba-1 selective scan forward (DESIGN §4) as one pass: a thread per (batch, channel) walks the
// whole sequence with the channel's N states in named registers (naga spills private arrays),
//
//   h_t = exp(Δ_t·A) ⊙ h_{t-1} + Δ_t·B_t·u_t,  y_t = C_t · h_t,
//
// so the sum over states stays in the thread and nothing is computed twice (the chunked forward
// of kernels/scan.ts scans each chunk twice, carries chunk states through memory in between, and
// sums C·h in workgroup memory). Parallel over B × D, sequential over L, as state-spaces/mamba's
// CUDA forward is over its batch and channel blocks.
//
// Latency is hidden by issuing loads a whole chunk of LC steps ahead: while chunk c runs, each
// thread already holds chunk c+1's Δ and u in registers, and the workgroup copies chunk c+1's B
// and C (the same for all its channels) into the other half of a double buffer in workgroup
// memory, read back as vec4 broadcasts. One barrier per chunk.
//
// Every chunk's start state is written (when a gradient is wanted) in the layout the chunked
// backward of kernels/scan.ts reads: [B, nC, D, N] with LC-step chunks. The backward's carry of
// dh across chunks is the same walk in reverse time (sequenceGradCarryWgsl), in place of its
// chunk-local pass and carry pass.
import { LC } from "./scan.ts";

/** Channels (threads) per workgroup. */
export const SEQ_WG = 64;
/** The largest d_state this kernel keeps in registers; larger ones take the chunked forward. */
export const SEQ_MAX_N = 16;

const XYZW = ["x", "y", "z", "w"];
const steps = (f: (i: number) => string, reverse = false) =>
  Array.from({ length: LC }, (_, k) => f(reverse ? LC - 1 - k : k)).join("\n");
const stateList = (n: number) => Array.from({ length: n }, (_, k) => k);

/**
 * Staging of chunk c1's rows of the [B, L, N] matrices `globals` into the `nbuf` half of their
 * workgroup buffers (`Bm` → `Bs`): LC·N contiguous values each, shared out over the workgroup.
 * The loads come first (issued ahead), the stores after the chunk's arithmetic.
 */
function staging(n: number, globals: string[]) {
  const shares = Math.ceil((LC * n) / SEQ_WG);
  const js = Array.from({ length: shares }, (_, j) => j);
  const loads = js.map((j) => `
    let k${j} = tid + ${j * SEQ_WG}u;
    let gi${j} = bc0 + min(c1 * LC * N + k${j}, p.L * N - 1u);${
    globals.map((m) => `\n    let ${m}${j} = ${m}[gi${j}];`).join("")
  }`).join("");
  const stores = js.map((j) => `
    if (k${j} < LC * N) {
      let s = nbuf + (k${j} / N) * NV + (k${j} % N) / 4u;${
    globals.map((m) => `\n      ${m[0]}s[s][k${j} % N % 4u] = ${m}${j};`).join("")
  }
    }`).join("");
  const decls = globals.map((m) =>
    `var<workgroup> ${m[0]}s: array<vec4<f32>, ${2 * LC * Math.ceil(n / 4)}>;`
  ).join("\n");
  return { loads, stores, decls };
}

/**
 * Per step i of chunk cc: Δ (0 past L, which makes the step an identity of either recurrence)
 * and the channel's other value, `second` being its name and its load from index x.
 */
const stepLoads = (prefix: string, cc: string, second: string, load: string) =>
  steps((i) =>
    `  let ${prefix}t${i} = ${cc} * LC + ${i}u;
  let ${prefix}x${i} = (b * p.L + min(${prefix}t${i}, p.L - 1u)) * p.D + dd;
  let ${prefix}dt${i} = select(0.0, delta[${prefix}x${i}], ${prefix}t${i} < p.L);
  let ${prefix}${second}${i} = ${
      load.replaceAll("X", `${prefix}x${i}`).replaceAll("OK", `${prefix}t${i} < p.L`)
    };`
  );

/** Writes registers `${reg}0..N-1` at float offset k·N of `arr` (as vec4s when N % 4 = 0). */
const saveStates = (n: number, arr: string, reg: string) =>
  n % 4 === 0
    ? Array.from(
      { length: n / 4 },
      (_, j) =>
        `      ${arr}[k + ${j}u] = vec4<f32>(${
          XYZW.map((_, q) => `${reg}${4 * j + q}`).join(", ")
        });`,
    ).join("\n")
    : stateList(n).map((k) => `      ${arr}[k + ${k}u] = ${reg}${k};`).join("\n");

const header = (n: number) => {
  if (n < 1 || n > SEQ_MAX_N) throw new Error(`sequence scan: d_state ${n} out of range`);
  return `
const N = ${n}u;
const NV = ${Math.ceil(n / 4)}u;
const LC = ${LC}u;
const WS = ${SEQ_WG}u;
struct P { B: u32, L: u32, D: u32, nC: u32, has_h0: u32, save: u32 }
@group(0) @binding(0) var<uniform> p: P;`;
};

const entry = (n: number) =>
  `@compute @workgroup_size(${SEQ_WG})
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let d = wid.x * WS + tid;
  let b = wid.y;
  let live = d < p.D;
  let dd = min(d, p.D - 1u);
  let bc0 = b * p.L * N;
  // exp(Δ·A) = exp2(Δ·A·log2 e)
${stateList(n).map((k) => `  let a${k} = A[dd * N + ${k}u] * 1.4426950408889634;`).join("\n")}`;

/** One pass of the forward: y [B, L, D], chunk start states and the final state [B, D, N]. */
export function sequenceScanWgsl(n: number): string {
  const nv = Math.ceil(n / 4);
  const states = stateList(n);
  const stage = staging(n, ["Bm", "Cm"]);
  const step = (i: number) => {
    const lines = [`    {`, `      let dt = dt${i};`, `      let du = dt * u${i};`];
    for (let j = 0; j < nv; j++) {
      lines.push(`      let bv${j} = Bs[buf + ${i * nv + j}u];`);
      lines.push(`      let cv${j} = Cs[buf + ${i * nv + j}u];`);
    }
    for (const k of states) {
      lines.push(`      h${k} = exp2(dt * a${k}) * h${k} + du * bv${k >> 2}.${XYZW[k & 3]};`);
    }
    const dots = Array.from({ length: nv }, (_, j) => {
      const ks = states.slice(4 * j, 4 * j + 4);
      return ks.length === 4
        ? `dot(cv${j}, vec4<f32>(${ks.map((k) => `h${k}`).join(", ")}))`
        : ks.map((k) => `cv${j}.${XYZW[k & 3]} * h${k}`).join(" + ");
    });
    lines.push(`      let yt = ${dots.join(" + ")};`);
    lines.push(`      let t = c * LC + ${i}u;`);
    lines.push(`      if (live && t < p.L) { y[(b * p.L + t) * p.D + d] = yt; }`);
    lines.push(`    }`);
    return lines.join("\n");
  };
  return `${header(n)}
@group(0) @binding(1) var<storage, read> u: array<f32>;
@group(0) @binding(2) var<storage, read> delta: array<f32>;
@group(0) @binding(3) var<storage, read> A: array<f32>;
@group(0) @binding(4) var<storage, read> Bm: array<f32>;
@group(0) @binding(5) var<storage, read> Cm: array<f32>;
@group(0) @binding(6) var<storage, read> h_init: array<f32>;
@group(0) @binding(7) var<storage, read_write> y: array<f32>;
@group(0) @binding(8) var<storage, read_write> start: array<${n % 4 ? "f32" : "vec4<f32>"}>;
@group(0) @binding(9) var<storage, read_write> state: array<f32>;

// B and C of a chunk, [2 buffers][LC steps][NV vec4s of states].
${stage.decls}

${entry(n)}
  let from_h0 = p.has_h0 == 1u;
${
    states.map((k) => `  var h${k} = select(0.0, h_init[(b * p.D + dd) * N + ${k}u], from_h0);`)
      .join("\n")
  }
  // Chunk 0's B and C to buffer 0, its Δ and u to registers.
  {
    let c1 = 0u;
    let nbuf = 0u;${stage.loads}${stage.stores}
  }
${stepLoads("", "0u", "u", "u[X]").replace(/let (dt|u)(\d+) =/g, "var $1$2 =")}
  workgroupBarrier();
  for (var c = 0u; c < p.nC; c++) {
    let buf = (c & 1u) * LC * NV;
    let nbuf = LC * NV - buf;
    // Issue chunk c+1's loads before chunk c's arithmetic (past the end they are clamped, unused).
    let c1 = c + 1u;
${stepLoads("n", "c1", "u", "u[X]")}${stage.loads}
    if (p.save == 1u && live) {
      let k = ((b * p.nC + c) * p.D + d) * ${n % 4 ? "N" : "NV"};
${saveStates(n, "start", "h")}
    }
${steps(step)}${stage.stores}
    workgroupBarrier();
${steps((i) => `    dt${i} = ndt${i};\n    u${i} = nu${i};`)}
  }
  if (live) {
${states.map((k) => `    state[(b * p.D + d) * N + ${k}u] = h${k};`).join("\n")}
  }
}`;
}

/**
 * The backward's carry of dh across chunks, walking from the end: g = a_{t+1}·dh_{t+1} per state,
 * dh_t = C_t·dy_t + g, so g ← exp(Δ_t·A)·(C_t·dy_t + g). Writes each chunk's incoming g (the value
 * before its last step) to carry_in [B, nC, D, N], which chunkGradsWgsl of kernels/scan.ts reads.
 */
export function sequenceGradCarryWgsl(n: number): string {
  const nv = Math.ceil(n / 4);
  const states = stateList(n);
  const stage = staging(n, ["Cm"]);
  const step = (i: number) => {
    const lines = [`    {`, `      let dt = dt${i};`, `      let g = dy${i};`];
    for (let j = 0; j < nv; j++) lines.push(`      let cv${j} = Cs[buf + ${i * nv + j}u];`);
    for (const k of states) {
      lines.push(`      g${k} = exp2(dt * a${k}) * (cv${k >> 2}.${XYZW[k & 3]} * g + g${k});`);
    }
    lines.push(`    }`);
    return lines.join("\n");
  };
  return `${header(n)}
@group(0) @binding(1) var<storage, read> delta: array<f32>;
@group(0) @binding(2) var<storage, read> A: array<f32>;
@group(0) @binding(3) var<storage, read> Cm: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> carry_in: array<${n % 4 ? "f32" : "vec4<f32>"}>;

// C of a chunk, [2 buffers][LC steps][NV vec4s of states].
${stage.decls}

${entry(n)}
${states.map((k) => `  var g${k} = 0.0;`).join("\n")}
  // The last chunk's C to buffer 0, its Δ and dy to registers.
  {
    let c1 = p.nC - 1u;
    let nbuf = 0u;${stage.loads}${stage.stores}
  }
${
    stepLoads("", "(p.nC - 1u)", "dy", "select(0.0, dy[X], OK)").replace(
      /let (dt|dy)(\d+) =/g,
      "var $1$2 =",
    )
  }
  workgroupBarrier();
  for (var r = 0u; r < p.nC; r++) {
    let c = p.nC - 1u - r;
    let buf = (r & 1u) * LC * NV;
    let nbuf = LC * NV - buf;
    // Issue chunk c-1's loads before chunk c's arithmetic (at c = 0 they are unused).
    let c1 = max(c, 1u) - 1u;
${stepLoads("n", "c1", "dy", "select(0.0, dy[X], OK)")}${stage.loads}
    if (live) {
      let k = ((b * p.nC + c) * p.D + d) * ${n % 4 ? "N" : "NV"};
${saveStates(n, "carry_in", "g")}
    }
${steps(step, true)}${stage.stores}
    workgroupBarrier();
${steps((i) => `    dt${i} = ndt${i};\n    dy${i} = ndy${i};`)}
  }
}`;
}
