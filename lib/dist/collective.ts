// Collectives for data-parallel training (one process per GPU): an all-reduce sum of f32 buffers,
// a broadcast and a barrier, through an existing engine reached by FFI. Open MPI's libmpi is the
// backend that is built and tested (on the CPU); a process not started by mpirun gets the
// single-process backend, whose collectives are no-ops. NCCL is not built: WebGPU buffers are not
// CUDA memory, so NCCL would only save MPI's host transport (see docs/several-gpus.md).
//
// Every MPI collective is non-blocking (MPI_Iallreduce, MPI_Ibcast, MPI_Ibarrier) and polled with
// MPI_Test on the main thread under a deadline: a rank that dies or hangs makes the others fail
// with a clear error in bounded time (mpirun itself also ends the job when a rank exits non-zero).
import { UserError } from "../errors.ts";

export interface Collective {
  readonly backend: "single" | "mpi";
  readonly rank: number;
  readonly size: number;
  /** Sums `data` over all ranks, in place. */
  allReduceSum(data: Float32Array): Promise<void>;
  /** Copies `root`'s `data` into every rank's, in place. */
  broadcast(data: Float32Array, root: number): Promise<void>;
  barrier(): Promise<void>;
  /** Ends the collective (MPI_Finalize); call it on success only: every rank must reach it. */
  close(): void;
}

/** Size 1: nothing to exchange. */
export class SingleProcess implements Collective {
  readonly backend = "single";
  readonly rank = 0;
  readonly size = 1;
  allReduceSum(_data: Float32Array): Promise<void> {
    return Promise.resolve();
  }
  broadcast(_data: Float32Array, root: number): Promise<void> {
    if (root !== 0) throw new RangeError(`broadcast: root ${root} of a world of 1`);
    return Promise.resolve();
  }
  barrier(): Promise<void> {
    return Promise.resolve();
  }
  close(): void {}
}

/** The world size the launcher announced (Open MPI, PMIx or MPICH's Hydra), or 1. */
export function launchedWorldSize(env = Deno.env.toObject()): number {
  const v = env.OMPI_COMM_WORLD_SIZE ?? env.PMIX_SIZE ?? env.PMI_SIZE;
  const n = v === undefined ? 1 : Number(v);
  return Number.isInteger(n) && n >= 1 ? n : 1;
}

/** Seconds a collective may wait for the other ranks before the job is aborted. */
export function collectiveTimeout(env = Deno.env.toObject()): number {
  const v = env.VMAMBAR_COLLECTIVE_TIMEOUT;
  if (v === undefined || v === "") return 600;
  const s = Number(v);
  if (!(s > 0)) {
    throw new UserError(`VMAMBAR_COLLECTIVE_TIMEOUT must be positive seconds, got ${v}`);
  }
  return s;
}

let current: Collective | null = null;

/**
 * The process's collective: MPI when mpirun started it (more than one rank), else the single
 * process. The first call initialises MPI; later calls return the same object.
 */
export function collective(): Collective {
  if (current) return current;
  current = launchedWorldSize() > 1 ? MpiCollective.open() : new SingleProcess();
  return current;
}

// Open MPI's ABI (mpi.h of 4.x/5.x): handles are pointers to exported globals, MPI_IN_PLACE is
// (void *) 1, MPI_STATUS_IGNORE is NULL, MPI_SUCCESS is 0.
const MPI_SYMBOLS = {
  MPI_Initialized: { parameters: ["buffer"], result: "i32" },
  MPI_Init: { parameters: ["pointer", "pointer"], result: "i32" },
  MPI_Finalize: { parameters: [], result: "i32" },
  MPI_Comm_rank: { parameters: ["pointer", "buffer"], result: "i32" },
  MPI_Comm_size: { parameters: ["pointer", "buffer"], result: "i32" },
  MPI_Iallreduce: {
    parameters: ["pointer", "buffer", "i32", "pointer", "pointer", "pointer", "buffer"],
    result: "i32",
  },
  MPI_Ibcast: {
    parameters: ["buffer", "i32", "pointer", "i32", "pointer", "buffer"],
    result: "i32",
  },
  MPI_Ibarrier: { parameters: ["pointer", "buffer"], result: "i32" },
  MPI_Test: { parameters: ["buffer", "buffer", "pointer"], result: "i32" },
  MPI_Abort: { parameters: ["pointer", "i32"], result: "i32" },
  ompi_mpi_comm_world: { type: "pointer" },
  ompi_mpi_float: { type: "pointer" },
  ompi_mpi_op_sum: { type: "pointer" },
} as const;

type MpiLib = Deno.DynamicLibrary<typeof MPI_SYMBOLS>["symbols"];

/** Candidate file names of Open MPI's library (VMAMBAR_LIBMPI first). */
function libmpiCandidates(): string[] {
  const given = Deno.env.get("VMAMBAR_LIBMPI");
  return [...(given ? [given] : []), "libmpi.so.40", "libmpi.so"];
}

// MPI_Iallreduce takes at most INT_MAX elements; chunks stay well below it.
const MAX_COUNT = 1 << 28;

export class MpiCollective implements Collective {
  readonly backend = "mpi";
  #closed = false;

  private constructor(
    private readonly lib: MpiLib,
    private readonly close_: () => void,
    readonly rank: number,
    readonly size: number,
    readonly timeoutS: number,
  ) {}

  static open(): MpiCollective {
    const timeoutS = collectiveTimeout();
    const errors: string[] = [];
    let dl: Deno.DynamicLibrary<typeof MPI_SYMBOLS> | null = null;
    for (const name of libmpiCandidates()) {
      try {
        dl = Deno.dlopen(name, MPI_SYMBOLS);
        break;
      } catch (e) {
        errors.push(`${name}: ${(e as Error).message}`);
      }
    }
    if (!dl) {
      throw new UserError(
        "started by mpirun, but Open MPI's library did not load (install openmpi-bin, or " +
          `set VMAMBAR_LIBMPI to its path): ${errors.join("; ")}`,
      );
    }
    const lib = dl.symbols;
    const flag = new Int32Array(1);
    check(lib.MPI_Initialized(flag), "MPI_Initialized");
    if (!flag[0]) check(lib.MPI_Init(null, null), "MPI_Init");
    const out = new Int32Array(1);
    check(lib.MPI_Comm_rank(lib.ompi_mpi_comm_world, out), "MPI_Comm_rank");
    const rank = out[0];
    check(lib.MPI_Comm_size(lib.ompi_mpi_comm_world, out), "MPI_Comm_size");
    return new MpiCollective(lib, () => dl.close(), rank, out[0], timeoutS);
  }

  /** Polls a request until it completes; past the deadline, aborts the whole job. */
  async #wait(request: BigUint64Array, what: string): Promise<void> {
    const done = new Int32Array(1);
    const t0 = performance.now();
    const deadline = t0 + this.timeoutS * 1000;
    for (let polls = 0;; polls++) {
      check(this.lib.MPI_Test(request, done, null), "MPI_Test");
      if (done[0]) return;
      const now = performance.now();
      if (now > deadline) this.#abort(what);
      // Spin for the first milliseconds (MPI progresses only inside its calls), then yield.
      if (now - t0 > 20) await new Promise((r) => setTimeout(r, polls % 100 === 0 ? 1 : 0));
    }
  }

  #abort(what: string): never {
    console.error(
      `vmambar: rank ${this.rank} of ${this.size}: ${what} waited ${this.timeoutS} s for the ` +
        "other ranks (one died or hangs; VMAMBAR_COLLECTIVE_TIMEOUT sets the limit): aborting " +
        "the job",
    );
    this.lib.MPI_Abort(this.lib.ompi_mpi_comm_world, 70);
    // MPI_Abort does not return; if it did, leave anyway.
    Deno.exit(70);
  }

  #live(): void {
    if (this.#closed) throw new Error("collective: used after close()");
  }

  /**
   * Runs `start` on each piece of `data` of at most MAX_COUNT floats (MPI counts are C ints) and
   * waits for each request in turn.
   */
  async #inPieces(
    data: Float32Array,
    what: string,
    start: (part: Float32Array, req: BigUint64Array) => void,
  ): Promise<void> {
    this.#live();
    for (let at = 0; at < data.length; at += MAX_COUNT) {
      const req = new BigUint64Array(1);
      start(data.subarray(at, Math.min(data.length, at + MAX_COUNT)), req);
      await this.#wait(req, `${what} of ${data.length} floats`);
    }
  }

  async allReduceSum(data: Float32Array): Promise<void> {
    const lib = this.lib;
    const inPlace = Deno.UnsafePointer.create(1n);
    await this.#inPieces(data, "an all-reduce", (part, req) =>
      check(
        lib.MPI_Iallreduce(
          inPlace,
          part,
          part.length,
          lib.ompi_mpi_float,
          lib.ompi_mpi_op_sum,
          lib.ompi_mpi_comm_world,
          req,
        ),
        "MPI_Iallreduce",
      ));
  }

  async broadcast(data: Float32Array, root: number): Promise<void> {
    this.#live();
    if (!(root >= 0 && root < this.size)) {
      throw new RangeError(`broadcast: root ${root} of a world of ${this.size}`);
    }
    const lib = this.lib;
    await this.#inPieces(data, "a broadcast", (part, req) =>
      check(
        lib.MPI_Ibcast(part, part.length, lib.ompi_mpi_float, root, lib.ompi_mpi_comm_world, req),
        "MPI_Ibcast",
      ));
  }

  async barrier(): Promise<void> {
    this.#live();
    const req = new BigUint64Array(1);
    check(this.lib.MPI_Ibarrier(this.lib.ompi_mpi_comm_world, req), "MPI_Ibarrier");
    await this.#wait(req, "a barrier");
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    check(this.lib.MPI_Finalize(), "MPI_Finalize");
    this.close_();
  }
}

function check(code: number, call: string): void {
  // Open MPI's default error handler aborts before returning an error; this is for the others.
  if (code !== 0) throw new Error(`${call} failed with MPI error ${code}`);
}
