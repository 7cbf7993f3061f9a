// A progress line on stderr for long data work, with an ETA when the total is known: redrawn in
// place on a terminal, and printed every LOG_EVERY_MS in logs (so a long run is never silent,
// and a short one adds nothing). The caller prints the final summary itself.

const encoder = new TextEncoder();
const LOG_EVERY_MS = 15_000;

function duration(s: number): string {
  if (s >= 3600) {
    return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, "0")}m`;
  }
  if (s >= 60) return `${Math.floor(s / 60)}m${String(Math.floor(s % 60)).padStart(2, "0")}s`;
  return `${Math.ceil(s)}s`;
}

export class Progress {
  #label: string;
  #total: number | undefined;
  #done = 0;
  #start = performance.now();
  #lastDraw = 0;
  #tty: boolean;

  readonly #logEveryMs: number;

  constructor(label: string, total?: number, logEveryMs = LOG_EVERY_MS) {
    this.#label = label;
    this.#total = total;
    this.#logEveryMs = logEveryMs;
    this.#tty = Deno.stderr.isTerminal();
    this.#lastDraw = this.#start;
  }

  get done(): number {
    return this.#done;
  }

  /** Images per second since the start. */
  get rate(): number {
    const s = (performance.now() - this.#start) / 1000;
    return s > 0 ? this.#done / s : 0;
  }

  tick(n = 1): void {
    this.#done += n;
    const now = performance.now();
    if (now - this.#lastDraw > (this.#tty ? 100 : this.#logEveryMs)) {
      this.#lastDraw = now;
      this.#draw();
    }
  }

  #draw(): void {
    const of = this.#total !== undefined ? `/${this.#total}` : "";
    const pct = this.#total ? ` ${(100 * this.#done / this.#total).toFixed(0)}%` : "";
    const rate = this.rate;
    const eta = this.#total && rate > 0
      ? `  ETA ${duration((this.#total - this.#done) / rate)}`
      : "";
    const line = `${this.#label}: ${this.#done}${of}${pct}  ${rate.toFixed(0)}/s${eta}`;
    Deno.stderr.writeSync(encoder.encode(this.#tty ? `\r\x1b[K${line}` : `${line}\n`));
  }

  /** Clears the line. */
  finish(): void {
    if (this.#tty) Deno.stderr.writeSync(encoder.encode("\r\x1b[K"));
  }
}
