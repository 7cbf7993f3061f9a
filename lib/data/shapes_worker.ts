// A Web Worker of `vmambar data shapes --workers N`: renders, PNG-encodes and packs blocks of images
// (lib/data/shapes.ts renderShapesBlock), handing the bytes back without a copy. A failure is
// answered as a message, so the main thread can stop with one line naming the images.
import {
  renderShapesBlock,
  type ShapesBlock,
  type ShapesBlockReply,
  type ShapesBlockRequest,
} from "./shapes.ts";

/** The worker's side of the message port (typed here: this module is checked with deno.window). */
const port = self as unknown as {
  onmessage: ((e: MessageEvent<ShapesBlockRequest>) => void) | null;
  postMessage(message: ShapesBlockReply, transfer?: Transferable[]): void;
};

port.onmessage = (e) => {
  let reply: ShapesBlock;
  try {
    reply = renderShapesBlock(e.data);
  } catch (err) {
    port.postMessage({ block: e.data.block, error: String((err as Error)?.message ?? err) });
    return;
  }
  port.postMessage(reply, [reply.tar.buffer as ArrayBuffer, reply.keyLines.buffer as ArrayBuffer]);
};
