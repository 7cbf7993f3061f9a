// The shapes benchmark of `vmambar eval --set shapes` (DESIGN.md §6, issue 11): a fixed, seeded
// set of prompts from the world's grammar, the same number of each kind, each with the scene it
// asks for; and the score of a detected scene against it, attribute by attribute.
import { deriveSeed, mulberry32, pick, type Rng, shuffleInPlace } from "../data/random.ts";
import {
  article,
  cellPhrase,
  CELLS,
  type Colour,
  COLOURS,
  nounPhrase,
  PALETTE,
  type Scene,
  type Shape,
  type ShapeObject,
  SHAPES,
  type Size,
  SIZES,
} from "../data/shapes.ts";
import type { DetectedObject, DetectedScene } from "./detect.ts";

/**
 * attributes: one object with colour, shape, size, cell and background named; cell: one object
 * placed in a cell; relation: two objects, one left of / right of / above / below the other;
 * count: two objects of one colour and shape ("two purple circles").
 */
export const PROMPT_KINDS = ["attributes", "cell", "relation", "count"] as const;
export type PromptKind = typeof PROMPT_KINDS[number];

export const ATTRIBUTES = [
  "colour",
  "shape",
  "size",
  "cell",
  "count",
  "relation",
  "background",
] as const;
export type Attribute = typeof ATTRIBUTES[number];

export type RelationWord = "to the left of" | "to the right of" | "above" | "below";

export interface EvalPrompt {
  kind: PromptKind;
  /** The expected scene; its caption is the prompt. */
  scene: Scene;
  /** What the caption names beyond colours, shapes and how many objects there are. */
  named: { size: boolean; cell: boolean; background: boolean };
  /** objects[subject] <word> objects[object], for the relation kind. */
  relation?: { subject: number; word: RelationWord; object: number };
}

/** The default set: 25 prompts of each kind. */
export const PROMPTS_PER_KIND = 25;

function object(colour: Colour, shape: Shape, size: Size, cellIndex: number, side: number) {
  const cell = side / 3;
  return {
    colour,
    shape,
    size,
    cell: CELLS[cellIndex],
    centre: [(cellIndex % 3 + 0.5) * cell, (Math.floor(cellIndex / 3) + 0.5) * cell],
    extent: size === "small" ? side / 6 : side / 3,
    rgb: PALETTE[colour],
  } satisfies ShapeObject;
}

const colOf = (cell: string) => CELLS.indexOf(cell as typeof CELLS[number]) % 3;
const rowOf = (cell: string) => Math.floor(CELLS.indexOf(cell as typeof CELLS[number]) / 3);

/** Whether a cell is <word> another, as the grammar means it (columns, rows of the grid). */
export function relationHolds(word: RelationWord, subject: string, other: string): boolean {
  if (word === "to the left of") return colOf(subject) < colOf(other);
  if (word === "to the right of") return colOf(subject) > colOf(other);
  if (word === "above") return rowOf(subject) < rowOf(other);
  return rowOf(subject) > rowOf(other);
}

const WORDS: RelationWord[] = ["to the left of", "to the right of", "above", "below"];

function makePrompt(kind: PromptKind, rng: Rng, side: number): EvalPrompt {
  const background = pick(rng, COLOURS);
  const colours = shuffleInPlace(COLOURS.filter((c) => c !== background), rng);
  const cells = shuffleInPlace([...CELLS.keys()], rng);
  const sizes = kind === "attributes" || rng() < 0.5;
  const np = (o: ShapeObject) => nounPhrase(o, sizes);
  const named = { size: sizes, cell: false, background: kind === "attributes" };
  let objects: ShapeObject[], caption: string, relation: EvalPrompt["relation"];
  if (kind === "attributes" || kind === "cell") {
    const o = object(colours[0], pick(rng, SHAPES), pick(rng, SIZES), cells[0], side);
    objects = [o];
    named.cell = true;
    caption = `${np(o)} ${cellPhrase(rng, o.cell)}`;
  } else if (kind === "count") {
    const shape = pick(rng, SHAPES), size = pick(rng, SIZES);
    objects = [0, 1].map((i) => object(colours[0], shape, size, cells[i], side));
    caption = `two ${sizes ? `${size} ` : ""}${colours[0]} ${shape}s`;
  } else {
    objects = [0, 1].map((i) =>
      object(colours[i], pick(rng, SHAPES), pick(rng, SIZES), cells[i], side)
    );
    objects.sort((a, b) => CELLS.indexOf(a.cell) - CELLS.indexOf(b.cell));
    const options = WORDS.flatMap((word) =>
      [[0, 1], [1, 0]].filter(([s, o]) => relationHolds(word, objects[s].cell, objects[o].cell))
        .map(([subject, object]) => ({ subject, word, object }))
    );
    relation = pick(rng, options);
    caption = `${np(objects[relation.subject])} ${relation.word} ${np(objects[relation.object])}`;
  }
  objects.sort((a, b) => CELLS.indexOf(a.cell) - CELLS.indexOf(b.cell));
  if (named.background) caption += ` on ${article(background)} ${background} background`;
  return {
    kind,
    scene: { background, objects, caption },
    named,
    ...(relation ? { relation } : {}),
  };
}

/**
 * The fixed prompt set: `perKind` prompts of each kind, interleaved (attributes, cell, relation,
 * count, attributes, …) so that the first N of them (--limit) still mix the kinds. Prompt j of a
 * kind has its own stream of the seed, so it does not depend on perKind.
 */
export function shapesPromptSet(seed = 0, perKind = PROMPTS_PER_KIND, side = 64): EvalPrompt[] {
  const out: EvalPrompt[] = [];
  for (let j = 0; j < perKind; j++) {
    for (const kind of PROMPT_KINDS) {
      out.push(makePrompt(kind, mulberry32(deriveSeed(seed, "eval", kind, j)), side));
    }
  }
  return out;
}

// ---------------------------------------------------------------- scoring

export interface PromptScore {
  /** Each attribute the prompt asks for, right or wrong. */
  checked: Partial<Record<Attribute, boolean>>;
  allRight: boolean;
  /** The detected object matched to each expected one (null: none). */
  matches: (DetectedObject | null)[];
}

/**
 * Matches the expected objects to distinct detected ones, the assignment that agrees best
 * (colour first, then shape, then the named size and cell), trying every assignment: a prompt
 * has at most two objects.
 */
function matchObjects(p: EvalPrompt, found: DetectedObject[]): (DetectedObject | null)[] {
  const agree = (e: ShapeObject, d: DetectedObject) =>
    (e.colour === d.colour ? 8 : 0) + (e.shape === d.shape ? 4 : 0) +
    (p.named.size && e.size === d.size ? 2 : 0) + (p.named.cell && e.cell === d.cell ? 1 : 0);
  let best: (DetectedObject | null)[] = p.scene.objects.map(() => null), bestScore = -1;
  const walk = (i: number, used: Set<number>, chosen: (DetectedObject | null)[], score: number) => {
    if (i === p.scene.objects.length) {
      if (score > bestScore) [best, bestScore] = [[...chosen], score];
      return;
    }
    walk(i + 1, used, [...chosen, null], score);
    found.forEach((d, k) => {
      if (used.has(k)) return;
      const next = new Set(used).add(k);
      walk(i + 1, next, [...chosen, d], score + 1 + agree(p.scene.objects[i], d));
    });
  };
  walk(0, new Set(), [], 0);
  return best;
}

/** A detected scene scored against a prompt's expected scene. */
export function scorePrompt(p: EvalPrompt, d: DetectedScene): PromptScore {
  const want = p.scene.objects;
  const matches = matchObjects(p, d.objects);
  const every = (same: (e: ShapeObject, m: DetectedObject) => boolean) =>
    want.every((e, i) => matches[i] !== null && same(e, matches[i]!));
  const checked: PromptScore["checked"] = {
    colour: every((e, m) => e.colour === m.colour),
    shape: every((e, m) => e.shape === m.shape),
  };
  if (p.named.size) checked.size = every((e, m) => e.size === m.size);
  if (p.named.cell) checked.cell = every((e, m) => e.cell === m.cell);
  checked.count = d.objects.length === want.length;
  if (p.relation) {
    const s = matches[p.relation.subject], o = matches[p.relation.object];
    checked.relation = s !== null && o !== null && relationHolds(p.relation.word, s.cell, o.cell);
  }
  if (p.named.background) checked.background = d.background === p.scene.background;
  return { checked, allRight: Object.values(checked).every((v) => v), matches };
}

export interface ShapesSummary {
  prompts: number;
  /** Per attribute: prompts that ask for it, and those right. */
  attributes: Record<Attribute, { right: number; total: number }>;
  kinds: Record<PromptKind, { right: number; total: number }>;
  allRight: number;
}

export function summarize(prompts: EvalPrompt[], scores: PromptScore[]): ShapesSummary {
  const attributes = Object.fromEntries(
    ATTRIBUTES.map((a) => [a, { right: 0, total: 0 }]),
  ) as ShapesSummary["attributes"];
  const kinds = Object.fromEntries(
    PROMPT_KINDS.map((k) => [k, { right: 0, total: 0 }]),
  ) as ShapesSummary["kinds"];
  scores.forEach((s, i) => {
    for (const [a, ok] of Object.entries(s.checked)) {
      attributes[a as Attribute].total++;
      if (ok) attributes[a as Attribute].right++;
    }
    kinds[prompts[i].kind].total++;
    if (s.allRight) kinds[prompts[i].kind].right++;
  });
  return {
    prompts: scores.length,
    attributes,
    kinds,
    allRight: scores.filter((s) => s.allRight).length,
  };
}

const pct = (r: number, t: number) => (t === 0 ? "–" : `${(100 * r / t).toFixed(1)}%`);

/** The summary as a Markdown table: per attribute, per kind, and every attribute right. */
export function summaryTable(s: ShapesSummary): string {
  const rows = [
    "| attribute | right | prompts | accuracy |",
    "|---|---:|---:|---:|",
    ...ATTRIBUTES.map((a) => {
      const { right, total } = s.attributes[a];
      return `| ${a} | ${right} | ${total} | ${pct(right, total)} |`;
    }),
    ...PROMPT_KINDS.map((k) => {
      const { right, total } = s.kinds[k];
      return `| all right: ${k} prompts | ${right} | ${total} | ${pct(right, total)} |`;
    }),
    `| **every attribute right** | ${s.allRight} | ${s.prompts} | **${
      pct(s.allRight, s.prompts)
    }** |`,
  ];
  return rows.join("\n");
}

/**
 * Several summaries side by side as one Markdown table (the rows of summaryTable, a column of
 * accuracies per summary): e.g. the raw renders beside their reconstructions by the tokenizer.
 */
export function comparisonTable(columns: { name: string; summary: ShapesSummary }[]): string {
  const cell = ({ right, total }: { right: number; total: number }) =>
    total === 0 ? "–" : `${pct(right, total)} (${right}/${total})`;
  const row = (label: string, of: (s: ShapesSummary) => { right: number; total: number }) =>
    `| ${label} | ${columns.map((c) => cell(of(c.summary))).join(" | ")} |`;
  return [
    `| attribute | ${columns.map((c) => c.name).join(" | ")} |`,
    `|---|${columns.map(() => "---:").join("|")}|`,
    ...ATTRIBUTES.map((a) => row(a, (s) => s.attributes[a])),
    ...PROMPT_KINDS.map((k) => row(`all right: ${k} prompts`, (s) => s.kinds[k])),
    `| **every attribute right** | ${
      columns.map((c) => `**${cell({ right: c.summary.allRight, total: c.summary.prompts })}**`)
        .join(" | ")
    } |`,
  ].join("\n");
}
