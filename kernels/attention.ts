// Flash attention (forward, dQ, dK/dV), generated as WGSL for one padded head dim.
//
// Layout: q, k, v, o and their gradients are [B, rows, H, Dh] row-major — what a Linear layer
// produces, viewed with the heads split out, so no permute is needed. K/V may live in a larger
// buffer (a KV cache of kv_rows rows per batch) of which the first sk rows are keys.
// lse and delta are [B, H, Sq]. lse is stored in base 2: lse2 = log2 Σ_k exp2(scale·log2(e)·q·k).
//
// Mask (DESIGN.md §4, expressed generally): a key is visible to a query iff
// keyLevel[b][key] <= level[query]; PAD keys carry level 0xffffffff and are never visible. `pos`
// holds three rows of length mask_len indexed by position: level, keyEnd (one past the last key
// any query at that level may see) and queryBegin (the first position whose level admits a key
// at this position). Tiles outside those bounds are skipped, which is what makes block-causal
// and causal masks cheap. Query i sits at position q_start + i; key j at position j.
//
// Each workgroup (256 threads, 16×16) owns a 64-row tile and walks the other side in 64-column
// tiles. Thread (ty, tx) holds rows ty·4..ty·4+3 × columns tx·4..tx·4+3 of the 64×64 score
// tile, and, for the 64×Dh accumulators, the same rows × dims g·64 + tx·4..+3. Score tiles are
// inner products over Dh streamed through workgroup memory in chunks (stored d-major, so a
// thread reads its 4 rows as one vec4); the 64×64 tile of probabilities (or dS) then goes to
// workgroup memory and multiplies a streamed chunk of V, K, Q or dO rows. Accumulators are named
// vec4 variables in unrolled code (naga spills private arrays; see kernels/matmul.ts).
//
// Empty rows (no visible key) keep m = NEG and l = 0: they output 0 and get lse2 = NO_LSE, so
// the backward's exp2(s - lse2) is 0 there and their gradients vanish instead of turning NaN.

export const TILE = 64;
const THREADS = 256;
const NEG = "-1.0e30";
const NO_LSE = "1.0e30";
/** Workgroup staging buffer: 32 rows of 16 vec4 (8 KiB), shared by every phase. */
const STAGE_ROWS = 32;
const C = ["x", "y", "z", "w"];

export type FlashKernel = "forward" | "dq" | "dkdv";

/** Dh rounded up to the accumulator granularity (64 dims: 16 threads × vec4). */
export function paddedHeadDim(dh: number): number {
  return Math.max(64, Math.ceil(dh / 64) * 64);
}

/** Uniform block, in order: see flashParams. */
export interface FlashParams {
  heads: number;
  headDim: number;
  sq: number;
  sk: number;
  qRows: number;
  kvRows: number;
  qStart: number;
  maskLength: number;
  scale: number;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const bits = (x: number) => (f32[0] = x, u32[0]);

export function packFlashParams(p: FlashParams): number[] {
  return [
    p.heads,
    p.headDim / 4,
    p.sq,
    p.sk,
    p.qRows,
    p.kvRows,
    p.qStart,
    p.maskLength,
    bits(p.scale * Math.LOG2E),
    bits(p.scale),
  ];
}

interface Operand {
  /** WGSL loader function. */
  fn: string;
  /** First row of the tile. */
  row0: string;
}

/** Storage bindings from binding 1 (0 is the uniform block); the last OUTPUTS are written. */
const INPUTS = ["q", "k", "v", "pos", "keys"];
const GRAD_INPUTS = [...INPUTS, "dout", "lse", "delta"];
const BINDINGS: Record<FlashKernel, string[]> = {
  forward: [...INPUTS, "o", "lse"],
  dq: [...GRAD_INPUTS, "dq"],
  dkdv: [...GRAD_INPUTS, "dk", "dv"],
};
const OUTPUTS: Record<FlashKernel, number> = { forward: 2, dq: 1, dkdv: 2 };
const VEC4 = new Set(["q", "k", "v", "o", "dout", "dq", "dk", "dv"]);
const U32 = new Set(["pos", "keys"]);

export function flashAttentionWgsl(kind: FlashKernel, dp: number): string {
  if (dp % 64 !== 0) {
    throw new Error(`flash attention: padded head dim ${dp} is not a multiple of 64`);
  }
  const G = dp / 64; // vec4 accumulator groups per row
  const DP4 = dp / 4;
  // Chunk of Dh per score step: fwd stages 2 operands, backward 4, in STAGE_ROWS rows.
  const KC = kind === "forward" ? 16 : 8;
  // Rows of the streamed operand per accumulate step: VC rows × G stage rows each.
  const VC = STAGE_ROWS / G;
  const L: string[] = [];
  const emit = (s: string) => L.push(s);

  emit(`struct P { heads: u32, dh4: u32, sq: u32, sk: u32, q_rows: u32, kv_rows: u32,
  q_start: u32, mask_len: u32, scale_log2: f32, scale: f32 }`);
  emit("@group(0) @binding(0) var<uniform> p: P;");
  const names = BINDINGS[kind];
  names.forEach((name, i) => {
    const access = i >= names.length - OUTPUTS[kind] ? "read_write" : "read";
    const type = VEC4.has(name) ? "vec4<f32>" : U32.has(name) ? "u32" : "f32";
    emit(`@group(0) @binding(${i + 1}) var<storage, ${access}> ${name}: array<${type}>;`);
  });
  emit(`var<workgroup> stage: array<array<vec4<f32>, 16>, ${STAGE_ROWS}>;`);
  emit(`var<workgroup> ps: array<array<vec4<f32>, 17>, 64>;`);
  if (kind === "forward") emit(`var<workgroup> red: array<array<f32, 17>, 64>;`);
  emit(`var<workgroup> bound_atomic: atomic<u32>;`);
  emit(`var<workgroup> bound: u32;`);
  emit(`var<private> bb: u32;`);
  emit(`var<private> qbase: u32;`);
  emit(`var<private> kvbase: u32;`);
  emit(`var<private> rstride: u32;`);
  // Loaders: rows past the end and dims past Dh read as 0, which keeps every tile edge exact.
  const loader = (name: string, base: string, limit: string) =>
    emit(`fn ld_${name}(r: u32, d4: u32) -> vec4<f32> {
  if (r >= ${limit} || d4 >= p.dh4) { return vec4<f32>(0.0); }
  return ${name}[${base} + r * rstride + d4];
}`);
  loader("q", "qbase", "p.sq");
  loader("k", "kvbase", "p.sk");
  loader("v", "kvbase", "p.sk");
  if (kind !== "forward") loader("dout", "qbase", "p.sq");
  // Query i admits key j iff keyLevel(j) < queryBound(i); 0 admits nothing (past the end).
  emit(`fn query_bound(i: u32) -> u32 {
  if (i >= p.sq) { return 0u; }
  return pos[p.q_start + i] + 1u;
}
fn key_level(j: u32) -> u32 {
  if (j >= p.sk) { return 0xffffffffu; }
  return keys[bb * p.mask_len + j];
}`);

  emit(`@compute @workgroup_size(${THREADS})`);
  emit(
    `fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {`,
  );
  emit(`  bb = wid.z;
  let h = wid.y;
  let tx = lid % 16u;
  let ty = lid / 16u;
  rstride = p.heads * p.dh4;
  qbase = (bb * p.q_rows * p.heads + h) * p.dh4;
  kvbase = (bb * p.kv_rows * p.heads + h) * p.dh4;
  let row0 = wid.x * ${TILE}u;
  let stat = (bb * p.heads + h) * p.sq;`);

  // --- Pieces -------------------------------------------------------------------------------
  // Stages a KC-wide chunk of Dh (starting at vec4 c4) of each operand's 64 rows, d-major:
  // stage[op·KC + d][row / 4][row % 4].
  const stageChunk = (ops: Operand[], ind: string) => {
    const perOp = 16 * KC; // vec4 per operand chunk
    const opsPerPass = THREADS / perOp;
    const QD = KC / 4;
    for (let first = 0; first < ops.length; first += opsPerPass) {
      const group = ops.slice(first, first + opsPerPass);
      emit(`${ind}{`);
      emit(`${ind}  let u = lid % ${perOp}u; let r = u / ${QD}u; let qd = u % ${QD}u;`);
      emit(`${ind}  let sel = lid / ${perOp}u;`);
      emit(`${ind}  var val: vec4<f32>;`);
      group.forEach((op, i) => {
        const cond = i === 0
          ? (group.length > 1 ? "if (sel == 0u) " : "")
          : `else if (sel == ${i}u) `;
        emit(`${ind}  ${cond}{ val = ${op.fn}(${op.row0} + r, c4 + qd); }`);
      });
      emit(`${ind}  let srow = (${first}u + sel) * ${KC}u + qd * 4u;`);
      for (let e = 0; e < 4; e++) {
        emit(`${ind}  stage[srow + ${e}u][r >> 2u][r & 3u] = val.${C[e]};`);
      }
      emit(`${ind}}`);
    }
  };
  // acc{i} (4 rows × vec4 of columns) += A·Bᵀ over the staged chunk, for each (A, B) slot pair.
  const innerProducts = (pairs: [number, number, string][], ind: string) => {
    for (let d = 0; d < KC; d++) {
      for (const [a, b, acc] of pairs) {
        emit(`${ind}{ let a = stage[${a * KC + d}][ty]; let b = stage[${b * KC + d}][tx];`);
        for (let i = 0; i < 4; i++) {
          emit(`${ind}  ${acc}${i} = fma(vec4<f32>(a.${C[i]}), b, ${acc}${i});`);
        }
        emit(`${ind}}`);
      }
    }
  };
  // Score phase: each pair's 64×64 tile of A·Bᵀ into named accumulators.
  const scores = (ops: Operand[], pairs: [number, number, string][], ind: string) => {
    for (const [, , acc] of pairs) {
      for (let i = 0; i < 4; i++) emit(`${ind}var ${acc}${i} = vec4<f32>(0.0);`);
    }
    emit(`${ind}for (var c4 = 0u; c4 < p.dh4; c4 += ${KC / 4}u) {`);
    stageChunk(ops, ind + "  ");
    emit(`${ind}  workgroupBarrier();`);
    innerProducts(pairs, ind + "  ");
    emit(`${ind}  workgroupBarrier();`);
    emit(`${ind}}`);
  };
  // acc{i}_{g} += ps[rows] · X[xrow0 + c], over the first `count` (uniform) columns of ps.
  const accumulate = (fn: string, xrow0: string, count: string, acc: string, ind: string) => {
    emit(`${ind}for (var c = 0u; c < ${count}; c += ${VC}u) {`);
    emit(`${ind}  for (var u = lid; u < ${VC * DP4}u; u += ${THREADS}u) {`);
    emit(`${ind}    let rr = u / ${DP4}u; let d4 = u % ${DP4}u;`);
    emit(`${ind}    stage[rr * ${G}u + d4 / 16u][d4 % 16u] = ${fn}(${xrow0} + c + rr, d4);`);
    emit(`${ind}  }`);
    emit(`${ind}  workgroupBarrier();`);
    emit(`${ind}  let c4 = c / 4u;`);
    for (let kk = 0; kk < VC; kk += 4) {
      emit(`${ind}  {`);
      for (let i = 0; i < 4; i++) {
        emit(`${ind}    let w${i} = ps[ty * 4u + ${i}u][c4 + ${kk / 4}u];`);
      }
      for (let e = 0; e < 4; e++) {
        for (let g = 0; g < G; g++) {
          emit(`${ind}    { let x = stage[${(kk + e) * G + g}][tx];`);
          for (let i = 0; i < 4; i++) {
            emit(
              `${ind}      ${acc}${i}_${g} = fma(vec4<f32>(w${i}.${C[e]}), x, ${acc}${i}_${g});`,
            );
          }
          emit(`${ind}    }`);
        }
      }
      emit(`${ind}  }`);
    }
    emit(`${ind}  workgroupBarrier();`);
    emit(`${ind}}`);
  };
  const declareAcc = (acc: string) => {
    for (let i = 0; i < 4; i++) {
      for (let g = 0; g < G; g++) emit(`  var ${acc}${i}_${g} = vec4<f32>(0.0);`);
    }
  };
  // Writes acc rows (row0 + ty·4 + i) times `factor_i`, for rows below `limit`.
  const store = (
    out: string,
    base: string,
    acc: string,
    limit: string,
    factor: (i: number) => string,
  ) => {
    for (let i = 0; i < 4; i++) {
      emit(`  { let r = row0 + ty * 4u + ${i}u;`);
      emit(`    if (r < ${limit}) {`);
      for (let g = 0; g < G; g++) {
        emit(
          `      { let d4 = ${
            g * 16
          }u + tx; if (d4 < p.dh4) { ${out}[${base} + r * rstride + d4] = ${acc}${i}_${g} * ${
            factor(i)
          }; } }`,
        );
      }
      emit(`    }`);
      emit(`  }`);
    }
  };
  // The tile's loop bound over the other side: max (or min) of a pos row over the tile's rows.
  const tileBound = (expr: string, valid: string, op: "Max" | "Min", init: string) => {
    emit(`  if (lid == 0u) { atomicStore(&bound_atomic, ${init}); }`);
    emit(`  workgroupBarrier();`);
    emit(`  if (lid < ${TILE}u && ${valid}) { atomic${op}(&bound_atomic, ${expr}); }`);
    emit(`  workgroupBarrier();`);
    emit(`  if (lid == 0u) { bound = atomicLoad(&bound_atomic); }`);
  };

  if (kind === "forward" || kind === "dq") {
    // Rows are queries; walk key tiles up to the furthest key any of them may see.
    tileBound("pos[p.mask_len + p.q_start + row0 + lid]", "row0 + lid < p.sq", "Max", "0u");
    emit(`  let kend = min(workgroupUniformLoad(&bound), p.sk);`);
    for (let i = 0; i < 4; i++) emit(`  let qb${i} = query_bound(row0 + ty * 4u + ${i}u);`);
    const ops: Operand[] = kind === "forward"
      ? [{ fn: "ld_q", row0: "row0" }, { fn: "ld_k", row0: "k0" }]
      : [
        { fn: "ld_q", row0: "row0" },
        { fn: "ld_k", row0: "k0" },
        { fn: "ld_dout", row0: "row0" },
        { fn: "ld_v", row0: "k0" },
      ];
    if (kind === "forward") {
      for (let i = 0; i < 4; i++) emit(`  var m${i} = ${NEG}; var l${i} = 0.0;`);
      declareAcc("o");
    } else {
      for (let i = 0; i < 4; i++) {
        emit(`  let r${i} = row0 + ty * 4u + ${i}u;`);
        emit(`  var lse${i} = ${NO_LSE}; var del${i} = 0.0;`);
        emit(`  if (r${i} < p.sq) { lse${i} = lse[stat + r${i}]; del${i} = delta[stat + r${i}]; }`);
      }
      declareAcc("dq");
    }
    emit(`  for (var k0 = 0u; k0 < kend; k0 += ${TILE}u) {`);
    const pairs: [number, number, string][] = kind === "forward"
      ? [[0, 1, "s"]]
      : [[0, 1, "s"], [2, 3, "dp"]];
    scores(ops, pairs, "    ");
    emit(`    let kl = vec4<u32>(key_level(k0 + tx * 4u), key_level(k0 + tx * 4u + 1u),
      key_level(k0 + tx * 4u + 2u), key_level(k0 + tx * 4u + 3u));`);
    if (kind === "forward") {
      // Online softmax in base 2: the row max is shared through `red`, the row sum stays
      // per-thread (rescaled by the same factors) and is reduced once at the end.
      for (let i = 0; i < 4; i++) {
        emit(`    let vis${i} = kl < vec4<u32>(qb${i});`);
        emit(`    let x${i} = s${i} * p.scale_log2;`);
        emit(`    { let xm = select(vec4<f32>(${NEG}), x${i}, vis${i});`);
        emit(`      red[ty * 4u + ${i}u][tx] = max(max(xm.x, xm.y), max(xm.z, xm.w)); }`);
      }
      emit(`    workgroupBarrier();`);
      for (let i = 0; i < 4; i++) {
        emit(`    {`);
        emit(`      var mt = m${i};`);
        for (let t = 0; t < 16; t++) emit(`      mt = max(mt, red[ty * 4u + ${i}u][${t}]);`);
        emit(`      let alpha = exp2(m${i} - mt);`);
        emit(`      m${i} = mt;`);
        emit(`      let pr = select(vec4<f32>(0.0), exp2(x${i} - vec4<f32>(mt)), vis${i});`);
        emit(`      l${i} = l${i} * alpha + (pr.x + pr.y) + (pr.z + pr.w);`);
        for (let g = 0; g < G; g++) emit(`      o${i}_${g} *= alpha;`);
        emit(`      ps[ty * 4u + ${i}u][tx] = pr;`);
        emit(`    }`);
      }
    } else {
      for (let i = 0; i < 4; i++) {
        emit(`    { let pr = select(vec4<f32>(0.0), exp2(s${i} * p.scale_log2 - vec4<f32>(lse${i})),
        kl < vec4<u32>(qb${i}));`);
        emit(`      ps[ty * 4u + ${i}u][tx] = pr * (dp${i} - vec4<f32>(del${i})); }`);
      }
    }
    emit(`    workgroupBarrier();`);
    accumulate(
      kind === "forward" ? "ld_v" : "ld_k",
      "k0",
      "min(kend - k0, 64u)",
      kind === "forward" ? "o" : "dq",
      "    ",
    );
    emit(`  }`);
    if (kind === "forward") {
      for (let i = 0; i < 4; i++) emit(`  red[ty * 4u + ${i}u][tx] = l${i};`);
      emit(`  workgroupBarrier();`);
      for (let i = 0; i < 4; i++) {
        emit(`  var lt${i} = 0.0;`);
        for (let t = 0; t < 16; t++) emit(`  lt${i} += red[ty * 4u + ${i}u][${t}];`);
        emit(`  let inv${i} = select(0.0, 1.0 / lt${i}, lt${i} > 0.0);`);
        emit(`  { let r = row0 + ty * 4u + ${i}u;`);
        emit(
          `    if (tx == 0u && r < p.sq) { lse[stat + r] = select(${NO_LSE}, m${i} + log2(lt${i}), lt${i} > 0.0); } }`,
        );
      }
      store("o", "qbase", "o", "p.sq", (i) => `inv${i}`);
    } else {
      store("dq", "qbase", "dq", "p.sq", () => "p.scale");
    }
  } else {
    // dK/dV: rows are keys; walk query tiles from the first query that may see any of them.
    tileBound(
      "max(pos[2u * p.mask_len + row0 + lid], p.q_start) - p.q_start",
      "row0 + lid < p.sk",
      "Min",
      "0xffffffffu",
    );
    emit(`  let qbegin = workgroupUniformLoad(&bound);`);
    for (let i = 0; i < 4; i++) {
      emit(`  let kl${i} = vec4<u32>(key_level(row0 + ty * 4u + ${i}u));`);
    }
    declareAcc("dk");
    declareAcc("dv");
    emit(`  for (var q0 = qbegin; q0 < p.sq; q0 += ${TILE}u) {`);
    const ops: Operand[] = [
      { fn: "ld_k", row0: "row0" },
      { fn: "ld_q", row0: "q0" },
      { fn: "ld_v", row0: "row0" },
      { fn: "ld_dout", row0: "q0" },
    ];
    scores(ops, [[0, 1, "s"], [2, 3, "dp"]], "    ");
    emit(`    var qb = vec4<u32>(0u); var ls = vec4<f32>(${NO_LSE}); var dl = vec4<f32>(0.0);`);
    for (let j = 0; j < 4; j++) {
      emit(`    { let q = q0 + tx * 4u + ${j}u; if (q < p.sq) {`);
      emit(
        `      qb.${C[j]} = query_bound(q); ls.${C[j]} = lse[stat + q]; dl.${
          C[j]
        } = delta[stat + q]; } }`,
      );
    }
    for (let i = 0; i < 4; i++) {
      emit(`    let p${i} = select(vec4<f32>(0.0), exp2(s${i} * p.scale_log2 - ls), kl${i} < qb);`);
      emit(`    ps[ty * 4u + ${i}u][tx] = p${i};`);
    }
    emit(`    workgroupBarrier();`);
    emit(`    let nq = min(p.sq - q0, 64u);`);
    accumulate("ld_dout", "q0", "nq", "dv", "    ");
    for (let i = 0; i < 4; i++) emit(`    ps[ty * 4u + ${i}u][tx] = p${i} * (dp${i} - dl);`);
    emit(`    workgroupBarrier();`);
    accumulate("ld_q", "q0", "nq", "dk", "    ");
    emit(`  }`);
    store("dk", "kvbase", "dk", "p.sk", () => "p.scale");
    store("dv", "kvbase", "dv", "p.sk", () => "1.0");
  }
  emit(`}`);
  return L.join("\n");
}
