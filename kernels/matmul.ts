// Batched matmul C[b] = alpha · op(A[b]) · op(B[b]) (+ bias) (+ beta · C[b]), generated as WGSL.
//
// Each workgroup computes a BM×BN tile of C, walking K in steps of BK through workgroup memory;
// each thread owns TM×TN outputs. The source is generated so that every accumulator is a named
// vec4 variable and every loop that touches them is unrolled: naga lowers private arrays to
// memory that the driver spills, which measured 2 TFLOP/s against 15 for this form on an H200.
//
// Storage is row-major. A is [M, K] ([K, M] when transA), B is [K, N] ([N, K] when transB), C is
// [M, N]. Operands are read as vec4 along their contiguous dim when it is a multiple of 4, else
// as scalars. With f16 storage the tiles stay f16 in workgroup memory and the products of one BK
// slice are summed in f16 (packed half FMAs: twice the f32 rate), then added into f32
// accumulators, so rounding grows with BK, not with K (about 1e-3 relative at BK 32).
// Workgroup memory holds both tiles k-major (As[k][m], Bs[k][n]) so a thread reads its 4-wide
// row and column groups as single vec4s.

/** The shape of the work one workgroup and one thread do. */
export interface MatmulTile {
  bm: number;
  bn: number;
  bk: number;
  /** Outputs per thread along M and N; multiples of 4. */
  tm: number;
  tn: number;
  /**
   * Double-buffered workgroup memory with the next K tile prefetched into registers while the
   * current one is multiplied: global latency hides behind arithmetic, one barrier per step.
   */
  prefetch: boolean;
  /**
   * Accumulators run down columns (one vec4 = 4 rows of one column), so each k broadcasts the TN
   * elements of B instead of the TM of A: fewer splats when TM > TN. Not timed yet: opt-in.
   */
  colAcc?: boolean;
}

export interface MatmulKernel {
  tile: MatmulTile;
  dtype: "f32" | "f16";
  transA: boolean;
  transB: boolean;
  /** vec4 loads of A along its contiguous dim (K, or M when transA); needs it % 4 == 0. */
  vecA: boolean;
  /** vec4 loads of B along its contiguous dim (N, or K when transB). */
  vecB: boolean;
  /** vec4 stores of C; needs N % 4 == 0. */
  vecC: boolean;
  /** Adds bias[n] (length N, same dtype) to every row. */
  bias: boolean;
  /** Reads C and adds beta · C to the product. */
  accumulate: boolean;
}

export const TILES = {
  /**
   * The workhorse for shapes that fill the GPU with 128×128 tiles. On an H200, BK 32 beat BK 16
   * and 8 (half the barriers per FMA), and register prefetch lost ~15% (more registers, fewer
   * resident workgroups): tools/BENCHMARKS.md.
   */
  large: { bm: 128, bn: 128, bk: 32, tm: 8, tn: 8, prefetch: false },
  /**
   * f16's large tile: 16×8 outputs a thread. With half-precision slice sums the inner product
   * is no longer FMA-bound, and more outputs per workgroup-memory read measured +2–3% over
   * `large` at 4096 and 8192 on an H200 (tools/BENCHMARKS.md).
   */
  largeHalf: { bm: 256, bn: 128, bk: 32, tm: 16, tn: 8, prefetch: false },
  /**
   * `large`'s thread work (8×8) on a 64×256 tile, for M ≈ 64 (a 64-channel conv's weight times
   * its columns), where a 128-row tile computes half padding. On lavapipe, 64×576×4096: 9.2
   * GFLOP/s against 3.5 for `large`; not yet timed on a GPU (tools/BENCHMARKS.md).
   */
  wide: { bm: 64, bn: 256, bk: 32, tm: 8, tn: 8, prefetch: false },
  /** For shapes whose 128×128 tiles would leave most of the GPU idle. */
  small: { bm: 64, bn: 64, bk: 16, tm: 4, tn: 4, prefetch: true },
} satisfies Record<string, MatmulTile>;

/** "128x128x16-8x8", with "-pf" (prefetch) and "-cm" (column accumulators) when set. */
export function tileName(t: MatmulTile): string {
  return `${t.bm}x${t.bn}x${t.bk}-${t.tm}x${t.tn}${t.prefetch ? "-pf" : ""}${
    t.colAcc ? "-cm" : ""
  }`;
}

export function parseTile(name: string): MatmulTile {
  const m = /^(\d+)x(\d+)x(\d+)-(\d+)x(\d+)(-pf)?(-cm)?$/.exec(name);
  if (!m) {
    throw new Error(`tile '${name}': expected BMxBNxBK-TMxTN[-pf][-cm], e.g. 128x128x16-8x8-pf`);
  }
  const [bm, bn, bk, tm, tn] = m.slice(1, 6).map(Number);
  const t = { bm, bn, bk, tm, tn, prefetch: Boolean(m[6]), colAcc: Boolean(m[7]) };
  tileProblem(t);
  return t;
}

function threads(t: MatmulTile): number {
  return (t.bm / t.tm) * (t.bn / t.tn);
}

/** Whether matmulWgsl can generate this tile. */
export function tileValid(t: MatmulTile): boolean {
  try {
    tileProblem(t);
    return true;
  } catch {
    return false;
  }
}

/** Throws why a tile cannot be generated. */
function tileProblem(t: MatmulTile): void {
  const bad = (why: string) => {
    throw new Error(`tile ${tileName(t)}: ${why}`);
  };
  if (t.tm % 4 || t.tn % 4) bad("TM and TN must be multiples of 4");
  if (t.bm % t.tm || t.bn % t.tn) bad("BM, BN must be multiples of TM, TN");
  if (t.bk % 4) bad("BK must be a multiple of 4");
  const n = threads(t);
  if (n > 1024) bad(`${n} threads per workgroup`);
  // Every thread loads the same number of elements of each tile, vec4 or scalar.
  if ((t.bm * t.bk / 4) % n || (t.bn * t.bk / 4) % n) bad("tile loads don't divide among threads");
}

/**
 * Workgroup memory a tile needs (it must fit maxComputeWorkgroupStorageSize), with the padding
 * of the operands loaded along K (GemmHooks.kMajor), if any.
 */
export function workgroupBytes(
  t: MatmulTile,
  dtype: "f32" | "f16" = "f32",
  kMajor: { A?: boolean; B?: boolean } = {},
): number {
  const pads = kMajorPad(t, kMajor.A, t.bm) + kMajorPad(t, kMajor.B, t.bn);
  return (t.prefetch ? 2 : 1) * (t.bm + t.bn + 4 * pads) * t.bk * (dtype === "f16" ? 2 : 4);
}

/** kk per 32 threads of a K-major load: 8 (× 4 rows), else 4 (× 8 rows), 0 where neither fits. */
function kMajorWidth(t: MatmulTile, rows: number): number {
  return t.bk % 8 === 0 ? 8 : rows % 8 === 0 ? 4 : 0;
}

/** The vec4s a K-major operand's workgroup rows are padded by (0 if not K-major). */
function kMajorPad(t: MatmulTile, on: boolean | undefined, rows: number): number {
  const kw = on ? kMajorWidth(t, rows) : 0;
  return kw ? 8 / kw : 0;
}

/** Words of the uniform block, in order; see packMatmulParams. */
export interface MatmulParams {
  M: number;
  N: number;
  K: number;
  /** The batch index z = b0 · batchInner + b1 gives operand offsets off + b0·s0 + b1·s1. */
  batchInner: number;
  offA: number;
  offB: number;
  offC: number;
  sA: [number, number];
  sB: [number, number];
  sC: [number, number];
  alpha: number;
  beta: number;
  /** With GemmHooks.splitK: the K range each workgroup z sums, [z·kSplit, (z + 1)·kSplit). */
  kSplit?: number;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const bits = (x: number) => (f32[0] = x, u32[0]);

export function packMatmulParams(p: MatmulParams): number[] {
  return [
    p.M,
    p.N,
    p.K,
    p.batchInner,
    p.offA,
    p.offB,
    p.offC,
    ...p.sA,
    ...p.sB,
    ...p.sC,
    bits(p.alpha),
    bits(p.beta),
    p.kSplit ?? 0,
  ];
}

/**
 * The parameters of an M×N GEMM over K split into `slabs` slabs of `kSplit` (0: one slab), each
 * slab's C its own [M, N] block: the convolutions' weight gradients.
 */
export function slabMatmulParams(M: number, N: number, K: number, slabs = 1, kSplit = 0): number[] {
  return packMatmulParams({
    M,
    N,
    K,
    batchInner: slabs,
    offA: 0,
    offB: 0,
    offC: 0,
    sA: [0, 0],
    sB: [0, 0],
    sC: [0, M * N],
    alpha: 1,
    beta: 0,
    kSplit,
  });
}

/**
 * What an implicit GEMM (a convolution's, kernels/conv2d_gemm.ts) changes in the tiled matmul:
 * where an operand's elements come from, where C's go, and how K is shared out. The tile, the
 * workgroup memory and the inner product stay the matmul's.
 */
export interface GemmHooks {
  /** Module-scope WGSL: the hooks' own bindings (from 4 on) and constants. */
  decls?: string[];
  /**
   * Lines setting register `r` to element (row, kk) of op(A), or of op(B), called only where
   * row < M (N) and kk < K. `r` is a vec4 of kk…kk+3 when the operand is vec and contiguous
   * along K, a scalar when it is not vec; an implicit operand's A/B binding may go unused.
   */
  loadA?: (r: string, row: string, kk: string, pre: string, kOff: string) => string[];
  loadB?: (r: string, row: string, kk: string, pre: string, kOff: string) => string[];
  /**
   * Lines run once per distinct row a thread loads, before the K loop (a thread's rows do not
   * change with K): they define values named from prefix `pre` that the operand's load hook then
   * reads (its 4th argument), so per-row index arithmetic leaves the inner loop. `row` may be
   * out of range here (no reads of memory); the load is still only called where row < M (N).
   * `kOff` is the load's kk − k0, the same in every slice (a WGSL expression of lid).
   */
  rowA?: (pre: string, row: string) => string[];
  rowB?: (pre: string, row: string) => string[];
  /**
   * Lines run once per K slice, before its loads, with `k0` (the slice's first kk, a multiple of
   * BK) in scope: values uniform over the slice (e.g. a convolution's tap when BK divides the
   * channels) that the load hooks then read.
   */
  step?: () => string[];
  /**
   * Lines run once per K slice and hoisted row (after `step`), defining values from prefix `pre`
   * that hold for the row over the whole slice; needs the operand's row hook.
   */
  stepRowA?: (pre: string) => string[];
  stepRowB?: (pre: string) => string[];
  /**
   * Operands loaded along K: a warp's 32 threads read 8 consecutive kk of 4 rows (4 kk of 8
   * where BK is not a multiple of 8), so an operand whose memory runs along K (a weight
   * gradient's pixels) is read in whole sectors. Its tile's k rows are padded in workgroup
   * memory so those stores don't collide on one bank (workgroupBytes counts the padding).
   * Scalar loads, through the operand's hook; the operand must not be vec.
   */
  kMajor?: { A?: boolean; B?: boolean };
  /**
   * Lines storing `v`, the vec4<f32> of outputs (m, n…n+3) after alpha, for m < M; the hook
   * checks n + j < N itself. Replaces C, bias and beta.
   */
  store?: (m: string, n: string, v: string) => string[];
  /** Workgroup z sums only K range [z·kSplit, (z + 1)·kSplit) ∩ [0, K) into its C slab. */
  splitK?: boolean;
}

/** Generates the WGSL of one kernel; bindings: 0 params, 1 A, 2 B, 3 C, 4 bias (if any). */
export function matmulWgsl(k: MatmulKernel, hooks: GemmHooks = {}): string {
  const t = k.tile;
  tileProblem(t);
  const T = threads(t);
  const TX = t.bn / t.tn; // threads along N
  const TY = t.bm / t.tm; // threads along M
  const GM = t.tm / 4; // 4-row groups per thread, TY·4 rows apart
  const GN = t.tn / 4;
  const nbuf = t.prefetch ? 2 : 1;
  const s = k.dtype; // storage scalar type
  const w = s; // workgroup tiles and slice sums: f16 math for f16 storage
  const L: string[] = [];
  const emit = (line: string) => L.push(line);

  if (s === "f16") emit("enable f16;");
  emit(`struct Params { M: u32, N: u32, K: u32, batchInner: u32, offA: u32, offB: u32, offC: u32,
  sA0: u32, sA1: u32, sB0: u32, sB1: u32, sC0: u32, sC1: u32, alpha: f32, beta: f32, kSplit: u32 }`);
  emit("@group(0) @binding(0) var<uniform> p: Params;");
  emit(`@group(0) @binding(1) var<storage, read> A: array<${k.vecA ? `vec4<${s}>` : s}>;`);
  emit(`@group(0) @binding(2) var<storage, read> B: array<${k.vecB ? `vec4<${s}>` : s}>;`);
  emit(`@group(0) @binding(3) var<storage, read_write> C: array<${k.vecC ? `vec4<${s}>` : s}>;`);
  if (k.bias) {
    emit(`@group(0) @binding(4) var<storage, read> bias: array<${k.vecC ? `vec4<${s}>` : s}>;`);
  }
  for (const d of hooks.decls ?? []) emit(d);
  // Indexed [buffer][k][row / 4]; the outer indices are constants in the unrolled inner product,
  // so the bounds clamps naga adds there fold away. A K-major operand's k rows are padded by
  // 32 / kw words: the kw k rows a warp stores at once then start in different banks.
  const padA = kMajorPad(t, hooks.kMajor?.A, t.bm), padB = kMajorPad(t, hooks.kMajor?.B, t.bn);
  emit(`var<workgroup> As: array<array<array<vec4<${w}>, ${t.bm / 4 + padA}>, ${t.bk}>, ${nbuf}>;`);
  emit(`var<workgroup> Bs: array<array<array<vec4<${w}>, ${t.bn / 4 + padB}>, ${t.bk}>, ${nbuf}>;`);
  emit("");
  emit(`@compute @workgroup_size(${T})`);
  emit(`fn main(@builtin(workgroup_id) wid: vec3<u32>,
  @builtin(local_invocation_index) lid: u32) {`);
  emit(`  let M = p.M; let N = p.N; let K = p.K;`);
  emit(`  let b0 = wid.z / p.batchInner; let b1 = wid.z % p.batchInner;`);
  emit(`  let aBase = p.offA + b0 * p.sA0 + b1 * p.sA1;`);
  emit(`  let bBase = p.offB + b0 * p.sB0 + b1 * p.sB1;`);
  emit(`  let cBase = p.offC + b0 * p.sC0 + b1 * p.sC1;`);
  emit(`  let rowBase = wid.y * ${t.bm}u;`);
  emit(`  let colBase = wid.x * ${t.bn}u;`);
  emit(`  let tx = lid % ${TX}u;`);
  emit(`  let ty = lid / ${TX}u;`);

  // --- Loading one BK slice of each operand: global memory → registers → workgroup memory. ---
  interface Operand {
    name: "A" | "B";
    rows: number; // tile extent along M (A) or N (B)
    vec: boolean;
    contigK: boolean; // storage contiguous along K (A not transposed, B transposed)
    rowsVar: string; // "M" or "N"
    base: string;
    rowBase: string;
    load?: (r: string, row: string, kk: string, pre: string, kOff: string) => string[];
    rowHook?: (pre: string, row: string) => string[];
    stepRow?: (pre: string) => string[];
    /** Loads along K: kw consecutive kk of rw rows per 32 threads. */
    km: { kw: number; rw: number } | null;
  }
  const kMajorOf = (name: "A" | "B", vec: boolean, rows: number): Operand["km"] => {
    if (!hooks.kMajor?.[name]) return null;
    if (vec) throw new Error(`matmulWgsl: operand ${name} can't be both vec and K-major`);
    if (!(name === "A" ? hooks.loadA : hooks.loadB)) {
      throw new Error(`matmulWgsl: K-major operand ${name} needs a load hook`);
    }
    const kw = kMajorWidth(t, rows);
    return kw ? { kw, rw: 32 / kw } : null;
  };
  const ops: Operand[] = [
    {
      name: "A",
      rows: t.bm,
      vec: k.vecA,
      contigK: !k.transA,
      rowsVar: "M",
      base: "aBase",
      rowBase: "rowBase",
      load: hooks.loadA,
      rowHook: hooks.rowA,
      stepRow: hooks.stepRowA,
      km: kMajorOf("A", k.vecA, t.bm),
    },
    {
      name: "B",
      rows: t.bn,
      vec: k.vecB,
      contigK: k.transB,
      rowsVar: "N",
      base: "bBase",
      rowBase: "colBase",
      load: hooks.loadB,
      rowHook: hooks.rowB,
      stepRow: hooks.stepRowB,
      km: kMajorOf("B", k.vecB, t.bn),
    },
  ];
  const loads = (o: Operand) => (o.vec ? (o.rows * t.bk) / 4 : o.rows * t.bk) / T;
  const reg = (o: Operand, i: number) => `r${o.name}${i}`;
  const regType = (o: Operand) => (o.vec ? `vec4<${w}>` : w);
  for (const o of ops) {
    for (let i = 0; i < loads(o); i++) emit(`  var ${reg(o, i)}: ${regType(o)};`);
  }

  /**
   * Where load i of a thread goes in the tile: its row (from the tile's first) and its kk (from
   * the slice's first). Rows never depend on the slice, and offsets are reduced modulo the
   * mapping's period so that loads of one row give one string (their hoisted values are shared).
   */
  const place = (o: Operand, i: number): { row: string; kk: string } => {
    const c = i * T;
    const idx = `(lid + ${c}u)`;
    const plus = (off: number) => (off ? ` + ${off}u` : "");
    if (o.km) {
      const { kw, rw } = o.km, G = o.rows / rw;
      const row = T % 32 === 0
        ? `((lid / 32u${plus((c / 32) % G)}) % ${G}u) * ${rw}u + lid % ${rw}u`
        : `((${idx} / 32u) % ${G}u) * ${rw}u + ${idx} % ${rw}u`;
      return { row, kk: `(${idx} / ${32 * G}u) * ${kw}u + (${idx} % 32u) / ${rw}u` };
    }
    if (o.vec && !o.contigK) {
      const q = o.rows / 4;
      return { row: `((lid${plus(c % q)}) % ${q}u) * 4u`, kk: `${idx} / ${q}u` };
    }
    const kk = o.vec ? `(${idx} / ${o.rows}u) * 4u` : `${idx} / ${o.rows}u`;
    return { row: `(lid${plus(c % o.rows)}) % ${o.rows}u`, kk };
  };
  // Hoisted rows: one variable (and the hook's values) per distinct row of an operand with a row
  // hook, defined before the K loop.
  const hoisted = new Map<string, string>();
  for (const o of ops) {
    if (!o.rowHook || !o.load) continue;
    for (let i = 0; i < loads(o); i++) {
      const key = `${o.name} ${place(o, i).row}`;
      if (hoisted.has(key)) continue;
      const pre = `${o.name.toLowerCase()}${hoisted.size}_`;
      hoisted.set(key, pre);
      emit(`  let ${pre}row = ${o.rowBase} + ${place(o, i).row};`);
      for (const line of o.rowHook(pre, `${pre}row`)) emit(`  ${line}`);
    }
  }

  // Global loads of the slice starting at k0 into the registers. Out-of-range elements read as 0,
  // which makes every tile edge exact without branches in the inner product.
  const kEnd = hooks.splitK ? "kEnd" : "K";
  /** The guarded load: the operand's own hook, or `plain` (a read of the stored matrix). */
  const guarded = (
    indent: string,
    o: Operand,
    r: string,
    plain: string,
    pre = "",
    kOff = "0u",
  ) => {
    const cond = `row < ${o.rowsVar} && kk < ${kEnd}`;
    if (!o.load) {
      emit(`${indent}  if (${cond}) { ${r} = ${plain}; } }`);
      return;
    }
    emit(`${indent}  if (${cond}) {`);
    for (const line of o.load(r, "row", "kk", pre, kOff)) emit(`${indent}    ${line}`);
    emit(`${indent}  } }`);
  };
  const loadSlice = (indent: string) => {
    for (const line of hooks.step?.() ?? []) emit(`${indent}${line}`);
    for (const o of ops) {
      if (!o.stepRow) continue;
      if (!o.rowHook) throw new Error(`matmulWgsl: stepRow${o.name} needs row${o.name}`);
      for (const [key, pre] of hoisted) {
        if (!key.startsWith(`${o.name} `)) continue;
        for (const line of o.stepRow(pre)) emit(`${indent}${line}`);
      }
    }
    for (const o of ops) {
      const R = o.rowsVar;
      for (let i = 0; i < loads(o); i++) {
        const r = reg(o, i);
        const at = place(o, i);
        const pre = hoisted.get(`${o.name} ${at.row}`);
        emit(`${indent}{ let row = ${pre ? `${pre}row` : `${o.rowBase} + ${at.row}`};`);
        emit(`${indent}  let kk = k0 + ${at.kk};`);
        if (o.vec && o.contigK) {
          // vec4 along K: element (row, kq·4 .. kq·4+3) of a row-major [rows, K] matrix.
          emit(`${indent}  ${r} = vec4<${w}>(0.0);`);
          guarded(
            indent,
            o,
            r,
            `vec4<${w}>(${o.name}[(${o.base} + row * K + kk) >> 2u])`,
            pre,
            at.kk,
          );
        } else if (o.vec) {
          // vec4 along the rows: element (k, rq·4 .. rq·4+3) of a row-major [K, rows] matrix.
          emit(`${indent}  ${r} = vec4<${w}>(0.0);`);
          guarded(indent, o, r, `vec4<${w}>(${o.name}[(${o.base} + kk * ${R} + row) >> 2u])`, pre);
        } else {
          // Scalars; consecutive threads take consecutive rows so workgroup stores don't conflict
          // (or, K-major, consecutive kk: the padded tile rows keep those stores apart).
          const addr = o.contigK ? `row * K + kk` : `kk * ${R} + row`;
          emit(`${indent}  ${r} = 0.0;`);
          guarded(indent, o, r, `${w}(${o.name}[${o.base} + ${addr}])`, pre, at.kk);
        }
      }
    }
  };
  const storeSlice = (indent: string, buf: string) => {
    for (const o of ops) {
      const S = `${o.name}s[${buf}]`;
      for (let i = 0; i < loads(o); i++) {
        const r = reg(o, i);
        const idx = `lid + ${i * T}u`;
        if (o.vec && o.contigK) {
          emit(`${indent}{ let row = (${idx}) % ${o.rows}u; let kq = (${idx}) / ${o.rows}u;`);
          for (let j = 0; j < 4; j++) {
            emit(`${indent}  ${S}[kq * 4u + ${j}u][row >> 2u][row & 3u] = ${r}[${j}];`);
          }
          emit(`${indent}}`);
        } else if (o.vec) {
          emit(
            `${indent}${S}[(${idx}) / ${o.rows / 4}u][(${idx}) % ${o.rows / 4}u] = ${r};`,
          );
        } else {
          const at = place(o, i);
          emit(`${indent}{ let row = ${at.row}; let kk = ${at.kk};`);
          emit(`${indent}  ${S}[kk][row >> 2u][row & 3u] = ${r}; }`);
        }
      }
    }
  };

  const comp = ["x", "y", "z", "w"];
  // With f16 storage each slice's products are summed in f16 partials (p…), then widened into
  // the f32 accumulators (c…). Accumulators are named vec4s: c{row}_{col group} by default, or
  // with colAcc c{col group}_{col}_{row group}, 4 rows of one column.
  const half = w === "f16";
  const colAcc = Boolean(t.colAcc);
  const cols: [number, number][] = [];
  for (let h = 0; h < GN; h++) for (let j = 0; j < 4; j++) cols.push([h, j]);
  const accNames = (prefix: string) =>
    colAcc
      ? cols.flatMap(([h, j]) => Array.from({ length: GM }, (_, g) => `${prefix}${h}_${j}_${g}`))
      : Array.from({ length: t.tm * GN }, (_, i) => `${prefix}${Math.floor(i / GN)}_${i % GN}`);
  for (const c of accNames("c")) emit(`  var ${c} = vec4<f32>(0.0);`);
  /** The f32 vec4 of row g·4 + i and column group h, for the epilogue. */
  const rowVec = (g: number, i: number, h: number) =>
    colAcc
      ? `vec4<f32>(${[0, 1, 2, 3].map((j) => `c${h}_${j}_${g}.${comp[i]}`).join(", ")})`
      : `c${g * 4 + i}_${h}`;
  const sum = half ? "p" : "c";
  const innerProduct = (indent: string, buf: string) => {
    if (half) { for (const p of accNames("p")) emit(`${indent}var ${p} = vec4<f16>(0.0);`); }
    for (let kk = 0; kk < t.bk; kk++) {
      emit(`${indent}{ // k + ${kk}`);
      for (let g = 0; g < GM; g++) {
        emit(`${indent}let a${g} = As[${buf}][${kk}][${g * TY}u + ty];`);
      }
      for (let h = 0; h < GN; h++) {
        emit(`${indent}let b${h} = Bs[${buf}][${kk}][${h * TX}u + tx];`);
      }
      if (colAcc) {
        for (const [h, j] of cols) {
          emit(`${indent}{ let s = vec4<${w}>(b${h}.${comp[j]});`);
          for (let g = 0; g < GM; g++) {
            const acc = `${sum}${h}_${j}_${g}`;
            emit(`${indent}  ${acc} = fma(a${g}, s, ${acc});`);
          }
          emit(`${indent}}`);
        }
      } else {
        for (let g = 0; g < GM; g++) {
          for (let i = 0; i < 4; i++) {
            for (let h = 0; h < GN; h++) {
              const acc = `${sum}${g * 4 + i}_${h}`;
              emit(`${indent}${acc} = fma(vec4<${w}>(a${g}.${comp[i]}), b${h}, ${acc});`);
            }
          }
        }
      }
      emit(`${indent}}`);
    }
    if (half) {
      const ps = accNames("p");
      accNames("c").forEach((c, i) => emit(`${indent}${c} += vec4<f32>(${ps[i]});`));
    }
  };

  if (hooks.splitK) {
    emit(`  let kBegin = min(K, wid.z * p.kSplit);`);
    emit(`  let kEnd = min(K, kBegin + p.kSplit);`);
  } else emit(`  let kBegin = 0u;`);
  emit(`  let steps = (${kEnd} - kBegin + ${t.bk - 1}u) / ${t.bk}u;`);
  if (t.prefetch) {
    emit(`  var k0 = kBegin;`);
    emit(`  if (steps > 0u) {`);
    loadSlice("    ");
    storeSlice("    ", "0");
    emit(`  }`);
    emit(`  workgroupBarrier();`);
    emit(`  for (var step = 0u; step < steps; step++) {`);
    emit(`    let cur = step & 1u;`);
    emit(`    let more = step + 1u < steps;`);
    emit(`    k0 = kBegin + (step + 1u) * ${t.bk}u;`);
    // The next slice's global loads are issued before the arithmetic and land during it.
    emit(`    if (more) {`);
    loadSlice("      ");
    emit(`    }`);
    emit(`    {`);
    innerProduct("      ", "cur");
    emit(`    }`);
    // Safe with one barrier: the buffer written now was last read before the previous barrier.
    emit(`    if (more) {`);
    storeSlice("      ", "cur ^ 1u");
    emit(`    }`);
    emit(`    workgroupBarrier();`);
    emit(`  }`);
  } else {
    emit(`  for (var step = 0u; step < steps; step++) {`);
    emit(`    let k0 = kBegin + step * ${t.bk}u;`);
    loadSlice("    ");
    storeSlice("    ", "0");
    emit(`    workgroupBarrier();`);
    emit(`    {`);
    innerProduct("      ", "0");
    emit(`    }`);
    emit(`    workgroupBarrier();`);
    emit(`  }`);
  }

  // --- Epilogue: alpha, bias, beta · C, bounds-checked stores. ---
  const out = (v: string) => (s === "f16" ? `vec4<f16>(${v})` : v);
  const outS = (v: string) => (s === "f16" ? `f16(${v})` : v);
  for (let g = 0; g < GM; g++) {
    for (let i = 0; i < 4; i++) {
      emit(`  { let m = rowBase + ${g * TY * 4 + i}u + ty * 4u;`);
      emit(`    if (m < M) {`);
      for (let h = 0; h < GN; h++) {
        emit(`      { let n = colBase + ${h * TX * 4}u + tx * 4u;`);
        emit(`        var v = p.alpha * ${rowVec(g, i, h)};`);
        if (hooks.store) {
          for (const line of hooks.store("m", "n", "v")) emit(`        ${line}`);
        } else if (k.vecC) {
          emit(`        if (n < N) {`);
          emit(`          let ci = (cBase + m * N + n) >> 2u;`);
          if (k.bias) emit(`          v += vec4<f32>(bias[n >> 2u]);`);
          if (k.accumulate) emit(`          v += p.beta * vec4<f32>(C[ci]);`);
          emit(`          C[ci] = ${out("v")};`);
          emit(`        }`);
        } else {
          for (let j = 0; j < 4; j++) {
            emit(`        if (n + ${j}u < N) {`);
            emit(`          let ci = cBase + m * N + n + ${j}u;`);
            emit(`          var e = v.${comp[j]};`);
            if (k.bias) emit(`          e += f32(bias[n + ${j}u]);`);
            if (k.accumulate) emit(`          e += p.beta * f32(C[ci]);`);
            emit(`          C[ci] = ${outS("e")};`);
            emit(`        }`);
          }
        }
        emit(`      }`);
      }
      emit(`    }`);
      emit(`  }`);
    }
  }
  emit(`}`);
  return L.join("\n");
}
