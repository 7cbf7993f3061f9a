import { Mamba } from "../lib/nn/mamba.ts";
import { Init } from "../lib/nn/module.ts";
import { loadParameters, readCheckpoint, saveCheckpoint } from "../lib/io/checkpoint.ts";
import {
  decodeSafetensors,
  encodeSafetensors,
  readSafetensors,
  stTensor,
} from "../lib/io/safetensors.ts";
import { assert, assertClose, assertThrows, gpuReady, randn } from "./helpers.ts";

Deno.test("safetensors: written and read back is identical, byte for byte", async () => {
  const dir = await Deno.makeTempDir();
  const tensors = {
    "a.weight": stTensor(Float32Array.from(randn(35)), [5, 7]),
    "ids": stTensor(Int32Array.from([1, -2, 3]), [3]),
    "empty": stTensor(new Float32Array(0), [0, 4]),
    "half": stTensor(Uint16Array.from([0x3c00, 0xc000]), [2], "F16"),
  };
  const path = `${dir}/x.safetensors`;
  const bytes = encodeSafetensors(tensors, { format: "vmambar", kind: "model" });
  await Deno.writeFile(path, bytes);
  const back = await readSafetensors(path);
  assert(back.metadata.kind === "model", "metadata");
  for (const [k, t] of Object.entries(tensors)) {
    const r = back.tensors.get(k)!;
    assert(r.dtype === t.dtype && r.shape.join() === t.shape.join(), `${k} header`);
    assert(r.data.every((v, i) => v === t.data[i]) && r.data.length === t.data.length, `${k} data`);
  }
  const again = encodeSafetensors(back.tensors, back.metadata);
  assert(
    again.length === bytes.length && again.every((v, i) => v === bytes[i]),
    "re-encoding differs",
  );
  // The header is 8-byte aligned as the reference writer pads it.
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert((8 + n) % 8 === 0, "header alignment");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("safetensors: truncated and malformed files are refused with one clear line", () => {
  const good = encodeSafetensors({ w: stTensor(new Float32Array(16), [4, 4]) });
  assertThrows(
    () => decodeSafetensors(good.slice(0, good.length - 5), "w.st"),
    /w.st is not a valid safetensors file: .*truncated/,
    "truncated data",
  );
  assertThrows(() => decodeSafetensors(good.slice(0, 4), "w.st"), /shorter than/, "tiny");
  assertThrows(
    () => decodeSafetensors(good.slice(0, 20), "w.st"),
    /header of \d+ bytes/,
    "truncated header",
  );
  const garbage = good.slice();
  garbage[10] = 0x7b;
  garbage[11] = 0x7b;
  assertThrows(() => decodeSafetensors(garbage, "w.st"), /not JSON/, "garbage header");
});

Deno.test("checkpoints: a module saved and loaded back has the same parameters; mismatches are refused", async () => {
  await gpuReady;
  const dir = await Deno.makeTempDir();
  const a = new Mamba(new Init(1), { dModel: 16 });
  const b = new Mamba(new Init(2), { dModel: 16 });
  const path = `${dir}/m.safetensors`;
  await saveCheckpoint(path, a.namedParameters(), "model", { d: 16 });
  const ck = await readCheckpoint(path, "model");
  assert((ck.config as { d: number }).d === 16, "config");
  loadParameters(b, ck.tensors, path);
  const pa = a.namedParameters(), pb = b.namedParameters();
  for (let i = 0; i < pa.length; i++) {
    assertClose(await pb[i][1].toArray(), await pa[i][1].toArray(), 0, pa[i][0]);
  }
  const other = new Mamba(new Init(3), { dModel: 32 });
  assertThrows(
    () => loadParameters(other, ck.tensors, path),
    /m.safetensors: .* is \[.*\], the model needs/,
    "shape",
  );
  let refused = false;
  try {
    await readCheckpoint(path, "tokenizer");
  } catch (e) {
    refused = /is a model checkpoint, expected a tokenizer/.test((e as Error).message);
  }
  assert(refused, "kind mismatch must be refused");
  for (const m of [a, b, other]) m.dispose();
  await Deno.remove(dir, { recursive: true });
});
