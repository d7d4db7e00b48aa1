/**
 * A {@linkcode Fetcher} for directory sources that reads files in worker
 * threads: the checks, the read and the md5 of each file run beside the
 * main thread, which keeps the catalog, the tar assembly and the tree hash.
 * Requests are batched per worker and bytes come back by transfer.
 *
 * On a 2-core machine this roughly doubles the files per second of a
 * backfill of small files compared with {@linkcode SpoolFetcher}.
 * @module
 */

import { ChangedError, PortError, VanishedError } from "../../core/errors.ts";
import type { Fetched, Fetcher, SourceEntry } from "../../core/ports.ts";
import {
  cleanSpool,
  DEFAULT_MEMORY_THRESHOLD,
  fetchedOf,
  type RawFetched,
} from "./spool_fetcher.ts";

/** A message to a worker. */
export type WorkerRequest =
  | { type: "init"; root: string; spoolDir: string; memoryThreshold: number }
  | { type: "batch"; items: { id: number; entry: SourceEntry }[] };

/** An error as it crosses the thread boundary. */
export interface WorkerError {
  name: string;
  message: string;
  code?: string;
  retryable?: boolean;
}

/** One answer from a worker. */
export type WorkerResult =
  | { id: number; ok: true; raw: RawFetched }
  | { id: number; ok: false; error: WorkerError };

/** Options for {@linkcode WorkerFetcher.open}. */
export interface WorkerFetcherOptions {
  /** Worker threads (default 2). */
  readonly workers?: number;
  /** Files up to this many bytes are held in memory (default 1 MiB). */
  readonly memoryThreshold?: number;
}

interface Waiter {
  resolve: (f: Fetched) => void;
  reject: (e: unknown) => void;
}

interface Lane {
  worker: Worker;
  outstanding: Map<number, Waiter>;
  queued: { id: number; entry: SourceEntry }[];
}

/** Rebuilds an error that crossed from a worker. */
function revive(e: WorkerError): Error {
  if (e.name === "VanishedError") return new VanishedError(e.message);
  if (e.name === "ChangedError") return new ChangedError(e.message);
  if (e.name === "TypeError") return new TypeError(e.message);
  return new PortError(e.message, {
    code: e.code ?? e.name,
    retryable: e.retryable ?? false,
  });
}

/** Reads directory-source files in worker threads. */
export class WorkerFetcher implements Fetcher {
  #lanes: Lane[] = [];
  #nextId = 0;
  #flushScheduled = false;
  #closed = false;

  private constructor() {}

  /**
   * Starts the workers for the directory tree at `root` (the source's real
   * path), spooling large files into `spoolDir`.
   */
  static async open(
    root: string,
    spoolDir: string,
    options: WorkerFetcherOptions = {},
  ): Promise<WorkerFetcher> {
    await cleanSpool(spoolDir);
    const f = new WorkerFetcher();
    const n = options.workers ?? 2;
    if (!Number.isInteger(n) || n < 1 || n > 64) {
      throw new RangeError(`Invalid worker count: ${n}`);
    }
    for (let i = 0; i < n; i++) {
      const worker = new Worker(new URL("./_dir_worker.ts", import.meta.url), { type: "module" });
      const lane: Lane = { worker, outstanding: new Map(), queued: [] };
      worker.onmessage = (ev: MessageEvent<{ items: WorkerResult[] }>) => {
        for (const r of ev.data.items) {
          const w = lane.outstanding.get(r.id);
          if (!w) continue;
          lane.outstanding.delete(r.id);
          if (r.ok) w.resolve(fetchedOf(r.raw));
          else w.reject(revive(r.error));
        }
      };
      worker.onerror = (ev) => {
        ev.preventDefault();
        const err = new PortError(`Fetch worker failed: ${ev.message}`, {
          code: "WORKER_FAILED",
          retryable: true,
        });
        for (const w of lane.outstanding.values()) w.reject(err);
        lane.outstanding.clear();
      };
      worker.postMessage(
        {
          type: "init",
          root,
          spoolDir,
          memoryThreshold: options.memoryThreshold ?? DEFAULT_MEMORY_THRESHOLD,
        } satisfies WorkerRequest,
      );
      f.#lanes.push(lane);
    }
    return f;
  }

  fetch(entry: SourceEntry, options: { signal?: AbortSignal } = {}): Promise<Fetched> {
    if (this.#closed) {
      return Promise.reject(
        new PortError("Cannot fetch: the fetcher is closed", { code: "ECLOSED", retryable: false }),
      );
    }
    options.signal?.throwIfAborted();
    let lane = this.#lanes[0]!;
    for (const l of this.#lanes) {
      if (l.outstanding.size < lane.outstanding.size) lane = l;
    }
    const id = ++this.#nextId;
    const p = new Promise<Fetched>((resolve, reject) => {
      lane.outstanding.set(id, { resolve, reject });
    });
    lane.queued.push({ id, entry });
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      queueMicrotask(() => this.#flush());
    }
    return p;
  }

  /** Sends each lane's queued requests as one message. */
  #flush(): void {
    this.#flushScheduled = false;
    for (const lane of this.#lanes) {
      if (lane.queued.length === 0) continue;
      const items = lane.queued;
      lane.queued = [];
      lane.worker.postMessage({ type: "batch", items } satisfies WorkerRequest);
    }
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    const err = new PortError("Fetcher closed", { code: "ECLOSED", retryable: true });
    for (const lane of this.#lanes) {
      for (const w of lane.outstanding.values()) w.reject(err);
      lane.worker.terminate();
    }
    return Promise.resolve();
  }
}
