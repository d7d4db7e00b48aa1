/**
 * The verifier's streaming path: reads a tar from a stream once, in bounded
 * memory, and md5s every entry's data as it passes (core/tar_reader.ts's
 * push parser hands the data over as views of the stream's chunks, no
 * copy). A tar that cannot be parsed (bad checksum, truncated, ...) stops
 * the reading and is reported with the offset and reason, together with
 * every entry read whole before it.
 *
 * Speed: the md5s run on a second thread (one `node:worker_threads` worker
 * shared by the process) while this one reads and parses; entry data goes
 * there copied into 1 MiB batches (at most 8 in flight per call, so memory
 * stays bounded). When that thread is busy, entries are hashed here too,
 * so both cores work (issue 8: >= 0.8x `openssl dgst -md5`).
 *
 * @example
 * ```ts
 * const result = await digestTar(await store.readRetrieval(jobId));
 * for (const e of result.entries) console.log(e.name, e.size, e.md5);
 * if (result.unreadable) console.log(result.unreadable.offset, result.unreadable.reason);
 * ```
 * @module
 */

import { createHash, type Hash } from "node:crypto";
import { TarParser } from "../../core/tar_reader.ts";
import { Worker } from "node:worker_threads";

/** One tar entry as read: name, data size and md5 of its data (lower hex). */
export interface DigestedEntry {
  readonly name: string;
  readonly size: number;
  readonly md5: string;
  /** The entry's typeflag (`"0"` regular file). */
  readonly type: string;
  readonly headerOffset: number;
}

/** What {@linkcode digestTar} found. */
export interface TarDigest {
  /** Every entry read whole, in tar order. */
  readonly entries: readonly DigestedEntry[];
  /** Set when the tar could not be parsed: where, and why. */
  readonly unreadable?: { readonly offset: number; readonly reason: string };
  /** Bytes read from the stream. */
  readonly bytes: number;
}

/** Bytes of entry data per batch sent to the md5 thread. */
const BATCH_BYTES = 1024 * 1024;
/** Batches in flight before reading waits for the md5 thread to catch up (bounds memory). */
const MAX_IN_FLIGHT = 8;
/** Batches in flight from which entries beginning are hashed on the reading thread too. */
const SHARE_BELOW = 3;

/**
 * The md5 thread's code (a CommonJS worker: it needs no module file and no
 * permission). A batch `{ call, buffer, segments }` carries entry data:
 * `segments` is a flat list of triples (entry number, byte count, 1 if the
 * entry ends there else 0) whose bytes follow one another in `buffer`. The
 * reply `{ call, buffer, digests }` gives the buffer back (by transfer) with
 * `[entry, md5]` for every entry that ended in the batch. `{ call, forget:
 * true }` drops a call's unfinished hashes.
 */
const WORKER_CODE = `
const { parentPort } = require("node:worker_threads");
const { createHash } = require("node:crypto");
const calls = new Map();
parentPort.on("message", (msg) => {
  if (msg.forget) return void calls.delete(msg.call);
  let hashes = calls.get(msg.call);
  if (hashes === undefined) calls.set(msg.call, hashes = new Map());
  const bytes = new Uint8Array(msg.buffer);
  const segments = msg.segments;
  const digests = [];
  let at = 0;
  for (let i = 0; i + 2 < segments.length; i += 3) {
    const entry = segments[i];
    const length = segments[i + 1];
    let hash = hashes.get(entry);
    if (hash === undefined) hashes.set(entry, hash = createHash("md5"));
    if (length > 0) hash.update(bytes.subarray(at, at + length));
    at += length;
    if (segments[i + 2] === 1) {
      digests.push([entry, hash.digest("hex")]);
      hashes.delete(entry);
    }
  }
  parentPort.postMessage({ call: msg.call, buffer: msg.buffer, digests }, [msg.buffer]);
});
parentPort.postMessage({ ready: true });
`;

interface BatchReply {
  readonly call: number;
  readonly buffer: ArrayBuffer;
  readonly digests: readonly (readonly [number, string])[];
}

/**
 * The md5 thread, shared by every {@linkcode digestTar} call of the process
 * (starting a thread costs ~30 ms, about what md5ing a 25 MB tar does). It
 * holds the process open only while a call uses it.
 */
const md5Thread = {
  worker: null as Worker | null,
  ready: false,
  /** Set when the thread cannot be started: every call hashes on its own thread. */
  unavailable: false,
  calls: new Map<number, ThreadHasher>(),
  nextCall: 0,
  users: 0,

  /** The thread (started if needed, and held open), or null when there is none. */
  acquire(hasher: ThreadHasher): number | null {
    if (this.unavailable) return null;
    if (this.worker === null) {
      try {
        const worker = new Worker(WORKER_CODE, { eval: true });
        worker.on("message", (msg: BatchReply | { ready: true }) => {
          if ("ready" in msg) this.ready = true;
          else this.calls.get(msg.call)?.reply(msg);
        });
        worker.on("error", (e: unknown) => this.fail(worker, e));
        worker.on("exit", (code: number) => this.fail(worker, `it exited with code ${code}`));
        this.worker = worker;
        this.ready = false;
      } catch {
        this.unavailable = true;
        return null;
      }
    }
    if (this.users++ === 0) this.worker.ref();
    const call = this.nextCall++;
    this.calls.set(call, hasher);
    return call;
  },

  release(call: number): void {
    if (!this.calls.delete(call)) return;
    this.worker?.postMessage({ call, forget: true });
    if (--this.users === 0) this.worker?.unref();
  },

  fail(worker: Worker, cause: unknown): void {
    if (this.worker !== worker) return;
    // One that never started (no threads here, ...) is not tried again.
    if (!this.ready) this.unavailable = true;
    this.worker = null;
    this.ready = false;
    this.users = 0;
    const calls = [...this.calls.values()];
    this.calls.clear();
    void worker.terminate();
    for (const c of calls) c.failed(cause);
  },
};

/**
 * md5s one call's entries on the md5 thread, so that hashing overlaps with
 * reading and parsing on this one. Entries that begin before the thread
 * has started (or all of them, if it cannot start) are hashed here: the
 * results are the same.
 */
class ThreadHasher {
  readonly #call: number | null;
  #failure: unknown = null;
  #free: ArrayBuffer[] = [];
  #batch: Uint8Array | null = null;
  #fill = 0;
  #segments: number[] = [];
  #inFlight = 0;
  #wake: (() => void) | null = null;
  readonly digests = new Map<number, string>();

  constructor() {
    this.#call = md5Thread.acquire(this);
  }

  /**
   * True when an entry beginning now had better be hashed by the md5 thread:
   * it has started and is not busy. When it is busy, this thread hashes the
   * entry itself, so both work.
   */
  get wanted(): boolean {
    return this.#call !== null && this.#failure === null && md5Thread.ready &&
      this.#inFlight < SHARE_BELOW;
  }

  /** Queues `data` (copied) as the next bytes of `entry`; `ends`: the entry's last bytes. */
  update(entry: number, data: Uint8Array, ends: boolean): void {
    let at = 0;
    do {
      if (this.#batch === null) {
        const b = this.#free.pop();
        this.#batch = b ? new Uint8Array(b) : new Uint8Array(BATCH_BYTES);
        this.#fill = 0;
      }
      const n = Math.min(data.length - at, this.#batch.length - this.#fill);
      this.#batch.set(data.subarray(at, at + n), this.#fill);
      this.#fill += n;
      at += n;
      this.#segments.push(entry, n, at === data.length && ends ? 1 : 0);
      if (this.#fill === this.#batch.length) this.#send();
    } while (at < data.length);
  }

  /** Waits for reading to go on: the md5 thread is not too far behind. */
  async throttle(): Promise<void> {
    await this.#drain(MAX_IN_FLIGHT);
  }

  /** Sends what is left and waits for every digest. */
  async finish(): Promise<void> {
    this.#send();
    await this.#drain(0);
  }

  /** Ends the call (the md5 thread drops its unfinished hashes). */
  close(): void {
    if (this.#call !== null) md5Thread.release(this.#call);
    this.#notify();
  }

  /** The md5 thread's answer to one of this call's batches. */
  reply(msg: BatchReply): void {
    this.#inFlight--;
    this.#free.push(msg.buffer);
    for (const [entry, md5] of msg.digests) this.digests.set(entry, md5);
    this.#notify();
  }

  /** The md5 thread died: the batches in flight are lost. */
  failed(cause: unknown): void {
    this.#failure = cause;
    this.#notify();
  }

  #send(): void {
    if (this.#batch === null || this.#segments.length === 0) return;
    if (this.#failure !== null) throw this.#error();
    const buffer = this.#batch.buffer as ArrayBuffer;
    md5Thread.worker!.postMessage({ call: this.#call, buffer, segments: this.#segments }, [buffer]);
    this.#inFlight++;
    this.#batch = null;
    this.#segments = [];
  }

  async #drain(n: number): Promise<void> {
    while (this.#inFlight > n) {
      if (this.#failure !== null) throw this.#error();
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
  }

  #error(): Error {
    return new Error(`Cannot md5 tar entries: the md5 thread failed: ${this.#failure}`, {
      cause: this.#failure,
    });
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }
}

/**
 * Reads `stream` as a tar, md5ing each entry. Rejects only when the stream
 * itself fails (the store's error, unchanged) or `signal` aborts; a tar
 * that does not parse resolves with `unreadable`.
 *
 * The md5s are computed on a worker thread while this one reads and parses
 * (entries that begin before that thread is up, or while it is busy, are
 * hashed here); the results are the same as hashing everything here.
 *
 * @param stream the archive's bytes
 * @param options `signal`: stops reading (the stream is cancelled)
 */
export async function digestTar(
  stream: ReadableStream<Uint8Array>,
  options: { readonly signal?: AbortSignal } = {},
): Promise<TarDigest> {
  interface Read {
    readonly name: string;
    readonly size: number;
    md5: string | null;
    readonly type: string;
    readonly headerOffset: number;
  }
  const read: Read[] = [];
  const hasher = new ThreadHasher();
  /** The entry being read: hashed here (`hash`) or by the worker (`hash` null). */
  let hash: Hash | null = null;
  let current: number | null = null;
  const parser = new TarParser({
    entry(h) {
      hash = hasher.wanted ? null : createHash("md5");
      current = h.headerOffset;
    },
    data(chunk) {
      if (hash !== null) hash.update(chunk);
      else hasher.update(read.length, chunk, false);
    },
    entryEnd(h) {
      let md5: string | null = null;
      if (hash !== null) md5 = hash.digest("hex");
      else hasher.update(read.length, new Uint8Array(0), true);
      read.push({ name: h.name, size: h.size, md5, type: h.type, headerOffset: h.headerOffset });
      hash = null;
      current = null;
    },
  });
  const result = async (
    unreadable?: { readonly offset: number; readonly reason: string },
  ): Promise<TarDigest> => {
    await hasher.finish();
    const entries = read.map((e, i): DigestedEntry => ({
      name: e.name,
      size: e.size,
      md5: e.md5 ?? hasher.digests.get(i)!,
      type: e.type,
      headerOffset: e.headerOffset,
    }));
    return unreadable === undefined ? { entries, bytes } : { entries, unreadable, bytes };
  };
  let bytes = 0;
  const reader = stream.getReader();
  const { signal } = options;
  const onAbort = () => void reader.cancel(signal?.reason).catch(() => {});
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    for (;;) {
      signal?.throwIfAborted();
      await hasher.throttle();
      const { done, value } = await reader.read();
      signal?.throwIfAborted();
      if (done) break;
      bytes += value.length;
      try {
        parser.write(value);
      } catch (e) {
        await reader.cancel().catch(() => {});
        return await result(unreadable(e, parser.offset, current));
      }
      if (parser.done) {
        // Whatever follows the end-of-archive marker is not tar: drain it uncounted.
        await reader.cancel().catch(() => {});
        return await result();
      }
    }
    try {
      parser.end();
    } catch (e) {
      return await result(unreadable(e, parser.offset, current));
    }
    return await result();
  } finally {
    hasher.close();
    signal?.removeEventListener("abort", onAbort);
    reader.releaseLock();
  }
}

/**
 * Where reading failed: the start of the entry that could not be read whole
 * (so that it counts as not checked rather than missing), else the offset
 * the reader's message names ("... at offset 1024: bad checksum").
 */
function unreadable(
  e: unknown,
  parserOffset: number,
  entryStart: number | null,
): { offset: number; reason: string } {
  if (!(e instanceof SyntaxError)) throw e;
  const m = /at offset (\d+)/.exec(e.message);
  const at = m === null ? parserOffset : Number(m[1]);
  return { offset: entryStart === null ? at : Math.min(entryStart, at), reason: e.message };
}
