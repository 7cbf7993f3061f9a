// A single updating progress line on stderr for long data work. It draws only on a terminal,
// so logs and CI output stay clean; the caller prints the final summary itself.

const encoder = new TextEncoder();

export class Progress {
  #label: string;
  #total: number | undefined;
  #done = 0;
  #start = performance.now();
  #lastDraw = 0;
  #enabled: boolean;

  constructor(label: string, total?: number) {
    this.#label = label;
    this.#total = total;
    this.#enabled = Deno.stderr.isTerminal();
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
    if (this.#enabled && now - this.#lastDraw > 100) {
      this.#lastDraw = now;
      this.#draw();
    }
  }

  #draw(): void {
    const of = this.#total !== undefined ? `/${this.#total}` : "";
    const pct = this.#total ? ` ${(100 * this.#done / this.#total).toFixed(0)}%` : "";
    const line = `${this.#label}: ${this.#done}${of}${pct}  ${this.rate.toFixed(0)}/s`;
    Deno.stderr.writeSync(encoder.encode(`\r\x1b[K${line}`));
  }

  /** Clears the line. */
  finish(): void {
    if (this.#enabled) Deno.stderr.writeSync(encoder.encode("\r\x1b[K"));
  }
}
