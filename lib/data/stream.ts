// Stream stages shared by the loader and the import commands.
import type { Rng } from "./random.ts";

/** Webdataset's shuffle buffer: each new sample replaces a random held one, which is yielded. */
export async function* shuffleBuffer<T>(
  items: AsyncIterable<T>,
  size: number,
  rng: Rng,
): AsyncGenerator<T> {
  if (size <= 1) return yield* items;
  const held: T[] = [];
  for await (const item of items) {
    if (held.length < size) {
      held.push(item);
      continue;
    }
    const j = Math.floor(rng() * size);
    const out = held[j];
    held[j] = item;
    yield out;
  }
  while (held.length > 0) {
    const j = Math.floor(rng() * held.length);
    const out = held[j];
    held[j] = held[held.length - 1];
    held.pop();
    yield out;
  }
}

/** Runs `f` on up to `concurrency` items at once and yields the results in input order. */
export async function* mapOrdered<T, U>(
  items: AsyncIterable<T> | Iterable<T>,
  f: (item: T) => Promise<U>,
  concurrency: number,
): AsyncGenerator<U> {
  const inFlight: Promise<U>[] = [];
  for await (const item of items) {
    const p = f(item);
    // Its rejection is thrown where it is awaited, in order; until then (or if an earlier one
    // ends the stream) it must not count as unhandled, which would kill the process.
    p.catch(() => {});
    inFlight.push(p);
    if (inFlight.length >= concurrency) yield await inFlight.shift()!;
  }
  while (inFlight.length > 0) yield await inFlight.shift()!;
}
