// `vmambar eval`: the shapes detector on the world's own renders and on deliberately wrong
// images, the scoring of a detected scene against a prompt, and the command's input checks.
import { type Edges, renderScene, type Scene, shapesScene } from "../lib/data/shapes.ts";
import { CELLS, COLOURS, PALETTE, SHAPES } from "../lib/data/shapes.ts";
import { type DetectedScene, detectScene } from "../lib/eval/detect.ts";

function check(cond: boolean, msg: string): void {
  if (!cond) throw new Error(msg);
}

const keyOf = (s: { background: string; objects: Scene["objects"] | DetectedScene["objects"] }) =>
  `${s.background}|${s.objects.map((o) => `${o.colour} ${o.shape} ${o.size} ${o.cell}`).join(";")}`;

Deno.test("detect: reads back ≥ 99% of rendered scenes, hard and smooth edges, 3 sides", () => {
  for (const side of [48, 64, 96]) {
    for (const edges of ["hard", "smooth"] as Edges[]) {
      const n = 300;
      const misses: string[] = [];
      for (let i = 0; i < n; i++) {
        const scene = shapesScene(11, "detect", i, side);
        const got = keyOf(detectScene(renderScene(scene, side, edges), side));
        if (got !== keyOf(scene)) misses.push(`${keyOf(scene)} read as ${got}`);
      }
      check(misses.length <= n / 100, `${side} px ${edges}: ${misses.length} misses\n${misses[0]}`);
    }
  }
});

/** Each way of making an image wrong for its scene. */
const MUTATIONS: Record<string, (s: Scene) => Scene> = {
  "colour swapped": (s) => {
    const used = new Set([s.background, ...s.objects.map((o) => o.colour)]);
    const colour = COLOURS.find((c) => !used.has(c))!;
    return { ...s, objects: s.objects.map((o, i) => (i === 0 ? { ...o, colour } : o)) };
  },
  "object removed": (s) => ({ ...s, objects: s.objects.slice(1) }),
  "moved to another cell": (s) => {
    const free = CELLS.findIndex((c) => !s.objects.some((o) => o.cell === c));
    const side = 64, cell = side / 3;
    const centre: [number, number] = [(free % 3 + 0.5) * cell, (Math.floor(free / 3) + 0.5) * cell];
    return {
      ...s,
      objects: s.objects.map((o, i) => (i === 0 ? { ...o, cell: CELLS[free], centre } : o)),
    };
  },
  "shape replaced": (s) => ({
    ...s,
    objects: s.objects.map((o, i) =>
      i === 0 ? { ...o, shape: SHAPES[(SHAPES.indexOf(o.shape) + 1) % 3] } : o
    ),
  }),
};

Deno.test("detect: notices a swapped colour, a removed, moved or reshaped object", () => {
  for (const [name, mutate] of Object.entries(MUTATIONS)) {
    for (let i = 0; i < 100; i++) {
      const scene = shapesScene(5, "wrong", i, 64);
      const wrong = mutate(scene);
      // renderScene paints o.rgb, so a changed colour needs its rgb too.
      wrong.objects = wrong.objects.map((o) => ({ ...o, rgb: PALETTE[o.colour] }))
        .sort((a, b) => CELLS.indexOf(a.cell) - CELLS.indexOf(b.cell));
      const edges: Edges = i % 2 ? "smooth" : "hard";
      const got = keyOf(detectScene(renderScene(wrong, 64, edges), 64));
      check(got !== keyOf(scene), `${name}: ${keyOf(scene)} not noticed`);
      check(got === keyOf(wrong), `${name}: read ${got}, drawn ${keyOf(wrong)}`);
    }
  }
});
