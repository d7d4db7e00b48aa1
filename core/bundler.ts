/**
 * The bundling policy: files accumulate into an open bundle that closes when
 * it reaches the target size or when its oldest file has waited the max age.
 * A file at least as big as the target gets a bundle of its own.
 *
 * Pure bookkeeping: the caller feeds items and asks for closed bundles.
 *
 * @example
 * ```ts
 * const b = new Bundler<string>({ targetSize: 100, maxAgeMs: 30_000 });
 * b.add("a", 60, 0); // []
 * b.add("b", 60, 1); // closes a bundle of ["a"]: 60 + 60 would pass 100
 * ```
 * @module
 */

/** Default target bundle size: 25 MiB. */
export const DEFAULT_TARGET_SIZE = 25 * 1024 * 1024;
/** Default max age of the oldest file in an open bundle: 30 s. */
export const DEFAULT_MAX_AGE_MS = 30_000;

/** When bundles close. */
export interface BundlePolicy {
  /** Close once the bundle's size reaches this many bytes (default 25 MiB). */
  readonly targetSize: number;
  /** Close once the oldest file has waited this long, in ms (default 30 s). */
  readonly maxAgeMs: number;
}

/** A closed bundle. */
export interface Bundle<T> {
  readonly items: T[];
  /** Sum of the item sizes given to {@linkcode Bundler.add}. */
  readonly size: number;
  /** When the first item arrived (ms). */
  readonly openedAt: number;
  /** Why it closed. */
  readonly reason: "size" | "age" | "large" | "flush";
}

/** Accumulates items into bundles according to a {@linkcode BundlePolicy}. */
export class Bundler<T> {
  #policy: BundlePolicy;
  #items: T[] = [];
  #size = 0;
  #openedAt = 0;

  constructor(policy: BundlePolicy) {
    if (!Number.isSafeInteger(policy.targetSize) || policy.targetSize < 1) {
      throw new RangeError(`Invalid target size: ${policy.targetSize} bytes`);
    }
    if (!Number.isFinite(policy.maxAgeMs) || policy.maxAgeMs < 0) {
      throw new RangeError(`Invalid max age: ${policy.maxAgeMs} ms`);
    }
    this.#policy = policy;
  }

  /** Number of items in the open bundle. */
  get count(): number {
    return this.#items.length;
  }

  /** Size of the open bundle. */
  get size(): number {
    return this.#size;
  }

  /**
   * Adds an item of `size` bytes that arrived at `nowMs`; returns the bundles
   * this closes (zero, one or two), oldest first.
   */
  add(item: T, size: number, nowMs: number): Bundle<T>[] {
    const closed: Bundle<T>[] = [];
    const target = this.#policy.targetSize;
    if (size >= target) {
      // A large file travels alone; the open bundle keeps filling.
      closed.push({ items: [item], size, openedAt: nowMs, reason: "large" });
      return closed;
    }
    if (this.#items.length > 0 && this.#size + size > target) {
      closed.push(this.#close("size"));
    }
    if (this.#items.length === 0) this.#openedAt = nowMs;
    this.#items.push(item);
    this.#size += size;
    if (this.#size >= target) closed.push(this.#close("size"));
    return closed;
  }

  /** When the open bundle must close by age (ms), or `null` when none is open. */
  deadline(): number | null {
    return this.#items.length === 0 ? null : this.#openedAt + this.#policy.maxAgeMs;
  }

  /** Closes the open bundle if its oldest item has waited the max age. */
  due(nowMs: number): Bundle<T> | null {
    const d = this.deadline();
    return d !== null && nowMs >= d ? this.#close("age") : null;
  }

  /** Closes the open bundle whatever its size or age (shutdown, end of `--once`). */
  flush(): Bundle<T> | null {
    return this.#items.length === 0 ? null : this.#close("flush");
  }

  #close(reason: Bundle<T>["reason"]): Bundle<T> {
    const bundle = { items: this.#items, size: this.#size, openedAt: this.#openedAt, reason };
    this.#items = [];
    this.#size = 0;
    return bundle;
  }
}
