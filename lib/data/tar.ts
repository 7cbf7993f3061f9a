// Streaming tar (ustar + PAX + GNU long names), the container of webdataset shards. Reading
// pulls one member at a time from a ReadableStream, so a 300 MB shard is never held whole;
// writing appends one member at a time to an open file.

const BLOCK = 512;
const utf8 = new TextEncoder();
const latin = new TextDecoder("utf-8");

export interface TarEntry {
  name: string;
  data: Uint8Array;
}

/** Something went wrong at `offset` in the archive; reading goes on where it can. */
export interface TarProblem {
  offset: number;
  /** The member's name when the header could be read. */
  name?: string;
  message: string;
}

/** Exact-length reads over a stream of arbitrarily sized chunks. */
class StreamBytes {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #chunks: Uint8Array[] = [];
  #buffered = 0;
  #ended = false;
  offset = 0;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.getReader();
  }

  async #fill(n: number): Promise<void> {
    while (this.#buffered < n && !this.#ended) {
      const { value, done } = await this.#reader.read();
      if (done) this.#ended = true;
      else if (value.length) {
        this.#chunks.push(value);
        this.#buffered += value.length;
      }
    }
  }

  /** Up to n bytes, always a fresh copy (a member must not pin a whole stream chunk). Shorter only at the end. */
  async read(n: number): Promise<Uint8Array> {
    await this.#fill(n);
    const out = new Uint8Array(Math.min(n, this.#buffered));
    let o = 0;
    while (o < out.length) {
      const c = this.#chunks[0];
      const take = Math.min(c.length, out.length - o);
      out.set(c.subarray(0, take), o);
      o += take;
      if (take === c.length) this.#chunks.shift();
      else this.#chunks[0] = c.subarray(take);
    }
    this.#buffered -= out.length;
    this.offset += out.length;
    return out;
  }

  async skip(n: number): Promise<number> {
    let left = n;
    while (left > 0) {
      await this.#fill(Math.min(left, 1 << 20));
      if (this.#buffered === 0) break;
      const c = this.#chunks[0];
      const take = Math.min(c.length, left);
      if (take === c.length) this.#chunks.shift();
      else this.#chunks[0] = c.subarray(take);
      this.#buffered -= take;
      left -= take;
    }
    this.offset += n - left;
    return n - left;
  }

  async cancel(): Promise<void> {
    await this.#reader.cancel().catch(() => {});
  }
}

function cString(bytes: Uint8Array): string {
  const end = bytes.indexOf(0);
  return latin.decode(end < 0 ? bytes : bytes.subarray(0, end));
}

function parseOctal(field: Uint8Array): number {
  if (field[0] & 0x80) {
    // GNU base-256 for sizes ≥ 8 GiB.
    let n = field[0] & 0x7f;
    for (let i = 1; i < field.length; i++) n = n * 256 + field[i];
    return n;
  }
  const s = cString(field).trim();
  return s === "" ? 0 : parseInt(s, 8);
}

function checksumOk(h: Uint8Array): boolean {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : h[i];
  const stored = parseOctal(h.subarray(148, 156));
  return Number.isFinite(stored) && stored === sum;
}

function parsePax(data: Uint8Array): Record<string, string> {
  const out: Record<string, string> = {};
  for (const rec of new TextDecoder().decode(data).split("\n")) {
    const m = /^\d+ ([^=]+)=(.*)$/s.exec(rec);
    if (m) out[m[1]] = m[2];
  }
  return out;
}

/**
 * The regular-file members of a tar stream, in order. A header that fails its checksum is
 * reported and skipped by scanning to the next valid header; a stream that ends inside a
 * member reports that member and stops, and one that ends between members (cut there, as
 * GNU tar's "Unexpected EOF") is reported too. Directories, links and PAX globals are passed over.
 */
export async function* readTar(
  stream: ReadableStream<Uint8Array>,
  onProblem: (p: TarProblem) => void,
): AsyncGenerator<TarEntry> {
  const bytes = new StreamBytes(stream);
  let pax: Record<string, string> = {};
  let longName: string | undefined;
  let resyncing = false;
  try {
    while (true) {
      const at = bytes.offset;
      const header = await bytes.read(BLOCK);
      if (header.length === 0) {
        // A complete archive ends with zero blocks; a file cut at a member boundary does not.
        if (!resyncing) onProblem({ offset: at, message: "archive ends without its end marker" });
        return;
      }
      if (header.length < BLOCK) {
        if (!resyncing) onProblem({ offset: at, message: "archive ends inside a header" });
        return;
      }
      if (!checksumOk(header)) {
        // While scanning past a damaged member, zero blocks may be its data, not the end.
        if (resyncing) continue;
        if (header.every((b) => b === 0)) return; // end-of-archive marker
        onProblem({ offset: at, message: "bad header checksum" });
        // Members start on block boundaries, so scanning block by block finds the next one.
        resyncing = true;
        continue;
      }
      resyncing = false;
      const prefix = header[257] === 0x75 /* "ustar" */ ? cString(header.subarray(345, 500)) : "";
      const base = cString(header.subarray(0, 100));
      const headerName = prefix ? `${prefix}/${base}` : base;
      const size = parseOctal(header.subarray(124, 136));
      const type = String.fromCharCode(header[156] || 0x30);
      const data = await bytes.read(size);
      const name = pax.path ?? longName ?? headerName;
      if (data.length < size) {
        onProblem({ offset: at, name, message: "archive ends inside a member" });
        return;
      }
      await bytes.skip((BLOCK - (size % BLOCK)) % BLOCK);
      if (type === "x") pax = parsePax(data);
      else if (type === "L") longName = cString(data);
      else if (type === "g") continue;
      else {
        pax = {};
        longName = undefined;
        if (type === "0" || type === "7") yield { name, data };
      }
    }
  } finally {
    await bytes.cancel();
  }
}

function writeOctal(h: Uint8Array, at: number, width: number, value: number): void {
  const s = value.toString(8).padStart(width - 1, "0");
  if (s.length > width - 1) throw new RangeError(`tar: ${value} does not fit ${width} bytes`);
  h.set(utf8.encode(s), at);
}

function header(name: string, size: number, type: string, mtime: number): Uint8Array {
  const h = new Uint8Array(BLOCK);
  h.set(utf8.encode(name).subarray(0, 100), 0);
  writeOctal(h, 100, 8, 0o644);
  writeOctal(h, 108, 8, 0);
  writeOctal(h, 116, 8, 0);
  writeOctal(h, 124, 12, size);
  writeOctal(h, 136, 12, mtime);
  h[156] = type.charCodeAt(0);
  h.set(utf8.encode("ustar\x0000"), 257);
  h.fill(32, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += h[i];
  h.set(utf8.encode(sum.toString(8).padStart(6, "0") + "\0 "), 148);
  return h;
}

/** A PAX record "len key=value\n", where len counts itself. */
function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  const n = utf8.encode(body).length;
  let len = n + String(n).length;
  if (String(len).length !== String(n).length) len = n + String(len).length;
  return `${len}${body}`;
}

/** One member (header, data, padding) as bytes, with a PAX header first when the name is long. */
export function tarMember(name: string, data: Uint8Array, mtime = 0): Uint8Array {
  const parts: Uint8Array[] = [];
  if (utf8.encode(name).length > 100) {
    const pax = utf8.encode(paxRecord("path", name));
    parts.push(header("PaxHeader", pax.length, "x", mtime), padded(pax));
  }
  parts.push(header(name, data.length, "0", mtime), padded(data));
  return concat(parts);
}

function padded(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(Math.ceil(data.length / BLOCK) * BLOCK);
  out.set(data);
  return out;
}

export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** The end-of-archive marker: two zero blocks. */
export const TAR_END = new Uint8Array(2 * BLOCK);
