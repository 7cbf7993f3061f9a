// Multi-tensor optimizer kernels: one dispatch updates up to K parameters, each bound as its own
// storage buffers (WGSL cannot index an array of bindings, so the code is generated per slot).
// A model of a few hundred tensors then costs a few dozen dispatches per step instead of two per
// tensor. optim.wgsl's clip_scale turns the partial sums into the clip scale that AdamW reads.

const range = (k: number) => Array.from({ length: k }, (_, j) => j);

/**
 * Sums of squares of K gradients into per-workgroup partials. Workgroups [w_{j-1}, w_j) belong
 * to tensor j (grid-striding over its n_j elements); workgroup w writes partials[out_offset + w].
 */
export function sumSquaresMultiWgsl(k: number): string {
  const fields = range(k).map((j) => `n${j}: u32, w${j}: u32,`).join(" ");
  const bindings = range(k)
    .map((j) => `@group(0) @binding(${j + 1}) var<storage, read> g${j}: array<f32>;`)
    .join("\n");
  const branches = range(k).map((j) => {
    const start = j === 0 ? "0u" : `u.w${j - 1}`;
    return `${j === 0 ? "" : "else "}if (w < u.w${j}) {
    let first = w - ${start};
    let stride = (u.w${j} - ${start}) * 256u;
    for (var i = first * 256u + lid.x; i < u.n${j}; i += stride) { let g = g${j}[i]; s += g * g; }
  }`;
  }).join(" ");
  return `// generated: sum of squares over ${k} gradients
struct U { ${fields} out_offset: u32 }
@group(0) @binding(0) var<uniform> u: U;
${bindings}
@group(0) @binding(${k + 1}) var<storage, read_write> partials: array<f32>;
var<workgroup> acc: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let w = wid.x;
  var s = 0.0;
  ${branches}
  acc[lid.x] = s;
  workgroupBarrier();
  for (var h = 128u; h > 0u; h >>= 1u) {
    if (lid.x < h) { acc[lid.x] += acc[lid.x + h]; }
    workgroupBarrier();
  }
  if (lid.x == 0u) { partials[u.out_offset + w] = acc[0]; }
}
`;
}

/**
 * AdamW with decoupled weight decay (Loshchilov & Hutter), as torch.optim.AdamW, over K tensors:
 *   p ← p·(1 − lr·wd);  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²
 *   p ← p − lr/bc1 · m / (√v / √bc2 + eps),  with g already multiplied by the clip scale.
 * Element i of the flattened range [e_{j-1}, e_j) belongs to tensor j, with weight decay wd_j.
 */
export function adamwMultiWgsl(k: number): string {
  const fields = range(k).map((j) => `e${j}: u32, wd${j}: f32,`).join(" ");
  const bindings = range(k).map((j) =>
    [
      `@group(0) @binding(${4 * j + 1}) var<storage, read_write> p${j}: array<f32>;`,
      `@group(0) @binding(${4 * j + 2}) var<storage, read> g${j}: array<f32>;`,
      `@group(0) @binding(${4 * j + 3}) var<storage, read_write> m${j}: array<f32>;`,
      `@group(0) @binding(${4 * j + 4}) var<storage, read_write> v${j}: array<f32>;`,
    ].join("\n")
  ).join("\n");
  const branches = range(k).map((j) =>
    `${j === 0 ? "" : "else "}if (i < u.e${j}) {
    let k = i - ${j === 0 ? "0u" : `u.e${j - 1}`};
    let g = g${j}[k] * clip[1];
    let m = u.beta1 * m${j}[k] + (1.0 - u.beta1) * g;
    let v = u.beta2 * v${j}[k] + (1.0 - u.beta2) * g * g;
    m${j}[k] = m;
    v${j}[k] = v;
    let p = p${j}[k] * (1.0 - u.lr * u.wd${j});
    p${j}[k] = p - (u.lr / u.bc1) * m / (sqrt(v) / sqrt(u.bc2) + u.eps);
  }`
  ).join(" ");
  return `// generated: AdamW over ${k} tensors
struct U { ${fields} lr: f32, beta1: f32, beta2: f32, eps: f32, bc1: f32, bc2: f32 }
@group(0) @binding(0) var<uniform> u: U;
${bindings}
@group(0) @binding(${4 * k + 1}) var<storage, read> clip: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let i = gid.x + gid.y * nw.x * 256u;
  ${branches}
}
`;
}

/**
 * An exponential moving average of K tensors: e ← e + (1 − decay)·(p − e). Element i of the
 * flattened range [e_{j-1}, e_j) belongs to tensor j.
 */
export function emaMultiWgsl(k: number): string {
  const fields = range(k).map((j) => `e${j}: u32,`).join(" ");
  const bindings = range(k).map((j) =>
    [
      `@group(0) @binding(${2 * j + 1}) var<storage, read_write> a${j}: array<f32>;`,
      `@group(0) @binding(${2 * j + 2}) var<storage, read> p${j}: array<f32>;`,
    ].join("\n")
  ).join("\n");
  const branches = range(k).map((j) =>
    `${j === 0 ? "" : "else "}if (i < u.e${j}) {
    let k = i - ${j === 0 ? "0u" : `u.e${j - 1}`};
    a${j}[k] += u.rate * (p${j}[k] - a${j}[k]);
  }`
  ).join(" ");
  return `// generated: EMA over ${k} tensors
struct U { ${fields} rate: f32 }
@group(0) @binding(0) var<uniform> u: U;
${bindings}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  ${branches}
}
`;
}
