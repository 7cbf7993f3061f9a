// A minimal PNG encoder (8-bit RGB, no filtering) so that commands which only render pixels,
// like `data shapes`, need no image library; and a decoder for the one simple case it writes (and
// other encoders often do), which the data loader tries before sharp.
import { deflateSync, inflateSync } from "node:zlib";

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(bytes: Uint8Array, crc = 0xffffffff): number {
  for (let i = 0; i < bytes.length; i++) crc = CRC_TABLE[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8);
  return crc;
}

/** One PNG chunk: length, type, data and CRC. */
export function pngChunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  view.setUint32(8 + data.length, (crc32(out.subarray(4, 8 + data.length)) ^ 0xffffffff) >>> 0);
  return out;
}

/** Encodes HWC RGB pixels as a PNG file. */
export function encodePng(rgb: Uint8Array, width: number, height: number): Uint8Array {
  if (rgb.length !== width * height * 3) {
    throw new RangeError(`encodePng: ${rgb.length} bytes is not ${width}×${height}×3`);
  }
  const header = new Uint8Array(13);
  const hv = new DataView(header.buffer);
  hv.setUint32(0, width);
  hv.setUint32(4, height);
  header.set([8, 2, 0, 0, 0], 8); // 8-bit depth, colour type 2 (RGB), no interlace
  const stride = width * 3;
  const raw = new Uint8Array((stride + 1) * height); // each row starts with filter byte 0
  for (let y = 0; y < height; y++) {
    raw.set(rgb.subarray(y * stride, (y + 1) * stride), y * (stride + 1) + 1);
  }
  const signature = new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]);
  const parts = [
    signature,
    pngChunk("IHDR", header),
    pngChunk("IDAT", new Uint8Array(deflateSync(raw, { level: 6 }))),
    pngChunk("IEND", new Uint8Array(0)),
  ];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** HWC images of side `size`, n of them, as one PNG grid of `columns` per row (2-px gaps). */
export function imageGrid(pixels: Uint8Array, n: number, size: number, columns = 8): Uint8Array {
  const cols = Math.max(1, Math.min(columns, n));
  const rows = Math.max(1, Math.ceil(n / cols));
  const gap = 2, width = cols * (size + gap) - gap, height = rows * (size + gap) - gap;
  const rgb = new Uint8Array(width * height * 3).fill(255);
  for (let i = 0; i < n; i++) {
    const [r, c] = [Math.floor(i / cols), i % cols];
    for (let y = 0; y < size; y++) {
      const from = (i * size * size + y * size) * 3;
      const to = ((r * (size + gap) + y) * width + c * (size + gap)) * 3;
      rgb.set(pixels.subarray(from, from + size * 3), to);
    }
  }
  return encodePng(rgb, width, height);
}

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];
/** Chunks that change nothing in the decoded RGB values (text, time stamps, pixel density). */
const INERT = new Set(["tEXt", "zTXt", "iTXt", "tIME", "pHYs"]);

/**
 * HWC RGB pixels of a PNG that needs no conversion to be size × size sRGB: 8-bit RGB, not
 * interlaced, exactly size × size, no colour-space, gamma, palette or transparency chunk, every CRC
 * right and the pixel data complete. Anything else (another format, size or kind of PNG, damage)
 * returns null, and the caller decodes with its general decoder, which then says what is wrong.
 */
export function decodeSimplePng(bytes: Uint8Array, size: number): Uint8Array | null {
  if (bytes.length < 8 + 25 + 12 || SIGNATURE.some((b, i) => bytes[i] !== b)) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const idat: Uint8Array[] = [];
  let at = 8, header = false, end = false;
  while (!end) {
    if (at + 12 > bytes.length) return null;
    const length = view.getUint32(at);
    if (at + 12 + length > bytes.length) return null;
    const type = String.fromCharCode(...bytes.subarray(at + 4, at + 8));
    const body = bytes.subarray(at + 8, at + 8 + length);
    const crc = (crc32(bytes.subarray(at + 4, at + 8 + length)) ^ 0xffffffff) >>> 0;
    if (crc !== view.getUint32(at + 8 + length)) return null;
    if (!header) {
      if (type !== "IHDR" || length !== 13) return null;
      const h = new DataView(body.buffer, body.byteOffset, 13);
      const simple = h.getUint32(0) === size && h.getUint32(4) === size && body[8] === 8 &&
        body[9] === 2 && body[10] === 0 && body[11] === 0 && body[12] === 0;
      if (!simple) return null;
      header = true;
    } else if (type === "IDAT") idat.push(body);
    else if (type === "IEND") end = true;
    else if (!INERT.has(type)) return null;
    at += 12 + length;
  }
  const stride = size * 3, want = (stride + 1) * size;
  let raw: Uint8Array;
  try {
    const joined = new Uint8Array(idat.reduce((n, c) => n + c.length, 0));
    let o = 0;
    for (const c of idat) joined.set(c, o), o += c.length;
    // No more than the image needs: a stream that inflates further is not this image.
    raw = new Uint8Array(inflateSync(joined, { maxOutputLength: want + 1 }));
  } catch {
    return null;
  }
  if (raw.length !== want) return null;
  const out = new Uint8Array(stride * size);
  for (let y = 0; y < size; y++) {
    const filter = raw[y * (stride + 1)], src = y * (stride + 1) + 1, row = y * stride;
    const up = row - stride;
    for (let x = 0; x < stride; x++) {
      const a = x >= 3 ? out[row + x - 3] : 0;
      const b = y > 0 ? out[up + x] : 0;
      const c = x >= 3 && y > 0 ? out[up + x - 3] : 0;
      let pred: number;
      switch (filter) {
        case 0:
          pred = 0;
          break;
        case 1:
          pred = a;
          break;
        case 2:
          pred = b;
          break;
        case 3:
          pred = (a + b) >> 1;
          break;
        case 4: {
          const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
          pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
          break;
        }
        default:
          return null;
      }
      out[row + x] = (raw[src + x] + pred) & 0xff;
    }
  }
  return out;
}
