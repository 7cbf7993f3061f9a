// Where the default checkpoints live (DESIGN §5: committed in models/, beside the code, so a
// fresh clone, an installed `vmambar` and a compiled binary all find them).
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { UserError } from "../errors.ts";

const models = (name: string) => fileURLToPath(new URL(`../../models/${name}`, import.meta.url));

export const DEFAULT_TOKENIZER = models("tokenizer.safetensors");
export const DEFAULT_MODEL = models("model.safetensors");

/** The --tokenizer option of the commands that use a trained tokenizer. */
export const TOKENIZER_OPTION = {
  type: "string",
  value: "FILE",
  help: "tokenizer checkpoint (default: the one in models/)",
} as const;

/** The tokenizer a command uses: --tokenizer FILE, else the default; a missing one is one line. */
export function resolveTokenizer(flag: unknown, fallback = DEFAULT_TOKENIZER): string {
  if (typeof flag === "string") {
    if (!existsSync(flag)) {
      throw new UserError(`--tokenizer ${flag}: no such file (train one with train-tokenizer)`);
    }
    return flag;
  }
  if (!existsSync(fallback)) {
    throw new UserError(
      `no default tokenizer at ${fallback}: pass --tokenizer FILE (train one with train-tokenizer)`,
    );
  }
  return fallback;
}
