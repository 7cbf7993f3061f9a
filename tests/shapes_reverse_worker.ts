// A shapes worker for tests/data_shapes_test.ts that answers out of order: within each window
// of blocks the later ones reply first, so writeShapes must put them back in index order.
import {
  renderShapesBlock,
  type ShapesBlock,
  type ShapesBlockRequest,
} from "../lib/data/shapes.ts";

const port = self as unknown as {
  onmessage: ((e: MessageEvent<ShapesBlockRequest>) => void) | null;
  postMessage(message: ShapesBlock, transfer?: Transferable[]): void;
};

/** Blocks per window: writeShapes keeps two per worker out, and the test runs three workers. */
const WINDOW = 6;

port.onmessage = async (e) => {
  const reply = renderShapesBlock(e.data);
  await new Promise((r) => setTimeout(r, 25 * (WINDOW - e.data.block % WINDOW)));
  port.postMessage(reply, [reply.tar.buffer as ArrayBuffer, reply.keyLines.buffer as ArrayBuffer]);
};
