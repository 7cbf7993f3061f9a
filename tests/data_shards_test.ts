// Shards: tar write → read round trip, interop with GNU tar, damaged archives, brace patterns.
import { join } from "node:path";
import { UserError } from "../lib/errors.ts";
import {
  expandBraces,
  listShards,
  readShard,
  ShardWriter,
  splitMemberName,
} from "../lib/data/shards.ts";
import { SkipReport } from "../lib/data/skips.ts";
import { readTar, TAR_END, tarMember, type TarProblem } from "../lib/data/tar.ts";
import { garbage, tempDir } from "./data_fixtures.ts";

function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function check(cond: boolean, msg: string): void {
  if (!cond) throw new Error(msg);
}

async function collect(path: string, skips = new SkipReport()) {
  const out = [];
  for await (const s of readShard(path, skips)) out.push(s);
  return out;
}

function streamOf(bytes: Uint8Array, chunk = 777): ReadableStream<Uint8Array> {
  let o = 0;
  return new ReadableStream({
    pull(c) {
      if (o >= bytes.length) return c.close();
      c.enqueue(bytes.slice(o, o + chunk));
      o += chunk;
    },
  });
}

Deno.test("shards: write → read round trip across shards, members and keys intact", async () => {
  const dir = await tempDir("shards");
  const writer = new ShardWriter(dir, 3);
  const samples = Array.from({ length: 7 }, (_, i) => ({
    jpg: garbage(100 + 997 * i, i), // sizes that are not multiples of 512, one > 4 chunks
    txt: `caption ${i} ✓`,
    json: JSON.stringify({ i }),
  }));
  // img2dataset's key: 5 shard digits, then as many as the largest index in a shard needs.
  const keys: string[] = [];
  for (const s of samples) {
    const next = writer.nextKey;
    keys.push(await writer.add(s));
    check(keys.at(-1) === next, "nextKey disagrees with add");
  }
  await writer.close();
  check(
    keys.join() === "000000,000001,000002,000010,000011,000012,000020",
    keys.join(),
  );
  const shards = listShards(dir);
  check(
    shards.map((s) => s.slice(dir.length + 1)).join() === "00000.tar,00001.tar,00002.tar",
    shards.join(),
  );
  const skips = new SkipReport();
  const read = (await Promise.all(shards.map((s) => collect(s, skips)))).flat();
  check(read.length === 7 && skips.total === 0, `read ${read.length}, skipped ${skips.total}`);
  read.forEach((r, i) => {
    check(r.key === keys[i], `key ${r.key}`);
    check(same(r.files.jpg, samples[i].jpg), `jpg of ${r.key} differs`);
    check(new TextDecoder().decode(r.files.txt) === samples[i].txt, `txt of ${r.key}`);
    check(JSON.parse(new TextDecoder().decode(r.files.json)).i === i, `json of ${r.key}`);
  });
  check([...Deno.readDirSync(dir)].every((e) => !e.name.endsWith(".tmp")), "a .tmp file is left");
});

Deno.test("shards: GNU tar reads what we write, and we read what GNU tar writes", async () => {
  const dir = await tempDir("gnutar");
  const writer = new ShardWriter(join(dir, "ours"));
  await writer.add({ png: garbage(1234), txt: "x" });
  await writer.close();
  const list = new Deno.Command("tar", { args: ["-tf", join(dir, "ours", "00000.tar")] })
    .outputSync();
  check(list.success, new TextDecoder().decode(list.stderr));
  check(
    new TextDecoder().decode(list.stdout) === "000000000.png\n000000000.txt\n",
    "tar -t listing",
  );
  // A long path forces GNU tar's PAX (or GNU long-name) headers; a directory entry is passed over.
  const src = join(dir, "src"), long = "d".repeat(120);
  await Deno.mkdir(join(src, long), { recursive: true });
  await Deno.writeFile(join(src, long, "000000007.jpg"), garbage(5000, 9));
  await Deno.writeTextFile(join(src, long, "000000007.txt"), "from gnu tar");
  for (const format of ["pax", "gnu"]) {
    const out = join(dir, `${format}.tar`);
    const made = new Deno.Command("tar", {
      args: [`--format=${format}`, "-cf", out, "-C", src, long],
    })
      .outputSync();
    check(made.success, new TextDecoder().decode(made.stderr));
    const [s, ...rest] = await collect(out);
    check(rest.length === 0 && s.key === `${long}/000000007`, `${format}: key ${s?.key}`);
    check(same(s.files.jpg, garbage(5000, 9)), `${format}: jpg bytes`);
  }
});

Deno.test("shards: a PAX long name written by us reads back", async () => {
  const name = `${"n".repeat(150)}/000000001.txt`;
  const tar = new Uint8Array([...tarMember(name, new TextEncoder().encode("long")), ...TAR_END]);
  const entries = [];
  for await (const e of readTar(streamOf(tar), () => {})) entries.push(e);
  check(entries.length === 1 && entries[0].name === name, entries.map((e) => e.name).join());
});

Deno.test("shards: a damaged header is skipped, counted, and reading resumes", async () => {
  const members = [0, 1, 2].map((i) =>
    tarMember(`00000000${i}.txt`, new TextEncoder().encode(`c${i}`))
  );
  const bad = members[1].slice();
  bad[0] ^= 0xff; // corrupt the name, so the checksum no longer matches
  const problems: TarProblem[] = [];
  const names = [];
  for await (
    const e of readTar(
      streamOf(new Uint8Array([...members[0], ...bad, ...members[2], ...TAR_END])),
      (p) => problems.push(p),
    )
  ) {
    names.push(e.name);
  }
  check(names.join() === "000000000.txt,000000002.txt", names.join());
  check(problems.length === 1 && problems[0].offset === 1024, JSON.stringify(problems));
});

Deno.test("shards: a truncated shard yields the complete samples and reports the cut one", async () => {
  const dir = await tempDir("trunc");
  const writer = new ShardWriter(dir);
  for (let i = 0; i < 4; i++) await writer.add({ jpg: garbage(2000, i), txt: `c${i}` });
  await writer.close();
  const path = join(dir, "00000.tar");
  const full = await Deno.readFile(path);
  // Cut inside the 3rd sample's jpg: header (512) + part of the data.
  const third = 2 * (512 + 2048 + 512 + 512);
  await Deno.writeFile(path, full.slice(0, third + 512 + 700));
  const skips = new SkipReport();
  const read = await collect(path, skips);
  check(read.map((r) => r.key).join() === "000000000,000000001", read.map((r) => r.key).join());
  check(skips.count("unreadable member") === 1, String(skips.summary()));
  check(
    skips.keys("unreadable member")[0] === "00000.tar:000000002.jpg",
    skips.keys("unreadable member").join(),
  );
});

Deno.test("shards: a shard cut between two samples is reported as cut", async () => {
  const dir = await tempDir("cut");
  const writer = new ShardWriter(dir);
  for (let i = 0; i < 3; i++) await writer.add({ jpg: garbage(100, i), txt: `c${i}` });
  await writer.close();
  const path = join(dir, "00000.tar");
  const full = await Deno.readFile(path);
  await Deno.writeFile(path, full.slice(0, 2 * 4 * 512)); // two whole samples, no end marker
  const skips = new SkipReport();
  const read = await collect(path, skips);
  check(read.map((r) => r.key).join() === "000000000,000000001", read.map((r) => r.key).join());
  check(
    /00000\.tar:@4096 \(archive ends without its end marker\)/.test(String(skips.summary())),
    String(skips.summary()),
  );
  const whole = new SkipReport();
  await Deno.writeFile(path, full);
  check((await collect(path, whole)).length === 3 && whole.total === 0, String(whole.summary()));
});

Deno.test("shards: garbage in place of a shard is reported, not fatal", async () => {
  const dir = await tempDir("garbage");
  await Deno.writeFile(join(dir, "00000.tar"), garbage(5000));
  const skips = new SkipReport();
  check((await collect(join(dir, "00000.tar"), skips)).length === 0, "samples from garbage");
  check(skips.count("unreadable member") === 1, String(skips.summary()));
});

Deno.test("shards: member names split as webdataset does", () => {
  check(
    JSON.stringify(splitMemberName("a/b.c/000000001.seg.png")) ===
      '{"key":"a/b.c/000000001","ext":"seg.png"}',
    "dots",
  );
  check(
    splitMemberName("._000000001.jpg") === null && splitMemberName("README") === null,
    "hidden/no ext",
  );
});

Deno.test("shards: brace expansion", () => {
  const eq = (p: string, want: string[]) => {
    const got = expandBraces(p);
    check(got.join("|") === want.join("|"), `${p}: ${got.join("|")}`);
  };
  eq("data/{00000..00003}.tar", [
    "data/00000.tar",
    "data/00001.tar",
    "data/00002.tar",
    "data/00003.tar",
  ]);
  eq("{8..11}", ["8", "9", "10", "11"]);
  eq("{3..1}", ["3", "2", "1"]);
  eq("{0..6..3}", ["0", "3", "6"]);
  eq("s{a,b}/{0..1}.tar", ["sa/0.tar", "sa/1.tar", "sb/0.tar", "sb/1.tar"]);
  eq("{a,{b,c}d}", ["a", "bd", "cd"]);
  eq("plain.tar", ["plain.tar"]);
  eq("{x}.tar", ["{x}.tar"]);
  check(expandBraces("cc3m/{00000..00331}.tar").length === 332, "cc3m count");
  check(expandBraces("cc3m/{00000..00331}.tar")[331] === "cc3m/00331.tar", "cc3m last");
});

Deno.test("shards: listing patterns, directories and '::' lists; missing paths are one clear error", async () => {
  const dir = await tempDir("list");
  for (const n of ["00000", "00001", "00002"]) await Deno.writeFile(join(dir, `${n}.tar`), TAR_END);
  await Deno.writeTextFile(join(dir, "notes.txt"), "not a shard");
  check(listShards(dir).length === 3, "directory");
  check(listShards(`${dir}/{00000..00001}.tar::${dir}/00002.tar`).length === 3, "pattern :: file");
  const refuses = (spec: string, pattern: RegExp) => {
    try {
      listShards(spec);
    } catch (e) {
      check(e instanceof UserError && pattern.test(e.message), `${spec}: ${e}`);
      return;
    }
    throw new Error(`${spec} accepted`);
  };
  refuses(`${dir}/{00000..00005}.tar`, /no such shard.*00003\.tar/);
  refuses(join(dir, "nope"), /no such shard/);
  refuses(await tempDir("empty"), /no \.tar shards/);
  refuses(`${dir}/{0000`, /unbalanced/);
});
