// Writes the default checkpoints of models/ from a training run's f32 ones (DESIGN §5: f16
// storage, the loaders widen to f32): the tokenizer, then the model with the f16 tokenizer's
// hash in place of the f32 one it was trained with (the indices are the same codes; the check in
// `generate` then passes), both through writeSafetensors (atomic).
//   deno run -A tools/ship_default.ts --tokenizer T --model M [--out models]
import { join } from "node:path";
import { parseArgs } from "node:util";
import {
  readSafetensors,
  type StTensor,
  stTensor,
  toFloat32,
  writeSafetensors,
} from "../lib/io/safetensors.ts";
import { floatToHalf } from "../lib/tensor/tensor.ts";
import { fileSha256 } from "../lib/tokenizer/load.ts";

const { values } = parseArgs({
  options: {
    tokenizer: { type: "string" },
    model: { type: "string" },
    out: { type: "string", default: "models" },
  },
});
if (!values.tokenizer || !values.model) {
  console.error("usage: ship_default.ts --tokenizer T --model M [--out models]");
  Deno.exit(2);
}

/** Every F32 tensor as F16 (after checking it fits f16's range). */
function half(tensors: Map<string, StTensor>): Map<string, StTensor> {
  const out = new Map<string, StTensor>();
  for (const [name, t] of tensors) {
    if (t.dtype !== "F32") {
      out.set(name, t);
      continue;
    }
    const x = toFloat32(t);
    const big = x.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    if (!(big < 65504)) throw new Error(`${name}: |x| up to ${big} does not fit f16`);
    out.set(name, stTensor(Uint16Array.from(x, floatToHalf), t.shape));
  }
  return out;
}

await Deno.mkdir(values.out!, { recursive: true });
const tokOut = join(values.out!, "tokenizer.safetensors");
const tok = await readSafetensors(values.tokenizer);
await writeSafetensors(tokOut, half(tok.tensors), tok.metadata);
const model = await readSafetensors(values.model);
const modelOut = join(values.out!, "model.safetensors");
await writeSafetensors(modelOut, half(model.tensors), {
  ...model.metadata,
  tokenizer: "models/tokenizer.safetensors",
  tokenizer_sha256: await fileSha256(tokOut),
  trained_with_tokenizer_sha256: model.metadata.tokenizer_sha256,
});
for (const p of [tokOut, modelOut]) {
  console.log(`${p}: ${((await Deno.stat(p)).size / 2 ** 20).toFixed(2)} MiB`);
}
