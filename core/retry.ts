/**
 * Retries, per-call timeouts and concurrency limits as wrappers around a
 * port, so that no adapter carries its own copy of them (restic's
 * `backend/retry`). A call is retried only when its error says trying again
 * may help (`isRetryable`: throttling, timeouts, 5xx, resets, a lost
 * database connection); anything else surfaces at once with the service's
 * code.
 *
 * @example
 * ```ts
 * const store = withRetryStore(inner, { attempts: 6, baseMs: 500, maxMs: 30_000, clock });
 * const catalog = withRetryCatalog(innerCatalog, { attempts: 8, baseMs: 250, maxMs: 10_000, clock });
 * ```
 * @module
 */

import { isRetryable, PortError } from "./errors.ts";
import type { Catalog, Clock, ColdStore, StoredArchive } from "./ports.ts";

/** How to retry. */
export interface RetryPolicy {
  /** Attempts in all, the first included (1 = no retry). */
  readonly attempts: number;
  /** Upper bound of the first delay, ms; it doubles per attempt. */
  readonly baseMs: number;
  /** Cap of any one delay, ms. */
  readonly maxMs: number;
  readonly clock: Clock;
  /** Uniform in [0, 1); default `Math.random` (jitter needs no secrecy). */
  readonly random?: () => number;
  /** Told before each wait: the error, the attempt that failed (1-based), the delay. */
  readonly onRetry?: (e: unknown, attempt: number, delayMs: number) => void;
}

/**
 * The delay before attempt `attempt + 1` with "full jitter": uniform in
 * [0, min(maxMs, baseMs x 2^(attempt-1))]. Spreads the retries of many
 * callers so they do not hammer a recovering service in step.
 */
export function backoffDelay(
  attempt: number,
  policy: Pick<RetryPolicy, "baseMs" | "maxMs" | "random">,
): number {
  const cap = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.floor(cap * (policy.random ?? Math.random)());
}

/**
 * Calls `fn` until it resolves, its error is not retryable, the attempts
 * are used up, or `signal` aborts (rejecting with the signal's reason).
 * The last error is rethrown as it was.
 */
export async function retry<T>(
  fn: (attempt: number) => Promise<T>,
  policy: RetryPolicy,
  signal?: AbortSignal,
): Promise<T> {
  if (!Number.isSafeInteger(policy.attempts) || policy.attempts < 1) {
    throw new RangeError(`Invalid retry attempts: ${policy.attempts} (at least 1)`);
  }
  for (let attempt = 1;; attempt++) {
    signal?.throwIfAborted();
    try {
      return await fn(attempt);
    } catch (e) {
      if (signal?.aborted) throw signal.reason;
      if (!isRetryable(e) || attempt >= policy.attempts) throw e;
      const delay = backoffDelay(attempt, policy);
      policy.onRetry?.(e, attempt, delay);
      await policy.clock.sleep(delay, signal);
    }
  }
}

/**
 * Runs `fn` with a signal that also aborts after `ms`; a call cut short by
 * the timeout rejects with a retryable `PortError` coded `Timeout` naming
 * `what`. The caller's own abort still rejects with its reason.
 */
export async function withTimeout<T>(
  what: string,
  ms: number,
  clock: Clock,
  fn: (signal: AbortSignal) => Promise<T>,
  signal?: AbortSignal,
): Promise<T> {
  if (!(ms > 0) || !Number.isFinite(ms)) return await fn(signal ?? new AbortController().signal);
  const timer = new AbortController();
  const stop = new AbortController();
  const timedOut = new PortError(`${what}: no answer within ${formatMs(ms)}`, {
    code: "Timeout",
    retryable: true,
  });
  clock.sleep(ms, stop.signal).then(() => timer.abort(timedOut), () => {});
  const combined = signal ? AbortSignal.any([signal, timer.signal]) : timer.signal;
  try {
    return await fn(combined);
  } catch (e) {
    if (timer.signal.aborted && !signal?.aborted) throw timedOut;
    throw e;
  } finally {
    stop.abort();
  }
}

function formatMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}

/** A counting semaphore: at most `n` holders at once, first come first served. */
export class Limiter {
  #free: number;
  readonly #waiting: (() => void)[] = [];
  constructor(n: number) {
    if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`Invalid concurrency: ${n}`);
    this.#free = n;
  }
  /** Runs `fn` once a slot is free. */
  async run<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    await this.#acquire(signal);
    try {
      return await fn();
    } finally {
      this.#release();
    }
  }
  #acquire(signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    if (this.#free > 0) {
      this.#free--;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const grant = () => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      };
      const onAbort = () => {
        const i = this.#waiting.indexOf(grant);
        if (i >= 0) this.#waiting.splice(i, 1);
        reject(signal?.reason);
      };
      this.#waiting.push(grant);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }
  #release(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#free++;
  }
}

/** Retry, timeouts and concurrency for a {@linkcode ColdStore}. */
export interface StoreResilience extends RetryPolicy {
  /** Per-call timeout of a put, ms, for the whole archive (default 30 min; 0 = none). */
  readonly putTimeoutMs?: number;
  /** Per-call timeout of every other call, ms (default 2 min; 0 = none). */
  readonly callTimeoutMs?: number;
  /** Calls in flight at once (default: unlimited). */
  readonly concurrency?: number;
  /** Told of each retry with the operation's name (`put`, `startRetrieval`...). */
  readonly onStoreRetry?: (op: string, e: unknown, attempt: number, delayMs: number) => void;
}

/**
 * Wraps a store so that each call is retried on retryable errors, cut off
 * after its timeout, and limited in concurrency. A put is retried from the
 * start with a fresh body (`PutArchive.body` is a factory). `list` retries
 * only until its first archive arrives: a listing cannot resume midway.
 * `readRetrieval` retries opening the stream; an error in the middle of
 * the bytes reaches the reader, who knows how far it got.
 */
export function withRetryStore(store: ColdStore, r: StoreResilience): ColdStore {
  const limiter = r.concurrency === undefined ? null : new Limiter(r.concurrency);
  const putMs = r.putTimeoutMs ?? 30 * 60_000;
  const callMs = r.callTimeoutMs ?? 2 * 60_000;
  /** `ms` 0: no timeout. */
  function call<T>(
    op: string,
    ms: number,
    signal: AbortSignal | undefined,
    fn: (signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    const once = () => withTimeout(`${store.location}: ${op}`, ms, r.clock, fn, signal);
    return retry(() => limiter ? limiter.run(once, signal) : once(), storePolicy(r, op), signal);
  }
  return {
    location: store.location,
    capabilities: store.capabilities,
    put: (archive, o) => call("put", putMs, o?.signal, (signal) => store.put(archive, { signal })),
    startRetrieval: (remoteId, o) =>
      call(
        "startRetrieval",
        callMs,
        o.signal,
        (signal) => store.startRetrieval(remoteId, { ...o, signal }),
      ),
    retrieval: (jobId, o) =>
      call("retrieval", callMs, o?.signal, (signal) => store.retrieval(jobId, { signal })),
    // No timeout on the open: the stream outlives the call, and a timer's
    // abort would cut it. The caller's signal still applies.
    readRetrieval: (jobId, o) =>
      call("readRetrieval", 0, o?.signal, () => store.readRetrieval(jobId, o)),
    list: (o) => listWithRetry(store, r, o?.signal),
    delete: (remoteId, o) =>
      call("delete", callMs, o?.signal, (signal) => store.delete(remoteId, { signal })),
    close: () => store.close(),
  };
}

/** The retry policy of one store operation: tells both hooks of each retry. */
function storePolicy(r: StoreResilience, op: string): RetryPolicy {
  return {
    ...r,
    onRetry: (e, attempt, delay) => {
      r.onRetry?.(e, attempt, delay);
      r.onStoreRetry?.(op, e, attempt, delay);
    },
  };
}

async function* listWithRetry(
  store: ColdStore,
  r: StoreResilience,
  signal?: AbortSignal,
): AsyncIterable<StoredArchive> {
  for (let attempt = 1;; attempt++) {
    let yielded = false;
    try {
      for await (const a of store.list(signal ? { signal } : {})) {
        yielded = true;
        yield a;
      }
      return;
    } catch (e) {
      if (yielded || signal?.aborted || !isRetryable(e) || attempt >= r.attempts) throw e;
      const delay = backoffDelay(attempt, r);
      storePolicy(r, "list").onRetry?.(e, attempt, delay);
      await r.clock.sleep(delay, signal);
    }
  }
}

/**
 * Wraps a catalog so that every call is retried on retryable errors (a lost
 * connection, a restarted server, a deadlock). Safe because every catalog
 * write is idempotent: `addDiscovered` leaves known versions alone,
 * `commitArchive` of an archive already committed changes nothing, and the
 * rest set states or values. A repeated `recordFailure` may count one
 * attempt twice, which errs on the side of attention.
 */
export function withRetryCatalog(
  catalog: Catalog,
  policy: RetryPolicy & { readonly onCatalogRetry?: (op: string, e: unknown) => void },
): Catalog {
  const wrapped = {} as Record<string, unknown>;
  const target = catalog as unknown as Record<string, unknown>;
  for (const op of CATALOG_METHODS) {
    const method = target[op];
    if (typeof method !== "function") continue;
    wrapped[op] = (...args: unknown[]) =>
      retry(() => (method as (...a: unknown[]) => Promise<unknown>).apply(catalog, args), {
        ...policy,
        onRetry: (e, attempt, delay) => {
          policy.onRetry?.(e, attempt, delay);
          policy.onCatalogRetry?.(op, e);
        },
      });
  }
  wrapped.close = () => catalog.close();
  return wrapped as unknown as Catalog;
}

/** Every method of the Catalog port but `close`, checked against the interface. */
const CATALOG_METHODS = [
  "migrate",
  "latestVersions",
  "addDiscovered",
  "pendingFiles",
  "claimFiles",
  "acquireLease",
  "releaseLease",
  "markVanished",
  "markGone",
  "recordFailure",
  "commitArchive",
  "getCursor",
  "setCursor",
  "file",
  "fileVersions",
  "archive",
  "archiveFiles",
  "archives",
  "status",
  "recentFailures",
  "addRetrieval",
  "updateRetrieval",
  "retrieval",
  "retrievalByJob",
  "liveRetrievals",
  "addRestores",
  "assignRestores",
  "finishRestore",
  "restores",
  "archiveSeqRange",
  "archivesBySeq",
  "retrievedBytesSince",
  "addAudit",
  "updateAudit",
  "audits",
  "addDrill",
  "updateDrill",
  "drills",
] as const satisfies readonly Exclude<keyof Catalog, "close">[];

// Fails to compile when a Catalog method is missing from the list above.
type _Missing = Exclude<Exclude<keyof Catalog, "close">, (typeof CATALOG_METHODS)[number]>;
const _allListed: [_Missing] extends [never] ? true : never = true;
void _allListed;
