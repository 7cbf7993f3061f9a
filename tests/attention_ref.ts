// float64 CPU reference of attention over [B, S, H, Dh] tensors and a mask's host tables (shared by
// tests/attention_test.ts and tools/bench_attention.ts): naive softmax with the same mask, and its
// analytic gradients.

export interface Geometry {
  B: number;
  sq: number;
  sk: number;
  H: number;
  Dh: number;
  qStart: number;
  mask: { levels: ArrayLike<number>; keyLevels: ArrayLike<number>; length: number };
}

const at = (g: Geometry, rows: number, b: number, s: number, h: number) =>
  ((b * rows + s) * g.H + h) * g.Dh;

/** Probabilities of query i over the keys (0 where masked; all 0 for an empty row). */
function probabilities(
  g: Geometry,
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  b: number,
  h: number,
  i: number,
) {
  const scale = 1 / Math.sqrt(g.Dh);
  const level = g.mask.levels[g.qStart + i];
  const p = new Float64Array(g.sk);
  let max = -Infinity;
  const vis: boolean[] = [];
  for (let j = 0; j < g.sk; j++) {
    vis[j] = g.mask.keyLevels[b * g.mask.length + j] <= level;
    if (!vis[j]) continue;
    let s = 0;
    for (let d = 0; d < g.Dh; d++) s += q[at(g, g.sq, b, i, h) + d] * k[at(g, g.sk, b, j, h) + d];
    p[j] = s * scale;
    max = Math.max(max, p[j]);
  }
  let sum = 0;
  for (let j = 0; j < g.sk; j++) sum += p[j] = vis[j] ? Math.exp(p[j] - max) : 0;
  for (let j = 0; j < g.sk; j++) p[j] = sum > 0 ? p[j] / sum : 0;
  return p;
}

export function refAttention(g: Geometry, [q, k, v]: ArrayLike<number>[]): Float64Array {
  const out = new Float64Array(g.B * g.sq * g.H * g.Dh);
  for (let b = 0; b < g.B; b++) {
    for (let h = 0; h < g.H; h++) {
      for (let i = 0; i < g.sq; i++) {
        const p = probabilities(g, q, k, b, h, i);
        for (let j = 0; j < g.sk; j++) {
          if (p[j] === 0) continue;
          for (let d = 0; d < g.Dh; d++) {
            out[at(g, g.sq, b, i, h) + d] += p[j] * v[at(g, g.sk, b, j, h) + d];
          }
        }
      }
    }
  }
  return out;
}

/** Analytic gradients of sum(attention · dout): dS = P ∘ (dP − rowsum(dP ∘ P)). */
export function refGrads(g: Geometry, [q, k, v]: ArrayLike<number>[], dout: ArrayLike<number>) {
  const scale = 1 / Math.sqrt(g.Dh);
  const dq = new Float64Array(q.length),
    dk = new Float64Array(k.length),
    dv = new Float64Array(v.length);
  for (let b = 0; b < g.B; b++) {
    for (let h = 0; h < g.H; h++) {
      for (let i = 0; i < g.sq; i++) {
        const p = probabilities(g, q, k, b, h, i);
        const qi = at(g, g.sq, b, i, h);
        const dp = new Float64Array(g.sk);
        let D = 0;
        for (let j = 0; j < g.sk; j++) {
          for (let d = 0; d < g.Dh; d++) dp[j] += dout[qi + d] * v[at(g, g.sk, b, j, h) + d];
          D += p[j] * dp[j];
        }
        for (let j = 0; j < g.sk; j++) {
          if (p[j] === 0) continue;
          const kj = at(g, g.sk, b, j, h);
          const ds = p[j] * (dp[j] - D) * scale;
          for (let d = 0; d < g.Dh; d++) {
            dq[qi + d] += ds * k[kj + d];
            dk[kj + d] += ds * q[qi + d];
            dv[kj + d] += p[j] * dout[qi + d];
          }
        }
      }
    }
  }
  return [dq, dk, dv];
}

// RoPE's θ (DESIGN §4), written out here rather than imported, so the reference stands alone.
const THETA = 10000;

/** float64 RoPE: pairs (2j, 2j+1) of axis a (m = Dh/A dims) turned by coord[a]·θ^(−2j/m). */
export function refRope(
  x: ArrayLike<number>,
  shape: number[],
  coords: number[][],
  sign = 1,
): Float64Array {
  const [B, S, H, Dh] = shape;
  const A = coords[0].length, m = Dh / A;
  const out = new Float64Array(x.length);
  for (let b = 0; b < B; b++) {
    for (let s = 0; s < S; s++) {
      for (let h = 0; h < H; h++) {
        for (let a = 0; a < A; a++) {
          for (let j = 0; j < m / 2; j++) {
            const i = ((b * S + s) * H + h) * Dh + a * m + 2 * j;
            const t = sign * coords[s][a] * Math.pow(THETA, (-2 * j) / m);
            out[i] = x[i] * Math.cos(t) - x[i + 1] * Math.sin(t);
            out[i + 1] = x[i] * Math.sin(t) + x[i + 1] * Math.cos(t);
          }
        }
      }
    }
  }
  return out;
}

/** Coordinates written out from DESIGN.md §4, independently of lib/tensor/rope.ts. */
export function designCoords(scales: number[], T: number): number[][] {
  const P = scales.at(-1)!;
  const out: number[][] = [];
  for (let t = 0; t < T; t++) out.push([0, 0]);
  for (const pn of scales) {
    for (let i = 0; i < pn * pn; i++) {
      out.push([(Math.floor(i / pn) + 0.5) * P / pn, ((i % pn) + 0.5) * P / pn]);
    }
  }
  return out;
}
