// float64 references shared by the image-side tests: PyTorch's bicubic and area resampling as
// matrices, F.conv2d with its gradients, and the nearest-code argmin.
import type { Conv2dOptions } from "../lib/tensor/conv2d.ts";

/** [m, n] matrix of PyTorch's bicubic (align_corners=False, a = −0.75) from n to m samples. */
export function bicubicMatrix(n: number, m: number): Float64Array {
  const A = -0.75;
  const near = (x: number) => ((A + 2) * x - (A + 3)) * x * x + 1;
  const far = (x: number) => ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
  const R = new Float64Array(m * n);
  for (let o = 0; o < m; o++) {
    const s = (n / m) * (o + 0.5) - 0.5;
    const f = Math.floor(s), t = s - f;
    const w = [far(t + 1), near(t), near(1 - t), far(2 - t)];
    for (let k = 0; k < 4; k++) R[o * n + Math.min(Math.max(f - 1 + k, 0), n - 1)] += w[k];
  }
  return R;
}

/** [m, n] matrix of adaptive average pooling from n to m samples. */
export function areaMatrix(n: number, m: number): Float64Array {
  const R = new Float64Array(m * n);
  for (let o = 0; o < m; o++) {
    const a = Math.floor((o * n) / m), b = Math.ceil(((o + 1) * n) / m);
    for (let i = a; i < b; i++) R[o * n + i] = 1 / (b - a);
  }
  return R;
}

/** y[p] = Ry · x[p] · Rxᵀ over planes; with `adjoint`, x[p] = Ryᵀ · y[p] · Rx instead. */
export function separable(
  v: ArrayLike<number>,
  planes: number,
  [H, W]: number[],
  [oH, oW]: number[],
  Ry: Float64Array,
  Rx: Float64Array,
  adjoint = false,
): Float64Array {
  const out = new Float64Array(planes * (adjoint ? H * W : oH * oW));
  for (let p = 0; p < planes; p++) {
    for (let oy = 0; oy < oH; oy++) {
      for (let ox = 0; ox < oW; ox++) {
        for (let y = 0; y < H; y++) {
          for (let x = 0; x < W; x++) {
            const w = Ry[oy * H + y] * Rx[ox * W + x];
            if (w === 0) continue;
            if (adjoint) out[(p * H + y) * W + x] += w * v[(p * oH + oy) * oW + ox];
            else out[(p * oH + oy) * oW + ox] += w * v[(p * H + y) * W + x];
          }
        }
      }
    }
  }
  return out;
}

export interface Case {
  x: [number, number, number, number];
  w: [number, number, number, number];
  bias: boolean;
  opts: Conv2dOptions;
}

export function pads(o: Conv2dOptions): readonly [number, number, number, number] {
  const p = o.padding ?? 0;
  return typeof p === "number" ? [p, p, p, p] : p;
}

/** float64 F.conv2d and its three gradients for the output gradient r. */
export function convRef(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  bias: ArrayLike<number> | null,
  c: Case,
  r?: ArrayLike<number>,
) {
  const [B, Cin, H, W] = c.x;
  const [Cout, , kh, kw] = c.w;
  const s = c.opts.stride ?? 1;
  const [pt, pb, pl, pr] = pads(c.opts);
  const Ho = Math.floor((H + pt + pb - kh) / s) + 1;
  const Wo = Math.floor((W + pl + pr - kw) / s) + 1;
  const y = new Float64Array(B * Cout * Ho * Wo);
  const dx = new Float64Array(x.length), dw = new Float64Array(w.length);
  const db = new Float64Array(Cout);
  for (let b = 0; b < B; b++) {
    for (let co = 0; co < Cout; co++) {
      for (let oy = 0; oy < Ho; oy++) {
        for (let ox = 0; ox < Wo; ox++) {
          const o = ((b * Cout + co) * Ho + oy) * Wo + ox;
          const gy = r ? r[o] : 0;
          let acc = bias ? bias[co] : 0;
          db[co] += gy;
          for (let ci = 0; ci < Cin; ci++) {
            for (let ky = 0; ky < kh; ky++) {
              const iy = oy * s - pt + ky;
              if (iy < 0 || iy >= H) continue;
              for (let kx = 0; kx < kw; kx++) {
                const ix = ox * s - pl + kx;
                if (ix < 0 || ix >= W) continue;
                const xi = ((b * Cin + ci) * H + iy) * W + ix;
                const wi = ((co * Cin + ci) * kh + ky) * kw + kx;
                acc += w[wi] * x[xi];
                dx[xi] += w[wi] * gy;
                dw[wi] += x[xi] * gy;
              }
            }
          }
          y[o] = acc;
        }
      }
    }
  }
  return { y, dx, dw, db, shape: [B, Cout, Ho, Wo] };
}

/** float64 argmin over codes with ties to the lowest index; `at(n, c)` reads vector n. */
export function nearestRef(
  at: (n: number, c: number) => number,
  e: ArrayLike<number>,
  N: number,
  C: number,
) {
  const V = e.length / C;
  const idx = new Int32Array(N);
  const best = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    let bd = Infinity, bi = 0;
    for (let v = 0; v < V; v++) {
      let d = 0;
      for (let c = 0; c < C; c++) d += (at(n, c) - e[v * C + c]) ** 2;
      if (d < bd) [bd, bi] = [d, v];
    }
    idx[n] = bi;
    best[n] = bd;
  }
  return { idx, best };
}
