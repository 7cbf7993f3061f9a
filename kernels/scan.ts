// Mamba-1 selective scan (DESIGN §4), chunked over the sequence so that every (batch, channel,
// state, chunk) has its own thread:
//
//   a_t = exp(Δ_t·A),  h_t = a_t ⊙ h_{t-1} + Δ_t·B_t·u_t,  y_t = C_t · h_t
//
// Forward: (1) each chunk scans from zero, giving its decay product P and end state; (2) one
// thread per (b, d, n) carries states across chunks, saving each chunk's start state (the only
// states kept for backward); (3) each chunk rescans from its true start and writes y, summing
// C·h over the states in workgroup memory.
// Backward mirrors it in reverse time: (1) each chunk's local dh carried out of its start, (2) a
// reverse carry across chunks, (3) each chunk recomputes its h_{t-1} into LC named registers
// (naga spills private arrays, so the source is unrolled) and walks back, producing du, dΔ, dA and
// per-workgroup partial sums of dB and dC (no float atomics in WGSL).
//
// Layouts: u, Δ, y [B, L, D]; B, C [B, L, N]; A [D, N]; chunk states [B, nC, D, N].

/** Time steps per chunk (and registers of saved history per thread in the backward). */
export const LC = 16;
/** Backward steps whose terms share one reduction: 4 arrays × 256 × G floats = 32 KiB at 8. */
const G = 8;

const HEADER = (n: number) => /* wgsl */ `
const N = ${n}u;
const DG = ${256 / n}u;
const LC = ${LC}u;
struct P { B: u32, L: u32, D: u32, nC: u32, has_h0: u32 }
@group(0) @binding(0) var<uniform> p: P;
fn state_index(b: u32, c: u32, d: u32, n: u32) -> u32 { return ((b * p.nC + c) * p.D + d) * N + n; }
`;

type StepValue = "dt" | "u" | "B" | "C" | "dy";

/**
 * Loads of every step of a chunk, issued before any arithmetic so that their latencies overlap
 * (a loop would wait for each step's loads in turn). Steps past L read Δ = 0 and dy = 0, which
 * makes them identities of the recurrence: no branches are needed.
 */
function preload(values: StepValue[], channel: string): string {
  const lines: string[] = [];
  for (let i = 0; i < LC; i++) {
    lines.push(`  let t${i} = c * LC + ${i}u;`);
    lines.push(`  let ok${i} = t${i} < p.L;`);
    lines.push(`  let x${i} = (b * p.L + min(t${i}, p.L - 1u)) * p.D + ${channel};`);
    lines.push(`  let bc${i} = (b * p.L + min(t${i}, p.L - 1u)) * N + n;`);
    for (const v of values) {
      const load = {
        dt: `select(0.0, delta[x${i}], ok${i})`,
        u: `u[x${i}]`,
        B: `Bm[bc${i}]`,
        C: `Cm[bc${i}]`,
        dy: `select(0.0, dy[x${i}], ok${i})`,
      }[v];
      lines.push(`  let ${v}${i} = ${load};`);
    }
  }
  return lines.join("\n");
}

const eachStep = (f: (i: number) => string, reverse = false) =>
  Array.from({ length: LC }, (_, k) => f(reverse ? LC - 1 - k : k)).join("\n");

/**
 * The entry point of the per-chunk passes: thread (n, dl) of workgroup (channel group, chunk c,
 * batch b). Threads past the last channel (live = false) read channel D-1 and write nothing, so
 * passes with barriers keep every thread.
 */
const chunkEntry = (n: number) =>
  `@compute @workgroup_size(${n}, ${256 / n})
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let n = lid.x;
  let dl = lid.y;
  let d = wid.x * DG + dl;
  let c = wid.y;
  let b = wid.z;
  let live = d < p.D;
  let dd = min(d, p.D - 1u);
  let a_dn = A[dd * N + n];`;

/** Pass 1 of the forward: per chunk, decay product and end state from a zero start. */
export function chunkStateWgsl(n: number): string {
  return `${HEADER(n)}
@group(0) @binding(1) var<storage, read> u: array<f32>;
@group(0) @binding(2) var<storage, read> delta: array<f32>;
@group(0) @binding(3) var<storage, read> A: array<f32>;
@group(0) @binding(4) var<storage, read> Bm: array<f32>;
@group(0) @binding(5) var<storage, read_write> decay: array<f32>;
@group(0) @binding(6) var<storage, read_write> h_end: array<f32>;

${chunkEntry(n)}
  if (!live) { return; }
${preload(["dt", "u", "B"], "d")}
  var h = 0.0;
  var prod = 1.0;
${
    eachStep((i) =>
      `  { let a = exp(dt${i} * a_dn); h = a * h + dt${i} * B${i} * u${i}; prod *= a; }`
    )
  }
  decay[state_index(b, c, d, n)] = prod;
  h_end[state_index(b, c, d, n)] = h;
}`;
}

/**
 * Pass 2 (forward and backward): a sequential carry over chunks, one thread per (b, d, n).
 * Forward: start[c] = s; s = decay[c]·s + local[c], from s = h0 (or 0); the last s is the final
 * state. Backward (reverse = true): the same recurrence from the last chunk down, from 0.
 */
export function carryWgsl(n: number, reverse: boolean): string {
  const loop = reverse
    ? "for (var k = 0u; k < p.nC; k++) { let c = p.nC - 1u - k;"
    : "for (var c = 0u; c < p.nC; c++) {";
  return `${HEADER(n)}
@group(0) @binding(1) var<storage, read> decay: array<f32>;
@group(0) @binding(2) var<storage, read> local_: array<f32>;
@group(0) @binding(3) var<storage, read> h0: array<f32>;
@group(0) @binding(4) var<storage, read_write> start: array<f32>;
@group(0) @binding(5) var<storage, read_write> final_: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let i = gid.x + gid.y * nw.x * 256u;
  if (i >= p.B * p.D * N) { return; }
  let n = i % N;
  let d = (i / N) % p.D;
  let b = i / (N * p.D);
  var s = select(0.0, h0[i], p.has_h0 == 1u);
  ${loop}
    let k = state_index(b, c, d, n);
    start[k] = s;
    s = decay[k] * s + local_[k];
  }
  final_[i] = s;
}`;
}

/**
 * Pass 3 of the forward: rescan each chunk from its true start, y_t = Σ_n C_t[n]·h_t[n]. The
 * chunk's C·h terms go to workgroup memory and are summed once per chunk, one output a thread
 * (a single barrier instead of two per step).
 */
export function chunkOutputWgsl(n: number): string {
  return `${HEADER(n)}
@group(0) @binding(1) var<storage, read> u: array<f32>;
@group(0) @binding(2) var<storage, read> delta: array<f32>;
@group(0) @binding(3) var<storage, read> A: array<f32>;
@group(0) @binding(4) var<storage, read> Bm: array<f32>;
@group(0) @binding(5) var<storage, read> Cm: array<f32>;
@group(0) @binding(6) var<storage, read> start: array<f32>;
@group(0) @binding(7) var<storage, read_write> y: array<f32>;

var<workgroup> terms: array<array<array<f32, N>, LC>, DG>;

${chunkEntry(n)}
  var h = select(0.0, start[state_index(b, c, dd, n)], live);
${preload(["dt", "u", "B", "C"], "dd")}
${
    eachStep((i) =>
      `  h = exp(dt${i} * a_dn) * h + dt${i} * B${i} * u${i};\n  terms[dl][${i}][n] = C${i} * h;`
    )
  }
  workgroupBarrier();
  // Output o: step o / DG, channel o % DG, so neighbouring threads write neighbouring channels.
  for (var o = lid.y * N + lid.x; o < DG * LC; o += 256u) {
    let i = o / DG;
    let ol = o % DG;
    let od = wid.x * DG + ol;
    let t = c * LC + i;
    if (od < p.D && t < p.L) {
      var s = 0.0;
      for (var k = 0u; k < N; k++) { s += terms[ol][i][k]; }
      y[(b * p.L + t) * p.D + od] = s;
    }
  }
}`;
}

/** Pass 1 of the backward: each chunk's local dh, carried out of its first step (a_s·dh_s). */
export function chunkGradStateWgsl(n: number): string {
  return `${HEADER(n)}
@group(0) @binding(1) var<storage, read> delta: array<f32>;
@group(0) @binding(2) var<storage, read> A: array<f32>;
@group(0) @binding(3) var<storage, read> Cm: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> decay: array<f32>;
@group(0) @binding(6) var<storage, read_write> carry_out: array<f32>;

${chunkEntry(n)}
  if (!live) { return; }
${preload(["dt", "C", "dy"], "d")}
  var carry = 0.0;  // a_{t+1}·dh_{t+1}
  var prod = 1.0;
${
    eachStep(
      (i) => `  { let a = exp(dt${i} * a_dn); carry = a * (C${i} * dy${i} + carry); prod *= a; }`,
      true,
    )
  }
  decay[state_index(b, c, d, n)] = prod;
  carry_out[state_index(b, c, d, n)] = carry;
}`;
}

/**
 * Pass 3 of the backward. Each thread recomputes h_{t-1} for its chunk into LC named registers,
 * then walks back from the carried dh, writing du, dΔ (summed over states in workgroup memory),
 * dA partials per (b, chunk), and dB, dC partials per (b, channel group).
 */
export function chunkGradsWgsl(n: number, swizzle = true): string {
  const hist = Array.from({ length: LC }, (_, i) => `hp${i}`);
  const forward = eachStep((i) =>
    `  let hp${i} = h;\n  h = exp(dt${i} * a_dn) * h + dt${i} * B${i} * u${i};`
  );
  // Steps walk back from LC-1 to 0 in groups of G; each group's per-step terms are summed in
  // workgroup memory after the group (2 barriers per G steps instead of 2 per step).
  const reduceGroup = (base: number) => `
    workgroupBarrier();
    for (var o = tid; o < DG * G; o += 256u) {
      let gi = o / DG;
      let ol = o % DG;
      let od = wid.x * DG + ol;
      let t = c * LC + ${base}u + gi;
      if (od < p.D && t < p.L) {
        var su = 0.0;
        var sd = 0.0;
        for (var j = 0u; j < N; j++) {
          let js = ${swizzle ? "(j + ol) % N" : "j"};
          su += t_du[ol][${swizzle ? "(gi + ol) % G" : "gi"}][js];
          sd += t_dd[ol][${swizzle ? "(gi + ol) % G" : "gi"}][js];
        }
        let x = (b * p.L + t) * p.D + od;
        du[x] = su;
        ddelta[x] = sd;
      }
    }
    for (var o = tid; o < G * N; o += 256u) {
      let gi = o / N;
      let on = o % N;
      let t = c * LC + ${base}u + gi;
      if (t < p.L) {
        var sb = 0.0;
        var sc = 0.0;
        for (var j = 0u; j < DG; j++) {
          let gs = ${swizzle ? "(gi + j) % G" : "gi"};
          sb += t_dB[j][gs][on];
          sc += t_dC[j][gs][on];
        }
        let k = ((b * p.nG + wid.x) * p.L + t) * N + on;
        dB_part[k] = sb;
        dC_part[k] = sc;
      }
    }
    workgroupBarrier();`;
  const backward = hist.map((_, k) => {
    const i = LC - 1 - k;
    const gi = i % G;
    const row = swizzle ? `(${gi}u + dl) % G` : `${gi}`;
    return `
  {
    let valid = ok${i};
    let dt = dt${i};
    let ut = u${i};
    let bt = B${i};
    let g = select(0.0, dy${i}, live);
    let a = exp(dt * a_dn);
    let h_t = a * ${hist[i]} + dt * bt * ut;
    let dh = select(0.0, C${i} * g + carry, valid);
    t_du[dl][${row}][ns] = dh * dt * bt;
    t_dd[dl][${row}][ns] = dh * (a_dn * a * ${hist[i]} + bt * ut);
    t_dB[dl][${row}][n] = select(0.0, dh * dt * ut, live);
    t_dC[dl][${row}][n] = g * h_t;
    dA_acc += dh * dt * a * ${hist[i]};
    carry = select(carry, a * dh, valid);
  }${gi === 0 ? reduceGroup(i) : ""}`;
  }).join("");
  return `${HEADER(n).replace("has_h0: u32 }", "has_h0: u32, nG: u32 }")}
@group(0) @binding(1) var<storage, read> u: array<f32>;
@group(0) @binding(2) var<storage, read> delta: array<f32>;
@group(0) @binding(3) var<storage, read> A: array<f32>;
@group(0) @binding(4) var<storage, read> Bm: array<f32>;
@group(0) @binding(5) var<storage, read> Cm: array<f32>;
@group(0) @binding(6) var<storage, read> start: array<f32>;
@group(0) @binding(7) var<storage, read> carry_in: array<f32>;
@group(0) @binding(8) var<storage, read> dy: array<f32>;
@group(0) @binding(9) var<storage, read_write> du: array<f32>;
@group(0) @binding(10) var<storage, read_write> ddelta: array<f32>;
@group(0) @binding(11) var<storage, read_write> dA_part: array<f32>;
@group(0) @binding(12) var<storage, read_write> dB_part: array<f32>;
@group(0) @binding(13) var<storage, read_write> dC_part: array<f32>;

const G = ${G}u;
// With swizzle, step gi of channel dl is stored at row (gi + dl) % G, and in t_du and t_dd state n
// at column (n + dl) % N: neighbouring channels' stores, the sums over states (a column of 16
// channels read at once) and the sums over channels then each meet every memory bank once (at
// N = 16), where plain indices cost 2-way conflicts on stores and 16-way on the sums over states.
var<workgroup> t_du: array<array<array<f32, N>, G>, DG>;
var<workgroup> t_dd: array<array<array<f32, N>, G>, DG>;
var<workgroup> t_dB: array<array<array<f32, N>, G>, DG>;
var<workgroup> t_dC: array<array<array<f32, N>, G>, DG>;

${chunkEntry(n)}
  var h = start[state_index(b, c, dd, n)];
${preload(["dt", "u", "B", "C", "dy"], "dd")}
${forward}
  var carry = carry_in[state_index(b, c, dd, n)];
  var dA_acc = 0.0;
  let tid = lid.y * N + lid.x;
  let ns = ${swizzle ? "(n + dl) % N" : "n"};
${backward}
  if (live) { dA_part[state_index(b, c, d, n)] = dA_acc; }
}`;
}
