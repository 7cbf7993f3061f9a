// Opening a model checkpoint (DESIGN §5, kind "model"): its config from the metadata, checked,
// then VMambAR built from it with the stored weights (f16 files are widened to f32).
import { UserError } from "../errors.ts";
import { loadParameters, readCheckpoint } from "../io/checkpoint.ts";
import { type ModelConfig, validateModelConfig } from "./config.ts";
import { VMambAR } from "./vmambar.ts";

export interface LoadedModel {
  model: VMambAR;
  cfg: ModelConfig;
  metadata: Record<string, string>;
}

/** Reads a model checkpoint onto the GPU (initGpu() first). Bad files are one-line errors. */
export async function loadModel(path: string): Promise<LoadedModel> {
  const ckpt = await readCheckpoint(path, "model");
  const cfg = validateModelConfig(ckpt.config as ModelConfig, path);
  const model = new VMambAR(cfg);
  try {
    loadParameters(model, ckpt.tensors, path);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return { model, cfg, metadata: ckpt.metadata };
}

/** Refuses a model whose token grid is not the tokenizer's (its indices would mean nothing). */
export function checkTokenGrid(
  cfg: Pick<ModelConfig, "scales" | "vocab" | "cvae">,
  tok: { scales: number[]; vocab: number; cvae: number },
  what: string,
): void {
  if (cfg.scales.join() !== tok.scales.join() || cfg.vocab !== tok.vocab || cfg.cvae !== tok.cvae) {
    throw new UserError(
      `${what} predicts ${cfg.vocab} codes of width ${cfg.cvae} at scales ${
        cfg.scales.join("/")
      }, ` +
        `but the tokenizer has ${tok.vocab} of width ${tok.cvae} at ${tok.scales.join("/")}`,
    );
  }
}
