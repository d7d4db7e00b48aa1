/**
 * Bounded channels and a byte budget: the backpressure of the pipeline.
 * Pure promise plumbing; no timers.
 * @module
 */

/** What {@linkcode Channel.pop} returns when its signal aborted first. */
export const TIMED_OUT: unique symbol = Symbol("timed out");

/**
 * A bounded FIFO between async tasks. `push` waits while full; `pop` waits
 * while empty and returns `undefined` once the channel is closed and drained.
 *
 * @example
 * ```ts
 * const ch = new Channel<number>(2);
 * await ch.push(1);
 * ch.close();
 * await ch.pop(); // 1
 * await ch.pop(); // undefined
 * ```
 */
export class Channel<T> {
  #items: T[] = [];
  #head = 0;
  #capacity: number;
  #closed = false;
  #takers: ((v: T | undefined) => void)[] = [];
  #givers: (() => void)[] = [];

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`Invalid channel capacity: ${capacity}`);
    }
    this.#capacity = capacity;
  }

  /** Items waiting. */
  get length(): number {
    return this.#items.length - this.#head;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Adds an item, waiting while the channel is full. Throws once closed. */
  async push(item: T): Promise<void> {
    while (this.length >= this.#capacity && this.#takers.length === 0) {
      if (this.#closed) break;
      await new Promise<void>((resolve) => this.#givers.push(resolve));
    }
    if (this.#closed) throw new TypeError("Cannot push: the channel is closed");
    const taker = this.#takers.shift();
    if (taker) taker(item);
    else this.#items.push(item);
  }

  /**
   * Takes the oldest item, waiting while empty. Returns `undefined` when
   * closed and drained, and {@linkcode TIMED_OUT} when `signal` aborts first
   * (no item is lost: an aborted pop takes nothing).
   */
  pop(signal?: AbortSignal): Promise<T | undefined | typeof TIMED_OUT> {
    if (this.length > 0) {
      const item = this.#items[this.#head]!;
      this.#items[this.#head++] = undefined as T;
      if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
        this.#items = this.#items.slice(this.#head);
        this.#head = 0;
      }
      this.#givers.shift()?.();
      return Promise.resolve(item);
    }
    if (this.#closed) return Promise.resolve(undefined);
    if (signal?.aborted) return Promise.resolve(TIMED_OUT);
    return new Promise((resolve) => {
      const taker = (v: T | undefined) => {
        signal?.removeEventListener("abort", onAbort);
        resolve(v);
      };
      const onAbort = () => {
        const i = this.#takers.indexOf(taker);
        if (i >= 0) this.#takers.splice(i, 1);
        resolve(TIMED_OUT);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#takers.push(taker);
      this.#givers.shift()?.();
    });
  }

  /** Closes the channel: waiting pops get `undefined`, waiting pushes throw. */
  close(): void {
    this.#closed = true;
    for (const t of this.#takers.splice(0)) t(undefined);
    for (const g of this.#givers.splice(0)) g();
  }
}

/**
 * A budget of bytes: `acquire(n)` waits until `n` bytes are free. A request
 * larger than the whole budget waits until nothing else is held, then goes
 * alone, so that one huge file cannot deadlock the pipeline.
 */
export class ByteBudget {
  #limit: number;
  #held = 0;
  #waiters: { n: number; resolve: () => void }[] = [];

  constructor(limit: number) {
    if (!Number.isSafeInteger(limit) || limit < 1) {
      throw new RangeError(`Invalid byte budget: ${limit}`);
    }
    this.#limit = limit;
  }

  /** Bytes held now. */
  get held(): number {
    return this.#held;
  }

  /** Waits for `n` bytes. Requests are served in order. */
  acquire(n: number): Promise<void> {
    if (this.#waiters.length === 0 && this.#fits(n)) {
      this.#held += n;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#waiters.push({ n, resolve }));
  }

  /** Returns `n` bytes. */
  release(n: number): void {
    this.#held -= n;
    if (this.#held < 0) throw new RangeError(`Byte budget released more than held: ${-this.#held}`);
    while (this.#waiters.length > 0 && this.#fits(this.#waiters[0]!.n)) {
      const w = this.#waiters.shift()!;
      this.#held += w.n;
      w.resolve();
    }
  }

  #fits(n: number): boolean {
    return this.#held + n <= this.#limit || this.#held === 0;
  }
}

/**
 * A wake-up call between tasks: `wait()` resolves at the next `notify()`
 * (or when the signal aborts).
 */
export class Notifier {
  #waiters: (() => void)[] = [];

  notify(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  wait(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        signal?.removeEventListener("abort", done);
        resolve();
      };
      signal?.addEventListener("abort", done, { once: true });
      this.#waiters.push(done);
    });
  }
}
