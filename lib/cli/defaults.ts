// Where the default checkpoints live (DESIGN §5: committed in models/, beside the code, so a
// fresh clone, an installed `vmambar` and a compiled binary all find them).
import { fileURLToPath } from "node:url";

const models = (name: string) => fileURLToPath(new URL(`../../models/${name}`, import.meta.url));

export const DEFAULT_TOKENIZER = models("tokenizer.safetensors");
export const DEFAULT_MODEL = models("model.safetensors");
