// A process of tests/dist_test.ts's MPI jobs: checks the collectives on two ranks, or (with
// `hang`) leaves rank 1 asleep so that rank 0's all-reduce must give up.
import { collective } from "../lib/dist/collective.ts";

const c = collective();
if (Deno.args[0] === "hang" && c.rank === 1) await new Promise((r) => setTimeout(r, 120_000));
const sum = Float32Array.from({ length: 5 }, (_, i) => i + 10 * c.rank);
await c.allReduceSum(sum);
const root = Float32Array.from({ length: 3 }, () => (c.rank === c.size - 1 ? 7 : c.rank));
await c.broadcast(root, c.size - 1);
await c.barrier();
console.log(JSON.stringify({ rank: c.rank, size: c.size, sum: [...sum], root: [...root] }));
c.close();
