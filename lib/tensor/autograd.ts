// Reverse-mode autodiff over the ops recorded by record(): walks the tape from the loss back to the
// leaves and accumulates into each leaf's `.grad`. Knows nothing of kernels: it calls ops.
import { ShapeError } from "../errors.ts";
import { keep, noGrad, Tensor } from "./tensor.ts";
import { add, addInPlace, copy, fill } from "./ops.ts";

function topoOrder(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const seen = new Set<Tensor>();
  // Iterative DFS: model graphs are deep enough to overflow the JS stack.
  const stack: [Tensor, number][] = [[root, 0]];
  seen.add(root);
  while (stack.length) {
    const top = stack[stack.length - 1];
    const [t, i] = top;
    const inputs = t.node?.inputs ?? [];
    if (i < inputs.length) {
      top[1]++;
      const next = inputs[i];
      if (next.requiresGrad && !seen.has(next)) {
        seen.add(next);
        stack.push([next, 0]);
      }
    } else {
      stack.pop();
      order.push(t);
    }
  }
  return order;
}

/**
 * Back-propagates from `root` (a one-element loss unless `grad` is given). Leaf gradients are
 * accumulated into `.grad`, which their owner keeps (and frees with zeroGrad()).
 */
export function backward(root: Tensor, grad?: Tensor): void {
  if (!root.requiresGrad) throw new Error("backward: the tensor does not require grad");
  if (!grad && root.size !== 1) {
    throw new ShapeError(`backward: needs a gradient for non-scalar [${root.shape}]`);
  }
  noGrad(() => {
    const grads = new Map<Tensor, Tensor>();
    grads.set(root, grad ?? fill(root.shape, 1));
    const held = (g: Tensor) => {
      for (const v of grads.values()) if (v === g) return true;
      return false;
    };
    const order = topoOrder(root);
    for (let k = order.length - 1; k >= 0; k--) {
      const t = order[k];
      const g = grads.get(t);
      if (!g) continue;
      grads.delete(t);
      let owned = false;
      if (!t.node) {
        // A leaf: accumulate into its own buffer, never aliasing a gradient the tape still uses.
        // A gradient nothing else holds or views becomes the leaf's own, without a copy.
        if (t.grad) addInPlace(t.grad, g);
        else if (g !== grad && !held(g) && !g.shared) t.grad = keep(g), owned = true;
        else t.grad = keep(copy(g));
      } else {
        const gs = t.node.backward(g);
        t.node.inputs.forEach((input, i) => {
          const gi = gs[i];
          if (!gi || !input.requiresGrad) return;
          if (gi.shape.join() !== input.shape.join()) {
            throw new Error(
              `backward of ${t.node!.op}: gradient [${gi.shape}] for input [${input.shape}]`,
            );
          }
          const prev = grads.get(input);
          grads.set(input, prev ? add(prev, gi) : gi);
          if (prev && !held(prev) && prev !== g) prev.dispose();
        });
      }
      if (!owned && g !== grad && !held(g)) g.dispose();
    }
  });
}

/** Frees the gradients of `params` (before the next accumulation). */
export function zeroGrad(params: Iterable<Tensor>): void {
  for (const p of params) {
    p.grad?.dispose();
    p.grad = null;
  }
}
