// Bad samples are skipped, never fatal: each is counted by reason, and the first few keys of
// each reason are kept so the end-of-run report says where to look.

const KEYS_KEPT = 5;

export type SkipReason =
  | "corrupt image"
  | "missing caption"
  | "missing image"
  | "unreadable member"
  | "unreadable file";

export class SkipReport {
  #keys = new Map<SkipReason, Set<string>>();
  #counts = new Map<SkipReason, number>();

  /**
   * Counts one bad sample. A key met again (the same sample in a later epoch, or replayed on
   * resume) is counted once.
   */
  record(reason: SkipReason, key: string): void {
    let seen = this.#keys.get(reason);
    if (!seen) this.#keys.set(reason, seen = new Set());
    if (seen.has(key)) return;
    seen.add(key);
    this.#counts.set(reason, (this.#counts.get(reason) ?? 0) + 1);
  }

  get total(): number {
    let n = 0;
    for (const c of this.#counts.values()) n += c;
    return n;
  }

  count(reason: SkipReason): number {
    return this.#counts.get(reason) ?? 0;
  }

  /** The first keys recorded for a reason, in the order they were met. */
  keys(reason: SkipReason): string[] {
    return [...(this.#keys.get(reason) ?? [])].slice(0, KEYS_KEPT);
  }

  /** One line, or null when nothing was skipped. */
  summary(): string | null {
    if (this.total === 0) return null;
    const parts = [...this.#counts].map(([reason, n]) => {
      const keys = this.keys(reason);
      const more = n > keys.length ? ", …" : "";
      return `${n} ${reason} (${keys.join(", ")}${more})`;
    });
    return `skipped ${this.total} bad sample${this.total === 1 ? "" : "s"}: ${parts.join("; ")}`;
  }
}
