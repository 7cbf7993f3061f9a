// Modules: named parameters (PyTorch state-dict names, so checkpoints line up with the reference
// implementations) and seeded initialisers.
import { mulberry32, type Rng } from "../data/random.ts";
import { parameter, type Tensor } from "../tensor/tensor.ts";

export class Module {
  readonly #params = new Map<string, Tensor>();
  readonly #children = new Map<string, Module>();

  /** Registers a parameter under a state-dict name. */
  param(name: string, t: Tensor): Tensor {
    this.#params.set(name, t);
    return t;
  }

  /** Registers a submodule; its parameters are named `name.*`. */
  child<M extends Module>(name: string, m: M): M {
    this.#children.set(name, m);
    return m;
  }

  /** Parameters by state-dict name, e.g. `blocks.3.mamba.in_proj.weight`. */
  namedParameters(prefix = ""): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [k, t] of this.#params) out.push([prefix + k, t]);
    for (const [k, m] of this.#children) out.push(...m.namedParameters(`${prefix}${k}.`));
    return out;
  }

  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  dispose(): void {
    for (const t of this.parameters()) {
      t.grad?.dispose();
      t.grad = null;
      t.dispose();
    }
  }
}

/** Seeded initialisers that follow PyTorch's defaults. */
export class Init {
  readonly rng: Rng;
  constructor(seed: number) {
    this.rng = mulberry32(seed);
  }

  uniform(shape: number[], bound: number): Tensor {
    const n = shape.reduce((a, b) => a * b, 1);
    return parameter(Float32Array.from({ length: n }, () => (2 * this.rng() - 1) * bound), shape);
  }

  normal(shape: number[], std: number): Tensor {
    const n = shape.reduce((a, b) => a * b, 1);
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const u = Math.max(this.rng(), 1e-12);
      out[i] = std * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.rng());
    }
    return parameter(out, shape);
  }

  constant(shape: number[], value: number): Tensor {
    const n = shape.reduce((a, b) => a * b, 1);
    return parameter(new Float32Array(n).fill(value), shape);
  }

  /** A tensor from a function of the flat index (e.g. Mamba's A_log and dt bias). */
  from(shape: number[], f: (i: number) => number): Tensor {
    const n = shape.reduce((a, b) => a * b, 1);
    return parameter(Float32Array.from({ length: n }, (_, i) => f(i)), shape);
  }
}
