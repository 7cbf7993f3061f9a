// `vmambar eval`: the shapes detector on the world's own renders and on deliberately wrong
// images, the scoring of a detected scene against a prompt, and the command's input checks.
import { type Edges, renderScene, type Scene, shapesScene } from "../lib/data/shapes.ts";
import { CELLS, COLOURS, PALETTE, SHAPES } from "../lib/data/shapes.ts";
import { MAX_CAPTION_BYTES } from "../lib/data/shapes.ts";
import { type DetectedScene, detectScene } from "../lib/eval/detect.ts";
import {
  ATTRIBUTES,
  type EvalPrompt,
  PROMPT_KINDS,
  relationHolds,
  scorePrompt,
  shapesPromptSet,
  summarize,
} from "../lib/eval/shapes_eval.ts";

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

Deno.test("shapes prompts: fixed, 25 of each kind interleaved, captions that fit", () => {
  const a = shapesPromptSet(0), b = shapesPromptSet(0);
  check(a.length === 100 && JSON.stringify(a) === JSON.stringify(b), "fixed set of 100");
  check(JSON.stringify(shapesPromptSet(1)) !== JSON.stringify(a), "the seed changes it");
  check(a.slice(0, 4).map((p) => p.kind).join() === PROMPT_KINDS.join(), "interleaved kinds");
  for (const p of a) {
    check(new TextEncoder().encode(p.scene.caption).length <= MAX_CAPTION_BYTES, p.scene.caption);
    if (p.kind === "count") check(/^two /.test(p.scene.caption), p.scene.caption);
    if (p.kind === "relation") {
      const r = p.relation!;
      check(
        relationHolds(r.word, p.scene.objects[r.subject].cell, p.scene.objects[r.object].cell),
        p.scene.caption,
      );
    }
    if (p.named.background) {
      check(p.scene.caption.endsWith(`${p.scene.background} background`), p.scene.caption);
    }
  }
});

Deno.test("shapes scoring: renders score 100%; each kind of error costs its attribute", () => {
  const prompts = shapesPromptSet(3);
  const scores = prompts.map((p) => scorePrompt(p, detectScene(renderScene(p.scene, 64), 64)));
  const sum = summarize(prompts, scores);
  check(sum.allRight === 100, `renders: ${sum.allRight}/100`);
  for (const a of ATTRIBUTES) check(sum.attributes[a].total > 0, `${a} never checked`);
  const wrongOf = (p: EvalPrompt, scene: Scene) => {
    const d = detectScene(renderScene(scene, 64), 64);
    return Object.entries(scorePrompt(p, d).checked).filter(([, ok]) => !ok).map(([a]) => a);
  };
  const attr = prompts.find((p) => p.kind === "attributes")!;
  const o = attr.scene.objects[0];
  const other = COLOURS.find((c) => c !== o.colour && c !== attr.scene.background)!;
  const moved = CELLS[(CELLS.indexOf(o.cell) + 1) % 9];
  const cellIndex = CELLS.indexOf(moved);
  const with1 = (patch: Partial<Scene["objects"][0]>, bg = attr.scene.background): Scene => ({
    ...attr.scene,
    background: bg,
    objects: [{ ...o, ...patch }],
  });
  check(wrongOf(attr, with1({ colour: other, rgb: PALETTE[other] })).join() === "colour", "colour");
  const shape = SHAPES[(SHAPES.indexOf(o.shape) + 1) % 3];
  check(wrongOf(attr, with1({ shape })).join() === "shape", "shape");
  const size = o.size === "small" ? "large" : "small";
  check(
    wrongOf(attr, with1({ size, extent: size === "small" ? 64 / 6 : 64 / 3 })).join() === "size",
    "size",
  );
  const centre: [number, number] = [
    (cellIndex % 3 + 0.5) * 64 / 3,
    (Math.floor(cellIndex / 3) + 0.5) * 64 / 3,
  ];
  check(wrongOf(attr, with1({ cell: moved, centre })).join() === "cell", "cell");
  check(wrongOf(attr, with1({}, other)).join() === "background", "background");
  check(
    wrongOf(attr, { ...attr.scene, objects: [] }).join() === "colour,shape,size,cell,count",
    "empty",
  );
  const rel = prompts.find((p) => p.kind === "relation")!;
  const swapped: Scene = {
    ...rel.scene,
    objects: rel.scene.objects.map((x, i) => {
      const y = rel.scene.objects[1 - i];
      return { ...x, cell: y.cell, centre: y.centre };
    }),
  };
  check(wrongOf(rel, swapped).includes("relation"), "relation swapped");
  const count = prompts.find((p) => p.kind === "count")!;
  check(
    wrongOf(count, { ...count.scene, objects: count.scene.objects.slice(1) }).includes("count"),
    "count",
  );
});

/** `vmambar ARGS…` in a subprocess, from the repository root. */
async function vmambar(...args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts", ...args],
    cwd: new URL("..", import.meta.url).pathname,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("eval cli: --help, and bad input is one line", async () => {
  const help = await vmambar("eval", "--help");
  check(help.code === 0 && /--set shapes\|tokens DIR\|images DIR/.test(help.stdout), help.stdout);
  check(/--tokenizer-ceiling/.test(help.stdout) && /--edges E/.test(help.stdout), help.stdout);
  const cases: [string[], RegExp][] = [
    [[], /give --set shapes/],
    [["--set", "nope"], /--set must be shapes, tokens or images/],
    [["--set", "tokens"], /--set tokens needs one DIR/],
    [["--set", "images", "/no/such/dir"], /no such folder/],
    [["--set", "shapes", "extra"], /takes no DIR/],
    [["--set", "shapes", "--limit", "0"], /--limit must be an integer ≥ 1/],
    [["--set", "shapes", "--model", "/no/model.safetensors"], /--model .*: no such file/],
    [["--set", "shapes", "--out", "/tmp"], /--out \/tmp is a folder/],
    [["--set", "tokens", "/tmp", "--tokenizer-ceiling"], /goes with --set shapes/],
    [["--set", "shapes", "--tokenizer-ceiling", "--model", "m"], /uses no model/],
    [["--set", "shapes", "--tokenizer-ceiling", "--edges", "soft"], /--edges must be one of/],
    [["--set", "shapes", "--edges", "hard"], /--edges goes with --tokenizer-ceiling/],
  ];
  for (const [args, want] of cases) {
    const r = await vmambar("eval", ...args);
    const lines = r.stderr.trim().split("\n");
    check(r.code !== 0 && lines.length === 1 && want.test(lines[0]), `${args}: ${r.stderr}`);
  }
});

Deno.test("eval cli: --set shapes --limit 2 with the default model writes a report", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vmambar-eval-" });
  try {
    const r = await vmambar("eval", "--set", "shapes", "--limit", "2", "--out", `${dir}/r.md`);
    check(r.code === 0, r.stderr);
    check(/every attribute right\*\* \| \d \| 2 \|/.test(r.stdout), r.stdout);
    check(/eval: 2\/2 images/.test(r.stderr), r.stderr);
    const md = await Deno.readTextFile(`${dir}/r.md`);
    check(md.includes("| colour |") && md.includes("](r.png)"), md);
    check((await Deno.stat(`${dir}/r.png`)).size > 0, "grid PNG");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("eval cli: --set shapes --tokenizer-ceiling --limit 8: renders 100%, no model", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vmambar-ceiling-" });
  try {
    const r = await vmambar(
      "eval",
      "--set",
      "shapes",
      "--tokenizer-ceiling",
      "--limit",
      "8",
      "--out",
      `${dir}/c.md`,
    );
    check(r.code === 0, r.stderr);
    check(/8\/8 hard-edged renders/.test(r.stderr) && /8\/8 smooth-edged/.test(r.stderr), r.stderr);
    const header = r.stdout.split("\n")[0];
    check(
      header === "| attribute | renders, hard | through the tokenizer, hard | renders, smooth | " +
          "through the tokenizer, smooth |",
      r.stdout,
    );
    // The renders are read back whole; the reconstructions are scored (some share of 8) and are
    // not the renders themselves (a finite PSNR).
    const all = r.stdout.split("\n").find((l) => l.includes("every attribute right"))!;
    const cells = all.split("|").slice(2, 6).map((c) => c.trim());
    check(cells[0] === "**100.0% (8/8)**" && cells[2] === "**100.0% (8/8)**", all);
    check(/^\*\*\d+\.\d% \([0-8]\/8\)\*\*$/.test(cells[1]), all);
    check(/^\*\*\d+\.\d% \([0-8]\/8\)\*\*$/.test(cells[3]), all);
    check(/\d+\.\d\d dB \(hard edges\), \d+\.\d\d dB \(smooth edges\)/.test(r.stdout), r.stdout);
    const md = await Deno.readTextFile(`${dir}/c.md`);
    check(!md.includes("- model:") && md.includes("8 prompts, seed 0, 64-px images"), md);
    check(md.includes("## Through the tokenizer, smooth edges") && md.includes("](c.png)"), md);
    const png = await Deno.readFile(`${dir}/c.png`);
    // 2 edge styles × (a row of renders + a row of reconstructions), 10 columns of 64 px.
    const view = new DataView(png.buffer, png.byteOffset);
    check(view.getUint32(16) === 10 * 66 - 2 && view.getUint32(20) === 4 * 66 - 2, "grid size");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
